"""Decoding, filtering, resizing and encoding one image, in img2dataset's output format.

img2dataset's ``Resizer`` redirects the whole process's stdout/stderr around every decode (not
safe with download threads) and always decodes at full resolution. This module does the same
work with the same results (OpenCV decode, alpha matted onto white, ``INTER_AREA`` to shrink
and ``INTER_LANCZOS4`` to enlarge, ``border`` padding in white, JPEG at the given quality) and
adds what a crawl at scale needs:

- the pixel count is read from the header (:mod:`core.image_header`: JPEG frame headers by
  hand, other formats by Pillow; no pixel decoded) and decompression bombs are refused
  before any pixel is decoded;
- so is an image whose decode would hold more than ``max_decode_bytes`` at its peak (width x
  height x channels x bytes per sample of the frame OpenCV decodes into, twice, plus the
  decoder's own buffers and the resized frame): a small 16-bit RGBA PNG can declare a frame of
  gigabytes under the pixel cap. 16-bit and alpha frames become 8-bit BGR band by band, never
  as a float copy of the whole frame;
- JPEGs are shown as their EXIF orientation says, as browsers show them (img2dataset's decode
  ignores it and stores such photos on their side), and their sizes are the displayed ones;
- JPEGs much larger than the target are decoded at 1/2, 1/4 or 1/8 scale (libjpeg's reduced
  decoding), never below the size the resize needs;
- animated images are filtered (a multi-picture JPEG, a camera's MPO, is a JPEG: its first
  picture is kept);
- the sha256 of the downloaded bytes (exact duplicates) and a 64-bit perceptual hash (DCT
  pHash, imagededup's algorithm) of the stored image are returned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from core.image_header import MAX_DECODE_BYTES, MAX_PIXELS, memory_reason, read_header

MODES = ("border", "keep_ratio", "center_crop", "no")
#: The longest side each encoder can write (JPEG's 16-bit sizes, WebP's 14-bit ones).
ENCODER_MAX_SIDE = {"jpg": 65_535, "webp": 16_383, "png": 2**31 - 1}
STRIP_PIXELS = 1 << 18  # alpha is matted in bands of rows this large: small float temporaries
FLOAT_AREA_MAX = 1 << 22  # area_downscale's float32 route only for frames up to this many values


@dataclass(frozen=True)
class ImageConfig:
    image_size: int = 256
    resize_mode: str = "keep_ratio"  # shorter side at image_size: the trainer takes random square crops
    encode_format: str = "jpg"
    encode_quality: int = 95
    min_image_size: int = 0
    max_aspect_ratio: float = float("inf")
    max_pixels: int = MAX_PIXELS
    max_decode_bytes: int = MAX_DECODE_BYTES

    def __post_init__(self) -> None:
        if self.resize_mode not in MODES:
            raise ValueError(f"--resize-mode must be one of {', '.join(MODES)}")
        if self.encode_format not in ("jpg", "png", "webp"):
            raise ValueError("--encode-format must be jpg, png or webp")


@dataclass
class Processed:
    status: str  # success, filtered, failed_to_resize
    reason: str = ""
    data: bytes = b""
    width: int = 0
    height: int = 0
    original_width: int = 0
    original_height: int = 0
    sha256: str = ""
    phash: str = ""


def _reduced_flag(width: int, height: int, config: ImageConfig) -> tuple[int, int]:
    """A JPEG's cv2 decode flag and factor: the largest 1/2^k keeping the needed side >= target.
    Every one of these flags turns the image as its EXIF orientation says (``IMREAD_UNCHANGED``,
    which would not, is never used for JPEGs)."""
    if config.resize_mode == "no":
        return cv2.IMREAD_COLOR, 1
    needed = max(width, height) if config.resize_mode == "border" else min(width, height)
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if needed // factor >= config.image_size * 1.25:  # a 25% margin: INTER_AREA does the rest
            return flag, factor
    return cv2.IMREAD_COLOR, 1


def quarter_turned(shape: tuple[int, int], width: int, height: int, factor: int) -> bool:
    """Whether a decoded JPEG of header size ``width`` x ``height`` came out turned a quarter
    (EXIF orientations 5 to 8) at decode scale ``1/factor`` (libjpeg rounds scaled sides up)."""
    upright = (-(-height // factor), -(-width // factor))
    return tuple(shape) != upright and tuple(shape) == upright[::-1]


def phash(image: np.ndarray) -> str:
    """64-bit DCT perceptual hash (imagededup's PHash: 32x32 grey, DCT, top-left 8x8 vs median)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    dct = cv2.dct(small)[:8, :8].ravel()
    ordered = np.sort(dct)
    bits = dct > (ordered[31] + ordered[32]) / 2  # the median of the 64, as np.median computes it
    return np.packbits(bits).tobytes().hex()


def area_downscale(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(img, size, INTER_AREA)`` of a uint8 image, the same bytes, faster: for a
    non-integer factor OpenCV averages in float either way, and handed float32 it takes its
    vectorised path (0.59 ms instead of 0.82 for 427x320 -> 256x192 here, conversions included).
    Integer factors keep the uint8 path (its own fast one, rounding differently), and so do large
    frames: their float32 copy would cost four times the frame."""
    height, width = img.shape[:2]
    if (width % size[0] == 0 and height % size[1] == 0) or img.size > FLOAT_AREA_MAX:
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out = cv2.resize(img.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.rint(out, out=out).astype(np.uint8)


def resized_size(config: ImageConfig, width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` image is resized to, before any crop or border."""
    if config.resize_mode == "no":
        return width, height
    if config.resize_mode in ("keep_ratio", "center_crop"):
        scale = config.image_size / min(height, width)
    else:
        scale = config.image_size / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(img: np.ndarray, config: ImageConfig, width: int, height: int) -> np.ndarray:
    """Resize ``img`` (possibly decoded at reduced scale) to the size the original
    ``width`` x ``height`` image would get, so reduced decoding never changes output sizes."""
    size = config.image_size
    if config.resize_mode == "no":
        return img
    new_w, new_h = resized_size(config, width, height)
    if (new_w, new_h) != (img.shape[1], img.shape[0]):
        if new_w < img.shape[1]:
            img = area_downscale(img, (new_w, new_h))
        else:
            img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LANCZOS4)
    if config.resize_mode == "center_crop":
        top, left = (new_h - size) // 2, (new_w - size) // 2
        img = img[top:top + size, left:left + size]
    elif config.resize_mode == "border":
        top, left = (size - new_h) // 2, (size - new_w) // 2
        img = cv2.copyMakeBorder(img, top, size - new_h - top, left, size - new_w - left, cv2.BORDER_CONSTANT,
                                 value=(255, 255, 255))
    return img


def to_8bit(img: np.ndarray) -> np.ndarray:
    """A decoded frame as uint8, one channel (grey) or three (BGR): 16-bit values scaled, alpha
    matted onto white (:func:`matte_on_white`)."""
    if img.ndim == 3 and img.shape[2] == 4:
        return matte_on_white(img)
    if img.dtype != np.uint8:
        return cv2.convertScaleAbs(img, alpha=255.0 / 65535.0)
    return img


def matte_on_white(img: np.ndarray) -> np.ndarray:
    """A BGRA frame (8 or 16 bits) as 8-bit BGR on white, img2dataset's arithmetic, done in bands
    of rows: the float temporaries stay a few MB where the whole frame's would be 16 to 40 bytes
    a pixel."""
    height, width = img.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, STRIP_PIXELS // width)
    for top in range(0, height, rows):
        band = img[top:top + rows]
        if band.dtype != np.uint8:
            band = cv2.convertScaleAbs(band, alpha=255.0 / 65535.0)
        alpha = band[:, :, 3:4].astype(np.float32) / 255.0
        out[top:top + rows] = np.rint(alpha * band[:, :, :3] + (1 - alpha) * 255).clip(0, 255)
    return out


def process(data: bytes, config: ImageConfig) -> Processed:
    digest = hashlib.sha256(data).hexdigest()
    try:
        header = read_header(data)
    except Image.DecompressionBombError:
        return Processed("filtered", "decompression bomb (pixel count)", sha256=digest)
    except Exception as exc:
        return Processed("failed_to_resize", f"undecodable: {type(exc).__name__}", sha256=digest)
    width, height, kind = header.width, header.height, header.format
    if width * height > config.max_pixels:
        return Processed("filtered", f"decompression bomb ({width}x{height} pixels)", sha256=digest)
    if header.frames > 1:
        return Processed("filtered", "animated", sha256=digest, original_width=width, original_height=height)
    if min(width, height) < config.min_image_size:
        return Processed("filtered", "image too small", sha256=digest, original_width=width, original_height=height)
    if max(width, height) / max(1, min(width, height)) > config.max_aspect_ratio:
        return Processed("filtered", "aspect ratio too large", sha256=digest, original_width=width,
                         original_height=height)
    flag, factor = _reduced_flag(width, height, config) if kind == "JPEG" else (cv2.IMREAD_UNCHANGED, 1)
    out_w, out_h = resized_size(config, width, height)
    if max(out_w, out_h) > ENCODER_MAX_SIDE[config.encode_format]:  # a thin strip under keep_ratio
        return Processed("filtered", f"aspect ratio too large: {out_w}x{out_h} after resizing, over "
                         f"{config.encode_format}'s {ENCODER_MAX_SIDE[config.encode_format]} px side",
                         sha256=digest, original_width=width, original_height=height)
    too_large = memory_reason(header, config.max_decode_bytes, factor, out_w * out_h * 3)
    if too_large:
        return Processed("filtered", too_large, sha256=digest, original_width=width, original_height=height)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:  # OpenCV asserts on some malformed headers instead of returning None
        img = None
    if img is None:
        return Processed("failed_to_resize", "undecodable by OpenCV", sha256=digest)
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):  # no encoder takes these (a 2- or 5-sample TIFF)
        return Processed("failed_to_resize", f"unsupported layout: {img.shape[2]} channels", sha256=digest)
    if kind == "JPEG" and quarter_turned(img.shape[:2], width, height, factor):
        width, height = height, width  # EXIF orientation turned it: sizes as it is displayed
    img = _resize(to_8bit(img), config, width, height)
    if img.ndim == 2:  # grey is resized as one channel, a third of the work, then stored as BGR
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    params = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, config.encode_quality],
              "png": [cv2.IMWRITE_PNG_COMPRESSION, min(config.encode_quality, 9)],
              "webp": [cv2.IMWRITE_WEBP_QUALITY, config.encode_quality]}[config.encode_format]
    ok, encoded = cv2.imencode(f".{config.encode_format}", img, params)
    if not ok:
        return Processed("failed_to_resize", "encode failed", sha256=digest)
    return Processed("success", data=encoded.tobytes(), width=img.shape[1], height=img.shape[0],
                     original_width=width, original_height=height, sha256=digest, phash=phash(img))
