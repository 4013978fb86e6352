"""Measuring the detector on real photos: an evaluation set, transformed copies of part of it, and
distractor photos put through the same transformations (shared by the benchmark and the tests).

:func:`build_cases` draws everything from a seed; :func:`score_detector` runs a
:class:`dedup.detect.Detector` over the cases; :func:`score_phash_baseline` runs imagededup's
``PHash`` at its default threshold (10 bits, one hash per image, as ``find_duplicates`` does) on
the same cases. Both give recall per transformation and overall precision over flagged
(query, evaluation image) pairs: a flag on the wrong evaluation image is a false positive.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dedup import transforms

PHASH_DEFAULT_THRESHOLD = 10  # imagededup's find_duplicates default max_distance_threshold


@dataclass
class Case:
    name: str
    transform: str
    data: bytes  # the query image, encoded as a crawl would store it
    target: str | None  # the evaluation image it copies; None for a distractor


def encode(image: Image.Image, side: int = 256, quality: int = 90) -> bytes:
    """As a crawl stores it: longer side at most ``side`` px, JPEG."""
    image = image.convert("RGB")
    image.thumbnail((side, side), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo_sets(data_dir: Path, eval_count: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(evaluation photos, distractor photos): the ImageNet sample split at random, plus the COCO
    and ImageNet-val photos as further distractors (related classes included: ImageNet's dogs,
    birds and vehicles sit on both sides)."""
    photos = sorted((data_dir / "images/photos/imagenet_sample").glob("*.JPEG"))
    random.Random(seed).shuffle(photos)
    extra = sorted((data_dir / "images/eval/coco_val2017_mini").glob("*.jpg"))
    extra += sorted((data_dir / "images/eval/imagenet_val_metaclip").glob("*.JPEG"))
    return photos[:eval_count], photos[eval_count:] + extra


def transform_names(pair_count: int, seed: int = 0) -> list[str]:
    return list(transforms.FAMILIES) + transforms.pairs(random.Random(seed + 1), pair_count)


def build_cases(eval_photos: list[Path], distractors: list[Path], copies: int, names: list[str],
                seed: int = 0) -> list[Case]:
    """``copies`` evaluation photos under every transformation in ``names``, and every distractor
    under one transformation drawn from ``names`` (or none, one time in ``len(names) + 1``)."""
    cases = []
    for photo in eval_photos[:copies]:
        with Image.open(photo) as image:
            image = image.convert("RGB")
            for name in names:
                rng = random.Random(f"{seed}:{photo.name}:{name}")
                cases.append(Case(photo.name, name, encode(transforms.apply(name, image, rng)), photo.name))
    rng = random.Random(seed)
    for photo in distractors:
        name = rng.choice(names + ["none"])
        with Image.open(photo) as image:
            image = image.convert("RGB")
            edited = image if name == "none" else transforms.apply(name, image, random.Random(f"{seed}:{photo.name}"))
            cases.append(Case(photo.name, f"distractor:{name}", encode(edited), None))
    return cases


def _tally(cases: list[Case], flagged: list[list[str]]) -> dict:
    per: dict[str, list[int]] = {}
    true_flags = false_flags = distractors_flagged = 0
    for case, flags in zip(cases, flagged):
        if case.target is not None:
            hit = case.target in flags
            per.setdefault(case.transform, [0, 0])
            per[case.transform][0] += hit
            per[case.transform][1] += 1
        else:
            distractors_flagged += bool(flags)
        true_flags += sum(flag == case.target for flag in flags)
        false_flags += sum(flag != case.target for flag in flags)
    recall = {name: round(found / total, 4) for name, (found, total) in per.items()}
    positives = sum(total for _, total in per.values())
    singles = [name for name in recall if "+" not in name]
    return {
        "recall": recall,
        "recall_overall": round(sum(found for found, _ in per.values()) / positives, 4) if positives else None,
        "recall_singles_min": min((recall[n] for n in singles), default=None),
        "recall_min": min(recall.values(), default=None),
        "precision": round(true_flags / (true_flags + false_flags), 4) if true_flags + false_flags else 1.0,
        "false_flags": false_flags, "distractors": sum(c.target is None for c in cases),
        "distractors_flagged": distractors_flagged, "positives": positives,
    }


def score_detector(detector, cases: list[Case]) -> dict:
    flagged = []
    for case in cases:
        flagged.append([detector.items[m.item][1]["eval_id"] for m in detector.match(case.data) if m.is_duplicate])
    return _tally(cases, flagged)


def score_phash_baseline(eval_photos: list[Path], cases: list[Case],
                         threshold: int = PHASH_DEFAULT_THRESHOLD) -> dict:
    """imagededup's PHash exactly as its users run it: ``encode_image`` per file, Hamming distance
    at most ``threshold`` between a query and an evaluation image."""
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)

    def code(data_or_path) -> int:
        if isinstance(data_or_path, Path):
            return int(hasher.encode_image(image_file=str(data_or_path)), 16)
        with Image.open(io.BytesIO(data_or_path)) as image:
            return int(hasher.encode_image(image_array=np.asarray(image.convert("RGB"))), 16)

    eval_codes = {photo.name: code(photo) for photo in eval_photos}
    flagged = []
    for case in cases:
        query = code(case.data)
        flagged.append([name for name, value in eval_codes.items() if bin(query ^ value).count("1") <= threshold])
    return _tally(cases, flagged)


def index_photos(name: str, photos: list[Path], config=None):
    """An :class:`dedup.store.EvalIndex` of local photos, built in this process (no Beam)."""
    from dedup import features, store
    from dedup.index import describe

    config = config or features.FeatureConfig()
    records = [describe(photo.name, photo.read_bytes(), str(photo), None, config) for photo in photos]
    return store.assemble(name, config, records)
