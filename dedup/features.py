"""The signals of the near-duplicate detector, computed from image bytes.

Two signals, both on the grey image scaled so its longer side is :data:`SIDE` pixels:

* **Perceptual hashes**: imagededup's 64-bit ``PHash`` (its own preprocessing and DCT code, run
  on the grey image area-averaged to 64 px, see :func:`phash`). Hashes
  survive resizing, recompression, colour changes and aspect distortion, not crops, rotations or
  overlays; the evaluation side therefore hashes a few views (crops at the corners and centre,
  small rotations), and the pool side hashes the image, its mirror image and, when it has uniform
  borders, its interior (and that one's mirror): mirrors cost the pool side a hash each instead of
  doubling every evaluation image's views.
* **Local features**: OpenCV ORB keypoints with their 256-bit descriptors. The evaluation side
  keeps the ``eval_keypoints`` strongest of the image alone (about 3.4 KB an image with their
  positions); the pool side describes its image and, at the mirrored positions, its mirror image
  (:func:`mirrored_orb`), so a flipped copy matches the stored side. :mod:`dedup.detect` verifies
  matches geometrically, which is what finds crops, rotations, overlays, borders and their
  combinations.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image

from core import image_header

# Undecodable bytes are our counted "unreadable" status, not something for OpenCV to log.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

SIDE = 256  # longer side, in pixels, of the grey image every signal is computed from
MIN_SIDE = 8  # shorter side, in pixels, below which an image has nothing to hash or describe


@dataclass(frozen=True)
class FeatureConfig:
    """What an index was built with; a pool must be described the same way to be compared."""

    side: int = SIDE
    eval_keypoints: int = 112  # ORB keeps ~100 of them (its per-scale quotas fall short)
    eval_levels: int = 8
    crop_scale: float = 0.85  # hashed crops: at the four corners and the centre
    rotations: tuple[float, ...] = (5.0, 9.0)
    border_tolerance: int = 10
    vocab_branching: int = 16  # vocabulary tree (dedup.vocab): children per node
    vocab_per_word: int = 4  # evaluation descriptors per word the tree's depth aims at

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        # how the pool is described is the detector's choice (DetectConfig), not the index's: indexes
        # built before that change recorded it here, and compare equal to today's without it
        data = {key: value for key, value in data.items() if key not in _POOL_SIDE}
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


_POOL_SIDE = ("pool_keypoints", "pool_levels")


class UnreadableImage(ValueError):
    """Bytes that do not decode as an image; the message says why."""


def decode_grey(data: bytes, side: int = SIDE) -> np.ndarray:
    """Grey uint8 array with its longer side scaled to ``side``; :class:`UnreadableImage` when
    the bytes are not an image the signals can describe."""
    return scaled(decode(data), side)


def decode(data: bytes) -> np.ndarray:
    """The full-size grey image; :class:`UnreadableImage` when the bytes are not one, or would
    cost what the crawl refuses to decode (:func:`refuse_bombs`)."""
    if not data:
        raise UnreadableImage("empty file")
    refuse_bombs(data)
    try:
        grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error:  # OpenCV asserts on some headers instead of returning None
        grey = None
    if grey is None:
        grey = _pillow_grey(data)  # formats OpenCV lacks (some GIF and WebP)
    if grey.size == 0 or min(grey.shape) < MIN_SIDE:
        raise UnreadableImage(f"too small: {grey.shape[1]}x{grey.shape[0]}")
    return grey


def refuse_bombs(data: bytes) -> None:
    """:class:`UnreadableImage` for bytes whose header (read without decoding a pixel, as the
    crawl reads it) is not an image's, or declares more pixels or a costlier decode than the
    crawl's caps (:data:`core.image_header.MAX_PIXELS`, :data:`core.image_header.MAX_DECODE_BYTES`)."""
    try:
        header = image_header.read_header(data)
    except Image.DecompressionBombError:
        raise UnreadableImage(f"decompression bomb (pixel count; {len(data)} bytes)") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header breaks Pillow's readers in many ways
        raise UnreadableImage(f"not a decodable image ({type(exc).__name__}, {len(data)} bytes)") from None
    if header.width * header.height > image_header.MAX_PIXELS:
        raise UnreadableImage(f"decompression bomb ({header.width}x{header.height} pixels)")
    reason = image_header.memory_reason(header, image_header.MAX_DECODE_BYTES)
    if reason:
        raise UnreadableImage(reason)


def _pillow_grey(data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"))
    except Exception as exc:  # noqa: BLE001 - truncated or hostile data breaks Pillow's decoders in many ways
        raise UnreadableImage(f"not a decodable image ({type(exc).__name__}, {len(data)} bytes)") from None


def normalise(grey: np.ndarray, side: int = SIDE) -> np.ndarray:
    scale = side / max(grey.shape)
    if abs(scale - 1) < 1e-3:
        return np.ascontiguousarray(grey)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def scaled(full: np.ndarray, side: int = SIDE) -> np.ndarray:
    """:func:`normalise`, refusing an image so thin that its scaled copy is under
    :data:`MIN_SIDE` across (its crops and rotated views would be empty)."""
    grey = normalise(full, side)
    if min(grey.shape) < MIN_SIDE:
        raise UnreadableImage(f"too thin: {full.shape[1]}x{full.shape[0]} is {grey.shape[1]}x{grey.shape[0]} "
                              f"at {side} px")
    return grey


# -- perceptual hashes ---------------------------------------------------------------------------
def phash(grey: np.ndarray) -> np.ndarray:
    """imagededup's PHash of a grey array, as 8 packed bytes (faiss's binary code layout)."""
    return phashes([grey])[0]


def phashes(greys: list[np.ndarray]) -> np.ndarray:
    """imagededup's PHash of each grey array, (k, 8) packed bytes, bit for bit.

    Each array is first area-averaged to at most 64 px a side (imagededup's Lanczos resize to
    32 x 32 of a 256 px image costs more than everything else in the hash); from there on it is
    imagededup's ``PHash`` step by step (``preprocess_image``'s Pillow Lanczos resize to 32 x 32,
    ``_hash_algo``'s two DCTs with SciPy's ``fftpack``, the 8 x 8 corner against the median of its
    63 AC terms), run on all the arrays at once: the Python around the two DCTs cost as much as
    they do. tests/test_dedup.py compares the codes with imagededup's ``encode_image``.
    """
    return _codes(np.stack([_thumb32(grey) for grey in greys]) if greys else np.zeros((0, 32, 32), np.uint8))


def _thumb32(grey: np.ndarray) -> np.ndarray:
    """The 32 x 32 image PHash transforms: area average to 64 px, then Pillow's Lanczos."""
    if max(grey.shape) > 64:
        grey = cv2.resize(grey, (min(64, grey.shape[1]), min(64, grey.shape[0])), interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(grey.astype(np.uint8, copy=False)).resize((32, 32), Image.LANCZOS))


def _codes(small: np.ndarray) -> np.ndarray:
    """(k, 8) PHash codes of (k, 32, 32) images: two DCTs, the 8 x 8 corner against its AC median."""
    from scipy.fftpack import dct

    corner = dct(dct(small.astype(np.float64), axis=1), axis=2)[:, :8, :8].reshape(len(small), 64)
    median = np.median(corner[:, 1:], axis=1)
    return np.packbits(corner >= median[:, None], axis=1)


def to_hex(code: np.ndarray) -> str:
    """The hex string imagededup's ``encode_image`` returns for the same hash."""
    return bytes(code).hex()


def trim_borders(grey: np.ndarray, tolerance: int = 10) -> np.ndarray:
    """The image without uniform bands on its edges (padding such as img2dataset's ``border``)."""
    def count(lines: np.ndarray) -> int:
        if int(lines[0].max()) - int(lines[0].min()) > tolerance:
            return 0  # most images: no band on this side, decided by its first line
        spread = lines.max(axis=1).astype(int) - lines.min(axis=1)
        uneven = np.flatnonzero(spread > tolerance)
        return int(uneven[0]) if len(uneven) else len(lines)

    top, bottom = count(grey), count(grey[::-1])
    left, right = count(grey.T), count(grey.T[::-1])
    height, width = grey.shape
    if top + bottom > height - 16 or left + right > width - 16:
        return grey
    return grey[top:height - bottom, left:width - right]


def inscribed(width: int, height: int, degrees: float) -> tuple[int, int]:
    """The largest upright rectangle inside a width x height image rotated by ``degrees``."""
    angle = math.radians(degrees)
    sin, cos = abs(math.sin(angle)), abs(math.cos(angle))
    long, short = max(width, height), min(width, height)
    if short <= 2 * sin * cos * long or abs(sin - cos) < 1e-10:
        half = 0.5 * short
        w, h = (half / sin, half / cos) if width >= height else (half / cos, half / sin)
    else:
        cos2 = cos * cos - sin * sin
        w, h = (width * cos - height * sin) / cos2, (height * cos - width * sin) / cos2
    return int(w), int(h)


def rotated(grey: np.ndarray, degrees: float) -> np.ndarray:
    height, width = grey.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    turned = cv2.warpAffine(grey, matrix, (width, height), flags=cv2.INTER_LINEAR)
    w, h = inscribed(width, height, degrees)
    x, y = (width - w) // 2, (height - h) // 2
    return turned[y:y + h, x:x + w]


def hash_views(grey: np.ndarray, config: FeatureConfig) -> list[np.ndarray]:
    """The evaluation-side views that get a hash: the whole image, crops at ``crop_scale`` at the
    four corners and the centre, and each small rotation both ways (straightened). No mirrors:
    the pool side hashes its own mirror image (:func:`pool_hashes`)."""
    views = [grey]
    height, width = grey.shape
    ch, cw = int(height * config.crop_scale), int(width * config.crop_scale)
    for fy, fx in ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        y, x = int((height - ch) * fy), int((width - cw) * fx)
        views.append(grey[y:y + ch, x:x + cw])
    for degrees in config.rotations:
        views.extend(rotated(grey, sign * degrees) for sign in (-1, 1))
    return views


def view_count(config: FeatureConfig) -> int:
    return 6 + 2 * len(config.rotations)


def pool_hashes(grey: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(k, 8) codes of a pool image and whether each is of the mirror image: the image and its
    mirror, and when it has uniform borders its interior and that one's mirror.

    A mirror's code is the PHash of the mirror of the image's 64 px area average: Pillow's Lanczos
    step commutes with the flip bit for bit, so the mirror costs two DCTs and no resize (OpenCV's
    area average does not commute exactly: flipping before it moves an occasional pixel by one
    level, which can move a code by a bit)."""
    images = [grey]
    inner = trim_borders(grey, config.border_tolerance)
    if inner.shape != grey.shape:
        images.append(inner)
    small = np.stack([_thumb32(image) for image in images])
    return _codes(np.concatenate([small, small[:, :, ::-1]])), np.repeat([False, True], len(images))


def eval_hashes(grey: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return phashes(hash_views(grey, config))


# -- local features -----------------------------------------------------------------------------
_LOCAL = threading.local()  # one ORB detector per thread (the crawl matches from many threads)


def _detector(keypoints: int, levels: int):
    detectors = _LOCAL.__dict__.setdefault("orb", {})
    if (keypoints, levels) not in detectors:
        detectors[keypoints, levels] = cv2.ORB_create(nfeatures=keypoints, nlevels=levels, fastThreshold=10)
    return detectors[keypoints, levels]


def _arrays(found, descriptors) -> tuple[np.ndarray, np.ndarray]:
    if descriptors is None or not found:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return cv2.KeyPoint_convert(found).reshape(-1, 2).astype(np.float32), descriptors


def orb(grey: np.ndarray, keypoints: int, levels: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(points (n, 2) float32, descriptors (n, 32) uint8), n possibly 0."""
    return _arrays(*_detector(keypoints, levels).detectAndCompute(grey, None))


def eval_orb(grey: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation side: the ``eval_keypoints`` strongest keypoints over ``eval_levels`` scales."""
    return orb(grey, config.eval_keypoints, config.eval_levels)


Described = tuple[np.ndarray, np.ndarray]  # (points, descriptors)


def pool_orb(grey: np.ndarray, keypoints: int, levels: int) -> tuple[Described, Described]:
    """The pool side: the image's ``keypoints`` strongest keypoints over ``levels`` scales, and the
    mirror image's at the mirrored positions (points in the mirror image's coordinates). FAST
    corners and Harris scores are mirror-symmetric, so the mirror skips detection: about a third of
    the cost of describing it."""
    detector = _detector(keypoints, levels)
    found, descriptors = detector.detectAndCompute(grey, None)
    if descriptors is None or not found:
        empty = _arrays(None, None)
        return empty, empty
    width = grey.shape[1]
    flipped = []
    for point in found:  # the hottest Python loop of a pool image: one attribute read each
        x, y = point.pt
        flipped.append(cv2.KeyPoint(width - 1 - x, y, point.size, (180.0 - point.angle) % 360.0, point.response,
                                    point.octave))
    mirrored = detector.compute(np.ascontiguousarray(grey[:, ::-1]), flipped)
    return _arrays(found, descriptors), _arrays(*mirrored)
