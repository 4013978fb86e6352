"""Deciding whether a pool image is a near-duplicate of an evaluation image.

A :class:`Detector` searches one or more evaluation indexes (:mod:`dedup.store`, memory-mapped:
nothing is built when it starts) and answers :meth:`Detector.match` for an image:

1. **Hash path**: the pool image's PHash codes (image, mirror image, and the border-trimmed
   interior of each) are searched within ``hash_threshold`` bits among the evaluation images'
   hash views (:mod:`dedup.hashindex`, exact). A hit is a duplicate when the image is too smooth
   for keypoints, or when its keypoints also verify against that image (``hash_confirm_inliers``),
   retried with the pool image stretched to the evaluation image's aspect ratio (an aspect
   distortion changes ORB descriptors, not hashes); flat graphics collide in PHash.
2. **Local-feature path**: the pool image's ORB descriptors, and those of its mirror image, walk
   the vocabulary tree (:mod:`dedup.vocab`) and vote for the evaluation images listed under
   their words; the ``verify_top`` best-voted (image, orientation) pairs are matched exactly
   against that image's own descriptors (Lowe's ratio test within the image, which stays as
   selective in an index of a million images as in one of ten) and verified with a RANSAC affine
   fit (OpenCV) that a copy could have gone through: no collapse or extreme zoom or shear, and
   one image's frame laid mostly inside the other's (``min_overlap``: a crop, a border, a
   rotation; not a shape two unrelated images share, matched at an arbitrary offset).
   ``min_inliers`` geometric inliers make a duplicate. A partial fit that stretches one direction
   more than the other (a copy stretched, then rotated or cropped: ORB matches few of its
   corners) is verified once more with the pool image warped through it and described anew.

``score = max(inliers / min_inliers, (hash_threshold + 1) / (hash_distance + 1))``: 1.0 or more
is a duplicate, 0.5 to 1.0 a near miss worth a look in the report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from dedup import features, hashindex, vocab
from dedup.store import EvalIndex, IndexError_, check_compatible, library_versions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectConfig:
    min_inliers: int = 10  # unrelated photos reached 7 (1 in 9,500 verifications) in the quality benchmark
    hash_threshold: int = 4
    ratio: float = 0.85
    max_descriptor_distance: int = 64
    verify_top: int = 4  # best-voted (image, orientation) pairs verified per pool image
    min_votes: int = 3  # a candidate needs this many descriptors voting for it
    spread: int = 2  # words per pool descriptor (nearest leaves)
    stop_factor: float = 8.0  # words listing more than this x the mean are too common to vote
    min_matches: int = 6
    reprojection_px: float = 4.0
    near_miss: float = 0.5
    # a copy lays one image's frame mostly inside the other's (crops, borders, rotations, aspect
    # changes: 0.8 and more in the quality benchmark); a shape or logo that two unrelated images
    # share maps them at an arbitrary offset (0.3 to 0.86 in the demo's rendered world)
    min_overlap: float = 0.8
    hash_confirm_inliers: int = 4  # a textured image's hash hit needs this many verified matches
    aspect_retry: float = 1.1  # retry a hash hit stretched when the aspect ratios differ by this
    # a voted candidate fitted with this many inliers, but fewer than min_inliers, by a map that
    # stretches one direction warp_stretch x more than the other is verified again with the pool
    # image warped through that fit: a stretch then a rotation or crop changes ORB's descriptors past
    # matching. Only stretched fits: undoing a similarity lets flat shapes two unrelated images
    # share (the demo's stars) verify as well as a copy
    warp_retry: int = 6
    warp_stretch: float = 1.2
    # how a pool image is described (the index does not depend on it): 200 strongest ORB keypoints
    # over 3 scales found what 250 found in the quality benchmark, 15% faster
    pool_keypoints: int = 200
    pool_levels: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.hash_threshold <= 5:
            raise ValueError("--hash-threshold must be 0..5 (the multi-index search is exact up to 7 bits; "
                             "above 5 unrelated photos collide)")
        if self.min_inliers < 6:
            raise ValueError("--min-inliers must be at least 6 (an affine fit needs 3 points; fewer is noise)")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be 0..1 (a share of a frame), got {self.min_overlap}")
        if self.warp_retry < 4 or self.warp_stretch < 1.0:
            raise ValueError("warp_retry must be at least 4 inliers (a partial fit of fewer is chance) and "
                             f"warp_stretch at least 1.0 (got {self.warp_retry}, {self.warp_stretch})")
        if not 1 <= self.spread <= 4:
            raise ValueError("--spread must be 1..4 words per descriptor")
        if self.pool_keypoints < 2 * self.min_inliers or not 1 <= self.pool_levels <= 8:
            raise ValueError(f"pool_keypoints must be at least 2 x min_inliers ({2 * self.min_inliers}) and "
                             f"pool_levels 1..8 (got {self.pool_keypoints}, {self.pool_levels})")


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


def frame_overlap(affine: np.ndarray, pool_shape: tuple[int, int], eval_shape: tuple[float, float]) -> float:
    """The larger of the shares of each frame (the pool image's mapped by ``affine`` into the
    evaluation image, and the evaluation image's) that their intersection covers: 1.0 when one
    frame lies inside the other, as in a crop or a border."""
    (ph, pw), (eh, ew) = pool_shape, eval_shape
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    mapped = np.ascontiguousarray(corners @ affine[:, :2].T.astype(np.float32) + affine[:, 2].astype(np.float32))
    (a, b), (c, d) = affine[:, :2].tolist()
    if a * d - b * c < 0:  # a mirrored map turns the polygon's orientation (numpy's det: 25 us a call)
        mapped = np.ascontiguousarray(mapped[::-1])
    mapped_area = abs(cv2.contourArea(mapped))
    if mapped_area <= 0:
        return 0.0
    shared, _ = cv2.intersectConvexConvex(mapped, np.array([[0, 0], [ew, 0], [ew, eh], [0, eh]], np.float32))
    return float(max(shared / mapped_area, shared / (ew * eh)))


def stretches(affine: np.ndarray) -> tuple[float, float]:
    """The largest and smallest factor by which ``affine`` scales a direction (the singular values
    of its linear part, in closed form: numpy's SVD costs ~0.6 ms a call here)."""
    (a, b), (c, d) = affine[:, :2].tolist()
    frobenius, determinant = a * a + b * b + c * c + d * d, abs(a * d - b * c)
    root = max(0.0, frobenius * frobenius / 4 - determinant * determinant) ** 0.5
    return (frobenius / 2 + root) ** 0.5, max(0.0, frobenius / 2 - root) ** 0.5


def plausible(affine: np.ndarray) -> bool:
    """An image-to-image map a copy could have gone through: no collapse, no extreme zoom or shear."""
    large, small = stretches(affine)
    return bool(small > 0.2 and large < 5.0 and large < 3.0 * small)


def top_keys(keys: np.ndarray, space: int, least: int, top: int, dense: bool | None = None) -> np.ndarray:
    """The ``top`` most frequent values of ``keys`` (in ``0..space - 1``) seen ``least`` times or
    more, most first, ties to the lower value. ``dense`` (default: when ``space`` is at most 4x
    the keys, a small index) counts them in one ``bincount``; otherwise they are sorted, a cost
    that follows the votes, not the index."""
    if dense is None:
        dense = space <= 4 * len(keys)
    if dense:
        counts = np.bincount(keys, minlength=space)
        found = np.flatnonzero(counts >= least)
        counts = counts[found]
    else:
        keys = np.sort(keys)
        firsts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        counts = np.diff(np.append(firsts, len(keys)))
        enough = counts >= least
        found, counts = keys[firsts[enough]], counts[enough]
    return found[np.argsort(-counts, kind="stable")[:top]]


class Items(Sequence):
    """``detector.items[row]`` = (eval_set, {"eval_id": ...}), read from the indexes on demand:
    a worker never holds a Python object per evaluation image."""

    def __init__(self, detector: "Detector") -> None:
        self.detector = detector

    def __len__(self) -> int:
        return int(self.detector.starts[-1])

    def __getitem__(self, row: int) -> tuple[str, dict]:
        index, local = self.detector.locate(row)
        eval_set, eval_id = index.key(local)
        return eval_set, {"eval_id": eval_id}


class Detector:
    def __init__(self, indexes: list[EvalIndex], config: DetectConfig | None = None,
                 check_versions: bool = True) -> None:
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
        self.starts = np.cumsum([0] + [len(index) for index in indexes])
        self.items = Items(self)
        # a word listing many times the mean is a "stop word": it votes for noise
        self.stop_lengths = [max(8, int(self.config.stop_factor * len(index.postings)
                                        / max(1, len(index.word_starts) - 1))) for index in indexes]

    def locate(self, row: int) -> tuple[EvalIndex, int]:
        which = int(np.searchsorted(self.starts, row, side="right") - 1)
        return self.indexes[which], row - int(self.starts[which])

    # -- one image, one index -------------------------------------------------------------------
    def hash_hits(self, index: EvalIndex, codes: np.ndarray, mirrored: np.ndarray) -> dict[int, tuple[int, bool]]:
        """Evaluation row -> (best distance, whether the mirror image's code made it)."""
        query, rows, distance = hashindex.search(index.hashes, index.hash_order, index.hash_starts, codes,
                                                 self.config.hash_threshold)
        items = np.searchsorted(index.item_hashes, rows, side="right") - 1
        best: dict[int, tuple[int, bool]] = {}
        for q, item, d in zip(query.tolist(), items.tolist(), distance.tolist()):
            if item not in best or d < best[item][0]:
                best[item] = (d, bool(mirrored[q]))
        return best

    def voted(self, index: EvalIndex, stop: int, views: list[features.Described]) -> list[tuple[int, int]]:
        """The ``verify_top`` best-voted (evaluation row, view) pairs with ``min_votes`` or more."""
        config = self.config
        descriptors = [found[1] for found in views]
        if sum(len(d) for d in descriptors) == 0:
            return []
        words = vocab.assign(index.vocab, np.concatenate(descriptors), config.spread).ravel()
        view = np.repeat(np.repeat(np.arange(len(views)), [len(d) for d in descriptors]), config.spread)
        lengths = index.word_starts[words + 1] - index.word_starts[words]
        keep = lengths <= stop
        words, view, lengths = words[keep], view[keep], lengths[keep]
        rows = vocab.gather(index.word_starts, index.postings, words)
        if not len(rows):
            return []
        keys = np.repeat(view, lengths) * len(index) + rows
        chosen = top_keys(keys, len(views) * len(index), config.min_votes, config.verify_top)
        return [(int(key % len(index)), int(key // len(index))) for key in chosen]

    def eval_shape(self, index: EvalIndex, row: int) -> tuple[float, float]:
        """(height, width) of evaluation image ``row`` as it was described."""
        aspect, side = float(index.aspect[row]), self.features.side
        return (side, side * aspect) if aspect <= 1 else (side / aspect, side)

    def verify(self, index: EvalIndex, row: int, points: np.ndarray, descriptors: np.ndarray,
               shape: tuple[int, int]) -> tuple[int, np.ndarray | None]:
        """Inliers of a plausible RANSAC affine fit from ratio-tested matches of a pool image of
        ``shape`` with evaluation image ``row``'s own descriptors, and that fit (pool to evaluation
        coordinates); else (0, None)."""
        config, arrays = self.config, index.arrays
        begin, end = int(arrays["item_descriptors"][row]), int(arrays["item_descriptors"][row + 1])
        if end - begin < 2 or len(descriptors) < config.min_matches:
            return 0, None
        targets = np.ascontiguousarray(arrays["descriptors"][begin:end])
        distance, nearest = faiss.knn_hamming(descriptors, targets, 2)  # 5x faster than OpenCV's batchDistance
        good = (distance[:, 0] < config.max_descriptor_distance) & (distance[:, 0] < config.ratio * distance[:, 1])
        # one pool keypoint per evaluation keypoint (the nearest): ORB finds one corner at several
        # scales, and such repeats would agree with any map through that corner
        candidates = np.flatnonzero(good)
        order = candidates[np.lexsort((distance[candidates, 0], nearest[candidates, 0]))]
        first = np.concatenate([[True], np.diff(nearest[order, 0]) != 0]) if len(order) else np.zeros(0, bool)
        good = np.zeros(len(good), bool)
        good[order[first]] = True
        if good.sum() < config.min_matches:
            return 0, None
        source, target = points[good], arrays["keypoints"][begin:end].astype(np.float32)[nearest[good, 0]] + 0.5
        best, fit = 0, None
        eval_shape = self.eval_shape(index, row)
        # a similarity first (4 degrees of freedom: with few true matches among the ratio-tested
        # ones a full affine fit often settles on a collapsed map), then a full affine (aspect changes)
        for estimate in (cv2.estimateAffinePartial2D, cv2.estimateAffine2D):
            affine, mask = estimate(source, target, method=cv2.RANSAC, ransacReprojThreshold=config.reprojection_px,
                                    maxIters=500, confidence=0.99, refineIters=0)
            found = int(mask.sum()) if affine is not None else 0
            if (affine is not None and found > best and plausible(affine)
                    and frame_overlap(affine, shape, eval_shape) >= config.min_overlap):
                best, fit = found, affine
            # done when the similarity decides, or when it finds so little consensus that an
            # affine map (a copy's aspect changed) would not either: most candidates are unrelated
            if best >= config.min_inliers or found < config.hash_confirm_inliers:
                break
        return best, fit

    def verify_warped(self, index: EvalIndex, row: int, image: np.ndarray, fit: np.ndarray) -> int:
        """Inliers of evaluation image ``row`` with ``image`` (the pool image, or its mirror image,
        as ``fit`` was found) warped through ``fit`` into the evaluation image's frame and described
        anew, the composed map passing the same checks as a first fit; else 0. A stretched copy that
        was then rotated or cropped keeps few descriptors ORB can match, and a partial fit of them
        is close to the copy's map: undone, the copy's corners describe as the evaluation image's.
        The second fit still needs ratio-tested descriptor matches, so an unrelated image's
        chance fit gains only a second draw."""
        config = self.config
        height, width = self.eval_shape(index, row)
        warped = cv2.warpAffine(image, fit, (max(1, round(width)), max(1, round(height))), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        again = features.pool_orb(warped, config.pool_keypoints, config.pool_levels)[0]
        count, second = self.verify(index, row, *again, warped.shape)
        if second is None:
            return 0
        composed = np.hstack([second[:, :2] @ fit[:, :2], (second[:, :2] @ fit[:, 2] + second[:, 2])[:, None]])
        if not plausible(composed) or frame_overlap(composed, image.shape, (height, width)) < config.min_overlap:
            return 0
        return count

    def stretched_views(self, grey: np.ndarray, aspect: float) -> tuple[list[features.Described], tuple[int, int]]:
        """The pool image resized to ``aspect`` (width / height) and described again, and its shape."""
        height, width = grey.shape
        size = (max(1, round(height * aspect)), height) if aspect > width / height else (width, max(1, round(width / aspect)))
        resized = features.normalise(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), self.features.side)
        return list(features.pool_orb(resized, self.config.pool_keypoints, self.config.pool_levels)), resized.shape

    def verify_voted(self, index: EvalIndex, row: int, grey: np.ndarray, view: int,
                     views: list[features.Described]) -> int:
        """Inliers of a voted (row, view) pair: the first fit, or, when it is partial
        (``warp_retry`` to ``min_inliers`` inliers) and stretched (``warp_stretch``), the better of
        it and :meth:`verify_warped`."""
        config = self.config
        count, fit = self.verify(index, row, *views[view], grey.shape)
        if fit is None or not config.warp_retry <= count < config.min_inliers:
            return count
        large, small = stretches(fit)
        if large >= config.warp_stretch * small:
            image = grey if view == 0 else np.ascontiguousarray(grey[:, ::-1])
            count = max(count, self.verify_warped(index, row, image, fit))
        return count

    def match_index(self, grey: np.ndarray, index: EvalIndex, stop: int, hashes, views) -> dict[int, tuple[int, int | None]]:
        """Evaluation row -> (inliers, hash distance) for every row with some evidence."""
        config = self.config
        hits = self.hash_hits(index, *hashes)
        inliers: dict[int, int] = {}
        for row, view in self.voted(index, stop, views):
            inliers[row] = max(inliers.get(row, 0), self.verify_voted(index, row, grey, view, views))
        smooth = len(views[0][1]) < 2 * config.min_inliers
        evidence = {}
        for row, (distance, mirrored) in hits.items():
            if not smooth and inliers.get(row, 0) < config.hash_confirm_inliers:
                count = self.verify(index, row, *views[int(mirrored)], grey.shape)[0]
                aspect = float(index.aspect[row])
                pool_aspect = grey.shape[1] / grey.shape[0]
                if count < config.hash_confirm_inliers and max(aspect, pool_aspect) / min(aspect, pool_aspect) > config.aspect_retry:
                    stretched, shape = self.stretched_views(grey, aspect)
                    count = self.verify(index, row, *stretched[int(mirrored)], shape)[0]
                inliers[row] = max(inliers.get(row, 0), count)
                if inliers[row] < config.hash_confirm_inliers:
                    distance = None  # a textured image whose hash hit nothing verifies: not evidence
            evidence[row] = (inliers.get(row, 0), distance)
        for row, count in inliers.items():
            evidence.setdefault(row, (count, None))
        return evidence

    # -- one image ------------------------------------------------------------------------------
    def match_grey(self, grey: np.ndarray) -> list[Match]:
        """Every evaluation item with some evidence, best first (duplicates and near misses)."""
        hashes = features.pool_hashes(grey, self.features)
        views = list(features.pool_orb(grey, self.config.pool_keypoints, self.config.pool_levels))
        matches = []
        for start, index, stop in zip(self.starts, self.indexes, self.stop_lengths):
            for row, (count, distance) in self.match_index(grey, index, stop, hashes, views).items():
                score = _score(count, distance, self.config)
                if score >= self.config.near_miss:
                    matches.append(Match(int(start) + row, count, distance, score, score >= 1.0))
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
    """The process's detector for these indexes; a side input unpickled again in the same process
    (a path: :meth:`EvalIndex.__reduce__`) reuses it."""
    key = (tuple((index.path or id(index), len(index)) for index in indexes), config)
    with _LOCK:
        if key not in _DETECTORS:
            started = time.monotonic()
            _DETECTORS[key] = Detector(indexes, config)
            log.info("detector ready in %.3fs", time.monotonic() - started)
        return _DETECTORS[key]
