"""Image features, encoded once per (model, dataset, split, transform) and cached on disk.

Zero-shot, linear probes, few-shot probes and re-runs of the suite all read the same cached
features: the one expensive pass over the images happens once. Images are decoded and
transformed by a thread pool (PIL's decoder releases the GIL) while the model encodes batches.
The cache key hashes the model's weights, the split's fingerprint (file names, sizes, times)
and the transform's description, so a changed model or dataset never reads stale features.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from trainer.evaluation.readers import EvalSplit, Sample


@dataclass
class Features:
    images: torch.Tensor  # (n, dim), L2-normalised
    targets: Any  # tensor of class indexes, (n, classes) 0/1 tensor, or list of caption lists
    keys: list[str]


def model_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def transform_description(image_size: int) -> str:
    from trainer.zeroshot import CLIP_MEAN, CLIP_STD

    return f"resize{image_size}-bicubic/centercrop{image_size}/rgb/normalize{CLIP_MEAN}{CLIP_STD}"


def cache_key(model_id: str, split: EvalSplit, transform: str) -> str:
    text = json.dumps([model_id, split.source, split.split, split.fingerprint, transform])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _decode(transform, sample: Sample) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(sample.image)) as image:
            return transform(image)
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable image {sample.key!r}: {exc}") from exc


def _batches(iterator: Iterator, size: int) -> Iterator[list]:
    while batch := list(islice(iterator, size)):
        yield batch


@torch.no_grad()
def encode_split(model, split: EvalSplit, batch_size: int = 64, workers: int | None = None,
                 device: str = "cpu", desc: str = "") -> Features:
    from core.logs import progress
    from trainer.zeroshot import eval_transform

    transform = eval_transform(model.config.vision.image_size)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    features, targets, keys = [], [], []
    with ThreadPoolExecutor(workers) as pool:
        for batch in progress(_batches(split.samples(), batch_size), desc=f"encoding {desc or split.source}",
                              unit="batch"):
            pixels = torch.stack(list(pool.map(lambda s: _decode(transform, s), batch)))
            features.append(model.encode_image(pixels.to(device)).float().cpu())
            targets += [s.target for s in batch]
            keys += [s.key for s in batch]
    if not keys:
        raise ValueError(f"{split.source} ({split.split}): no samples")
    return Features(torch.cat(features), _stack_targets(targets, split.kind), keys)


def _stack_targets(targets: list, kind: str) -> Any:
    if kind == "classification":
        return torch.tensor(targets, dtype=torch.long)
    if kind == "multilabel":
        return torch.from_numpy(np.stack(targets))
    return targets


class FeatureCache:
    """``{root}/{key}.pt`` per (model, split, transform); written to a temporary name, renamed."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root else None
        self.hits = self.misses = 0

    def get(self, model, model_id: str, split: EvalSplit, **encode_options) -> Features:
        key = cache_key(model_id, split, transform_description(model.config.vision.image_size))
        path = self.root / f"{key}.pt" if self.root else None
        if path is not None and path.exists():
            self.hits += 1
            data = torch.load(path, map_location="cpu", weights_only=True)
            return Features(data["images"], data["targets"], data["keys"])
        self.misses += 1
        features = encode_split(model, split, **encode_options)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".pt.tmp")
            torch.save({"images": features.images, "targets": features.targets, "keys": features.keys}, temporary)
            temporary.replace(path)
        return features
