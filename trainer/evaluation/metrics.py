"""The metrics of the CLIP paper's evaluation tables, on plain tensors / arrays.

top-k accuracy; mean-per-class accuracy (FGVC Aircraft, Oxford Pets, Caltech-101, Flowers-102);
11-point interpolated mAP (Pascal VOC 2007, multilabel); ROC AUC (binary tasks such as Hateful
Memes); recall@k both ways for image-text retrieval.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Recall of each class present in ``labels`` (NaN for classes absent from the set)."""
    correct = torch.zeros(classes).index_add_(0, labels, (predictions == labels).float())
    seen = torch.bincount(labels, minlength=classes).float()
    return torch.where(seen > 0, correct / seen.clamp(min=1), torch.full_like(seen, float("nan")))


def mean_per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean of per-class recalls over the classes present: every class weighs the same."""
    recalls = per_class_accuracy(logits.argmax(dim=1), labels, logits.shape[1])
    return recalls[~recalls.isnan()].mean().item()


def average_precision_11point(scores: np.ndarray, positives: np.ndarray) -> float:
    """Pascal VOC 2007's AP: mean over recall thresholds 0, 0.1, ..., 1 of the highest precision
    reached at a recall at or above the threshold (0 where none is)."""
    order = np.argsort(-scores, kind="stable")
    hits = positives[order].astype(bool)
    if not hits.any():
        return float("nan")
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1)
    recall = true_positives / hits.sum()
    return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                          for t in np.linspace(0, 1, 11)]))


def map_11point(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with at least one positive of :func:`average_precision_11point`."""
    aps = [average_precision_11point(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    aps = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(aps)) if aps else float("nan")


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random
    negative, ties counting half (the Mann-Whitney statistic)."""
    positives = positives.astype(bool)
    pos, neg = scores[positives], scores[~positives]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs both positive and negative examples")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def recall_at_k(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, text_to_image: Sequence[int],
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Image->text: an image counts as retrieved when any of its captions is in its top k texts;
    text->image: a caption when its image is in its top k images (CLIP_benchmark's definition)."""
    owner = torch.as_tensor(text_to_image)
    similarity = image_embeddings @ text_embeddings.T  # images x texts
    top = max(ks)
    ranked_texts = similarity.topk(min(top, similarity.shape[1]), dim=1).indices
    ranked_images = similarity.T.topk(min(top, similarity.shape[0]), dim=1).indices
    images = torch.arange(len(image_embeddings))
    result = {}
    for k in ks:
        image_hits = (owner[ranked_texts[:, :k]] == images[:, None]).any(dim=1)
        text_hits = (ranked_images[:, :k] == owner[:, None]).any(dim=1)
        result[f"image_to_text_R@{k}"] = image_hits.float().mean().item()
        result[f"text_to_image_R@{k}"] = text_hits.float().mean().item()
    return result


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> dict[str, float]:
    """Every metric that applies to a task kind; the task's ``metric`` names the headline one."""
    if kind == "multilabel":
        return {"map_11point": map_11point(logits.numpy(), targets.numpy())}
    result = {"top1": topk_accuracy(logits, targets, 1), "mean_per_class": mean_per_class_accuracy(logits, targets)}
    if logits.shape[1] >= 5:
        result["top5"] = topk_accuracy(logits, targets, 5)
    if logits.shape[1] == 2:
        result["roc_auc"] = roc_auc((logits[:, 1] - logits[:, 0]).numpy(), targets.numpy() == 1)
    return result
