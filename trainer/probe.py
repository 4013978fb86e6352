"""Linear probes (the paper's protocol) and image-text retrieval on frozen CLIP features.

Linear probe: L2-regularised logistic regression (scikit-learn, L-BFGS) on the image features
of a labelled set, C searched as the paper did on a held-out part of the training split
(:mod:`trainer.evaluation.probes`), accuracy reported on a test split never seen while fitting.
Retrieval: recall@k both ways on a caption set (an image with several captions counts as
retrieved when any of them is). ``wit eval suite`` (:mod:`trainer.evaluation`) builds on these.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from trainer.zeroshot import image_features, load_images


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: the same fraction of every class goes to the test side."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = max(1, int(round(len(members) * test_fraction)))
        test += list(members[:cut])
        train += list(members[cut:])
    return np.array(sorted(train)), np.array(sorted(test))


def linear_probe(features: np.ndarray, labels: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> dict:
    """A held-out test split, then the paper's L-BFGS probe with C searched over 1e-6..1e6 on a
    validation split carved from train (:func:`trainer.evaluation.probes.holdout_probe`)."""
    from trainer.evaluation.probes import holdout_probe

    return holdout_probe(features, labels, test_fraction, seed)


def recall_at_k(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, text_to_image: Sequence[int],
                ks: Sequence[int] = (1, 5, 10)) -> dict:
    from trainer.evaluation.metrics import recall_at_k as recall

    return recall(image_embeddings, text_embeddings, text_to_image, ks)


@torch.no_grad()
def retrieval(model, tokenizer, images_dir: str, captions_tsv: str) -> dict:
    """recall@k on a caption set given as a TSV with ``file`` and ``caption`` columns."""
    with open(captions_tsv, newline="") as handle:
        rows = [(r["file"], r["caption"]) for r in csv.DictReader(handle, delimiter="\t")]
    files = sorted({name for name, _ in rows})
    index = {name: i for i, name in enumerate(files)}
    images = load_images(images_dir, [(name, 0) for name in files], model.config.vision.image_size)
    image_embeddings = image_features(model, images)
    texts = [caption for _, caption in rows]
    text_embeddings = torch.cat([model.encode_text(tokenizer(texts[i:i + 256])) for i in range(0, len(texts), 256)])
    result = recall_at_k(image_embeddings, text_embeddings, [index[name] for name, _ in rows])
    result.update(images=len(files), captions=len(rows))
    return result


def probe_from_folder(model, images_dir: str | Path, labels: Sequence[tuple[str, int]], test_fraction: float,
                      seed: int) -> dict:
    images = load_images(images_dir, labels, model.config.vision.image_size)
    features = image_features(model, images).numpy()
    return linear_probe(features, np.array([label for _, label in labels]), test_fraction, seed)
