"""Zero-shot classification as in CLIP: class names in prompt templates, text embeddings
averaged over templates (each normalised, then the mean normalised again), images classified by
cosine similarity to those class embeddings.

    wit eval zeroshot --checkpoint CKPT_DIR --images DIR --labels labels.tsv \\
        --classnames labels.json --templates templates.json [--task CIFAR10] [--out result.json]
    wit eval linear-probe --checkpoint CKPT_DIR --images DIR --labels labels.tsv [--test-fraction 0.3]
    wit eval retrieval --checkpoint CKPT_DIR --images DIR --captions captions.tsv

The commands are parsed in :mod:`trainer.evaluation.cli`; the whole suite (readers, the
paper's prompts and metrics, probes, robustness, one report) is ``wit eval suite``.

``--labels``: a TSV with a header and at least ``file`` (relative to ``--images``) and ``label``
(a class name or index). ``--classnames`` / ``--templates``: JSON lists, or dicts keyed by task as
in ``../shared/data/eval_meta/zeroshot`` (then ``--task`` picks one). Without ``--templates`` the
project's own small template set is used.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from trainer.models import CLIP

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_TEMPLATES = [
    "a photo of a {}.", "a photo of the {}.", "a picture of a {}.", "an image of a {}.", "a close-up photo of a {}.",
    "a photo of a small {}.", "a photo of a large {}.", "a blurry photo of a {}.", "a cropped photo of a {}.",
    "a bright photo of a {}.", "a dark photo of a {}.", "a drawing of a {}.",
]


def eval_transform(image_size: int):
    import torchvision.transforms as T

    return T.Compose([T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size),
                      T.Lambda(lambda image: image.convert("RGB")), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])


def load_task_list(path: str | Path, task: str | None, what: str) -> list[str]:
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        if task is None:
            raise ValueError(f"{path} holds {what} for several tasks ({', '.join(list(data)[:6])}, ...): pass --task")
        if task not in data:
            raise ValueError(f"task {task!r} not in {path}; known: {', '.join(data)}")
        data = data[task]
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ValueError(f"{path}: {what} must be a JSON list of strings (or a dict of them by task)")
    return data


def load_labels(path: str | Path, classnames: Sequence[str]) -> list[tuple[str, int]]:
    index = {name: i for i, name in enumerate(classnames)}
    rows = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header with the columns 'file' and 'label' (has {reader.fieldnames})")
        for row in reader:
            label = row["label"]
            if label in index:
                rows.append((row["file"], index[label]))
            elif label.isdigit() and int(label) < len(classnames):
                rows.append((row["file"], int(label)))
            else:
                raise ValueError(f"{path}: label {label!r} of {row['file']} is neither a class name nor an index")
    return rows


def fill(template: str, classname: str) -> str:
    """A prompt: templates write the class as ``{}`` (ours) or ``{c}`` (CLIP_benchmark's files)."""
    return template.replace("{c}", classname).replace("{}", classname)


@torch.no_grad()
def build_classifier(model: CLIP, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                     device: str = "cpu", chunk: int = 2048) -> torch.Tensor:
    """(embed_dim, classes): per class, the normalised mean of its normalised template embeddings.

    Every (class, template) prompt is encoded in large batches (the text tower groups rows of
    similar length), not one class at a time."""
    from core.logs import progress

    prompts = [fill(template, name) for name in classnames for template in templates]
    embeddings = [model.encode_text(tokenizer(prompts[i:i + chunk]).to(device)).float()
                  for i in progress(range(0, len(prompts), chunk), desc="class embeddings",
                                    total=-(-len(prompts) // chunk), unit="chunk")]
    per_template = F.normalize(torch.cat(embeddings), dim=-1).view(len(classnames), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1).T.contiguous()


@torch.no_grad()
def image_features(model: CLIP, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def accuracy(features: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor,
             classnames: Sequence[str]) -> dict:
    logits = features @ classifier
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    correct1 = top5[:, 0] == labels
    correct5 = (top5 == labels[:, None]).any(dim=1)
    per_class = {}
    for index, name in enumerate(classnames):
        mask = labels == index
        if mask.any():
            per_class[name] = correct1[mask].float().mean().item()
    return {"n": len(labels), "top1": correct1.float().mean().item(), "top5": correct5.float().mean().item(),
            "chance": 1 / len(classnames), "per_class": per_class}


def load_images(folder: str | Path, rows: Sequence[tuple[str, int]], image_size: int) -> torch.Tensor:
    """The evaluation tensors; any unreadable image fails the call, naming the first few."""
    from core.logs import progress

    transform = eval_transform(image_size)
    tensors, unreadable = [], []
    for name, _ in progress(rows, desc="loading images", total=len(rows), unit="img"):
        try:
            with Image.open(Path(folder) / name) as image:
                tensors.append(transform(image))
        except (OSError, ValueError) as exc:
            unreadable.append(f"{name}: {exc}")
    if unreadable:
        raise ValueError(f"{len(unreadable)} unreadable images, e.g. {unreadable[:3]}")
    return torch.stack(tensors)


def zeroshot(model: CLIP, tokenizer, images_dir: str, labels_path: str, classnames: Sequence[str],
             templates: Sequence[str]) -> dict:
    model.eval()
    rows = load_labels(labels_path, classnames)
    images = load_images(images_dir, rows, model.config.vision.image_size)
    classifier = build_classifier(model, tokenizer, classnames, templates)
    result = accuracy(image_features(model, images), classifier, torch.tensor([label for _, label in rows]), classnames)
    result["templates"] = len(templates)
    return result
