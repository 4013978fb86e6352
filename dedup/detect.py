"""Deciding whether a pool image is a near-duplicate of an evaluation image.

A :class:`Detector` holds one or more evaluation indexes (:mod:`dedup.store`) in two faiss
structures and answers :meth:`Detector.match` for an image:

1. **Hash path**: the pool image's PHash codes (image and border-trimmed interior) are searched
   with multi-index hashing (``IndexBinaryMultiHash``: two 32-bit tables, two bit flips, exact for
   distances up to 5) against every view of every evaluation image. A distance at or under
   ``hash_threshold`` is a duplicate when the image is too smooth for keypoints, or when its
   keypoints also match that image (``hash_confirm_inliers`` verified); flat graphics collide in
   PHash.
2. **Local-feature path**: the pool image's ORB descriptors are searched (2 nearest neighbours,
   ``IndexBinaryIVF`` or exact for small indexes) among all evaluation descriptors; matches that
   pass Lowe's ratio test vote for their (image, view); the top ``verify_top`` views are verified
   with a RANSAC affine fit (OpenCV). ``min_inliers`` geometric inliers make a duplicate.

``score = max(inliers / min_inliers, (hash_threshold + 1) / (hash_distance + 1))``: 1.0 or more
is a duplicate, 0.5 to 1.0 a near miss worth a look in the report.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from dedup import features
from dedup.store import EvalIndex, IndexError_, check_compatible, library_versions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectConfig:
    min_inliers: int = 15
    hash_threshold: int = 4
    ratio: float = 0.85
    max_descriptor_distance: int = 64
    verify_top: int = 3
    min_matches: int = 6
    reprojection_px: float = 4.0
    nprobe: int = 2
    near_miss: float = 0.5
    hash_confirm_inliers: int = 4  # a textured image's hash hit needs this many verified matches

    def __post_init__(self) -> None:
        if not 0 <= self.hash_threshold <= 5:
            raise ValueError("--hash-threshold must be 0..5 (the multi-index search is exact up to 5 bits)")
        if self.min_inliers < 6:
            raise ValueError("--min-inliers must be at least 6 (an affine fit needs 3 points; fewer is noise)")


@dataclass(frozen=True)
class Match:
    item: int  # global item row (see Detector.items)
    inliers: int
    hash_distance: int | None
    score: float
    is_duplicate: bool


def _score(inliers: int, distance: int | None, config: DetectConfig) -> float:
    by_hash = (config.hash_threshold + 1) / (distance + 1) if distance is not None else 0.0
    return round(max(inliers / config.min_inliers, by_hash), 4)


def plausible(affine: np.ndarray) -> bool:
    """An image-to-image map a copy could have gone through: no collapse, no extreme zoom or shear."""
    singular = np.linalg.svd(affine[:, :2], compute_uv=False)
    return bool(singular[-1] > 0.2 and singular[0] < 5.0 and singular[0] / singular[-1] < 3.0)


class Detector:
    def __init__(self, indexes: list[EvalIndex], config: DetectConfig | None = None,
                 check_versions: bool = True) -> None:
        import faiss

        check_compatible(indexes)
        self.config = config or DetectConfig()
        self.features = indexes[0].config
        if check_versions:
            here = library_versions()
            for index in indexes:
                for library in ("imagededup", "opencv"):
                    built = index.meta.get("versions", {}).get(library)
                    if built and built != here[library]:
                        raise IndexError_(f"index {index.name!r} was built with {library} {built}, this machine "
                                          f"has {here[library]}: codes would not compare; rebuild the index here")
        self.indexes = indexes
        self.items: list[tuple[str, dict]] = [(index.name, item) for index in indexes for item in index.items]
        offsets = np.cumsum([0] + [len(index.items) for index in indexes[:-1]])
        self.hash_items = np.concatenate([index.hash_items + off for index, off in zip(indexes, offsets)])
        self.groups = np.concatenate([
            (index.groups // 6 + off) * 6 + index.groups % 6 for index, off in zip(indexes, offsets)])
        self.keypoints = np.concatenate([index.keypoints for index in indexes])
        descriptors = np.ascontiguousarray(np.concatenate([index.descriptors for index in indexes]))
        hashes = np.ascontiguousarray(np.concatenate([index.hashes for index in indexes]))

        self.hash_index = faiss.IndexBinaryMultiHash(64, 2, 32)
        self.hash_index.nflip = 2
        self.hash_index.add(hashes)
        if len(descriptors) >= 20_000:
            lists = int(2 ** round(np.log2(1.5 * np.sqrt(len(descriptors)))))
            quantizer = faiss.IndexBinaryFlat(256)
            self.descriptor_index = faiss.IndexBinaryIVF(quantizer, 256, lists)
            self._quantizer = quantizer  # the index does not own it: keep it alive as long as the index
            sample = descriptors[np.random.default_rng(0).permutation(len(descriptors))[:lists * 64]]
            self.descriptor_index.train(sample)
            self.descriptor_index.nprobe = self.config.nprobe
        else:
            self.descriptor_index = faiss.IndexBinaryFlat(256)
        self.descriptor_index.add(descriptors)

    # -- one image ------------------------------------------------------------------------------
    def hash_hits(self, codes: np.ndarray) -> dict[int, int]:
        limits, distances, rows = self.hash_index.range_search(codes, self.config.hash_threshold + 1)
        best: dict[int, int] = {}
        for distance, row in zip(distances.astype(int), rows):
            item = int(self.hash_items[row])
            if distance < best.get(item, 65):
                best[item] = int(distance)
        return best

    def correspondences(self, points: np.ndarray, descriptors: np.ndarray):
        """Ratio-tested nearest-neighbour matches: (pool points, index rows, their groups)."""
        config = self.config
        if len(descriptors) < config.min_matches:
            return None
        distances, rows = self.descriptor_index.search(descriptors, 2)
        nearest, second = distances[:, 0], np.maximum(distances[:, 1], 1)
        good = (rows[:, 0] >= 0) & (nearest < config.max_descriptor_distance) & (nearest < config.ratio * second)
        if good.sum() < config.min_matches:
            return None
        targets = rows[good, 0]
        return points[good], targets, self.groups[targets]

    def fit(self, source: np.ndarray, targets: np.ndarray) -> int:
        """Inliers of a RANSAC affine fit that is a plausible image-to-image map, else 0."""
        if len(source) < self.config.min_matches:
            return 0
        affine, mask = cv2.estimateAffine2D(source, self.keypoints[targets], method=cv2.RANSAC,
                                            ransacReprojThreshold=self.config.reprojection_px, maxIters=500,
                                            confidence=0.99, refineIters=0)
        return int(mask.sum()) if affine is not None and plausible(affine) else 0

    def verified(self, found, extra_items: set[int] = frozenset()) -> dict[int, int]:
        """Inliers per item for the best-voted evaluation views, and for ``extra_items``."""
        if found is None:
            return {}
        source, targets, groups = found
        voted, votes = np.unique(groups, return_counts=True)
        chosen_groups = list(voted[np.argsort(-votes, kind="stable")][:self.config.verify_top])
        chosen_groups += [g for g in voted if g // 6 in extra_items and g not in chosen_groups]
        inliers: dict[int, int] = {}
        for group in chosen_groups:
            chosen = groups == group
            item = int(group // 6)
            inliers[item] = max(inliers.get(item, 0), self.fit(source[chosen], targets[chosen]))
        return inliers

    def match_grey(self, grey: np.ndarray) -> list[Match]:
        """Every evaluation item with some evidence, best first (duplicates and near misses).

        A hash hit alone decides only for images too smooth to verify (fewer than
        ``2 x min_inliers`` keypoints): on a textured image a copy also matches geometrically, and
        flat graphics (one shape on a plain background, logos) collide in PHash."""
        config = self.config
        hits = self.hash_hits(features.pool_hashes(grey, self.features))
        points, descriptors = features.pool_orb(grey, self.features)
        inliers = self.verified(self.correspondences(points, descriptors), set(hits))
        smooth = len(descriptors) < 2 * config.min_inliers
        matches = []
        for item in set(hits) | set(inliers):
            count, distance = inliers.get(item, 0), hits.get(item)
            if distance is not None and not smooth and count < config.hash_confirm_inliers:
                distance = None  # a textured image whose hash hit nothing verifies: not evidence
            score = _score(count, distance, config)
            if score >= config.near_miss:
                matches.append(Match(item, count, distance, score, score >= 1.0))
        return sorted(matches, key=lambda m: (-m.score, m.item))

    def match(self, data: bytes) -> list[Match]:
        """Like :meth:`match_grey` from encoded bytes; bytes the detector cannot read (not an
        image, a bomb, too thin) are evidence of nothing: no match. Callers that count unreadable
        images (the audit) call :func:`features.decode_grey` and :meth:`match_grey` themselves."""
        try:
            grey = features.decode_grey(data, self.features.side)
        except features.UnreadableImage as exc:
            log.debug("no match for unreadable bytes: %s", exc)
            return []
        return self.match_grey(grey)

    def describe(self, match: Match) -> dict:
        name, item = self.items[match.item]
        return {"eval_set": name, "eval_id": item["eval_id"], "score": match.score, "inliers": match.inliers,
                "hash_distance": match.hash_distance, "is_duplicate": match.is_duplicate}


# -- one detector per worker process (Beam bundles and crawl threads share it) -----------------------
_DETECTORS: dict[tuple, Detector] = {}
_LOCK = threading.Lock()


def shared_detector(indexes: list[EvalIndex], config: DetectConfig) -> Detector:
    key = (tuple((index.name, len(index.items), len(index.descriptors)) for index in indexes), config)
    with _LOCK:
        if key not in _DETECTORS:
            started = time.monotonic()
            _DETECTORS[key] = Detector(indexes, config)
            log.info("detector ready in %.1fs", time.monotonic() - started)
        return _DETECTORS[key]
