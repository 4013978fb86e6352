"""Decoding, filtering, resizing and encoding one image, in img2dataset's output format.

img2dataset's ``Resizer`` redirects the whole process's stdout/stderr around every decode (not
safe with download threads) and always decodes at full resolution. This module does the same
work with the same results (OpenCV decode, alpha matted onto white, ``INTER_AREA`` to shrink
and ``INTER_LANCZOS4`` to enlarge, ``border`` padding in white, JPEG at the given quality) and
adds what a crawl at scale needs:

- the pixel count is read from the header (JPEG frame headers by hand, 4 us instead of Pillow's
  ~0.3 ms; other formats by Pillow; no pixel decoded) and decompression bombs are refused
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
import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MODES = ("border", "keep_ratio", "center_crop", "no")
# What one image's work may hold at its peak (Header.decode_bytes plus the resized frame), so a
# worker decoding one image per core keeps a known ceiling; the measured peaks stay at or under
# it (docs/crawl.md, "Memory per decode").
MAX_DECODE_BYTES = 256_000_000
MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold
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


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


@dataclass(frozen=True)
class Header:
    """What is known of an image before any pixel is decoded."""

    width: int
    height: int
    frames: int
    format: str
    channels: int = 3  # of the frame OpenCV decodes into (a palette, or grey with alpha, comes out BGR(A))
    sample_bytes: int = 1  # per channel value: 2 for 16-bit images, more for float formats
    buffers: int = 0  # what the decoder holds besides that frame (a multi-scan JPEG's coefficients)

    def decode_bytes(self, factor: int = 1) -> int:
        """Peak memory of a decode at scale ``1/factor``: the frame twice (OpenCV decodes into its
        own buffer, its Python binding copies that into a NumPy array) plus the decoder's buffers."""
        frame = -(-self.width // factor) * -(-self.height // factor) * self.channels * self.sample_bytes
        return 2 * frame + self.buffers


def jpeg_header(data: bytes) -> Header | None:
    """A JPEG's :class:`Header` from its marker segments up to the first scan (tens of
    microseconds where opening it with Pillow takes ~0.2 ms); None when ``data`` is not a JPEG or
    its header is unusual (the caller asks Pillow)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    at, end, frame = 2, len(data), None
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            at += 2
            continue
        if marker == 0xD9:  # end of image before any scan
            return None
        if marker == 0xDA:  # the first scan: how many components it holds decides libjpeg's buffering
            return _jpeg_header(frame, data[at + 4] if at + 4 < end else 0) if frame else None
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in _SOF_MARKERS:
            if frame is not None:
                return None
            frame = _jpeg_frame(data[at + 4:at + 2 + length], marker)
            if frame is None:
                return None
        elif length < 2:
            return None
        at += 2 + length
    return _jpeg_header(frame, 0) if frame else None  # no scan in sight: assume the costly kind


def _jpeg_frame(segment: bytes, marker: int) -> tuple | None:
    """(width, height, precision, sampling factors per component, progressive) of a frame
    header's body, or None when it is malformed."""
    if len(segment) < 6:
        return None
    precision, count = segment[0], segment[5]
    height = int.from_bytes(segment[1:3], "big")
    width = int.from_bytes(segment[3:5], "big")
    table = segment[6:6 + 3 * count]
    if not (width and height and count) or len(table) < 3 * count:  # height 0: defined later (DNL)
        return None
    sampling = [(table[i + 1] >> 4, table[i + 1] & 15) for i in range(0, 3 * count, 3)]
    if not all(1 <= h <= 4 and 1 <= v <= 4 for h, v in sampling):
        return None
    return width, height, precision, sampling, marker in _PROGRESSIVE


def _jpeg_header(frame: tuple, scan_components: int) -> Header:
    width, height, precision, sampling, progressive = frame
    # libjpeg keeps every coefficient of the image while it decodes a progressive JPEG, or one
    # whose first scan leaves components for later scans, whatever the output scale.
    multi_scan = progressive or scan_components < len(sampling)
    buffers = coefficient_bytes(width, height, sampling) if multi_scan else 0
    return Header(width, height, 1, "JPEG", 3, 2 if precision > 8 else 1, buffers)


def coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """Bytes of libjpeg's whole-image coefficient arrays: 64 two-byte coefficients per 8x8 block
    of each component (subsampled ones have fewer blocks), rounded up to whole MCUs."""
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    total = 0
    for h, v in sampling:
        columns, rows = -(-width * h // (h_max * 8)), -(-height * v // (v_max * 8))
        total += -(-columns // h) * h * -(-rows // v) * v * 128
    return total


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a baseline or progressive JPEG's frame header
    (:func:`jpeg_header`); None when ``data`` is not such a JPEG or its header is unusual."""
    header = jpeg_header(data)
    return (header.width, header.height) if header else None


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}  # IHDR colour type -> channels OpenCV decodes into


def _layout(image: Image.Image, data: bytes) -> tuple[int, int, int]:
    """(channels, bytes per sample, decoder buffers) of the decode of an image Pillow opened.
    Pillow's mode does not say it (a 16-bit RGB PNG or TIFF opens as "RGB"), so the format's own
    header does; a format not listed here gets a generous 4 channels of 4 bytes plus as much
    again for the decoder, so that what is not understood is not under-counted."""
    width, height = image.size
    kind = image.format
    if kind == "PNG" and data[12:16] == b"IHDR":
        depth, colour = data[24], data[25]
        channels = _PNG_CHANNELS.get(colour, 4)
        if colour in (2, 3) and "transparency" in image.info:
            channels = 4  # OpenCV turns a tRNS chunk into an alpha channel
        return channels, 2 if depth == 16 else 1, 0
    if kind in ("GIF", "BMP", "WEBP"):  # 8-bit formats, decoded to BGR or BGRA
        return 4, 1, 0
    if kind in ("JPEG", "MPO"):  # one our own reader found unusual: assume 4 multi-scan components
        return 3, 2 if getattr(image, "bits", 8) > 8 else 1, width * height * 4 * 2
    if kind == "TIFF":  # libtiff's strip or tile buffer can be as large as the frame
        bits = image.tag_v2.get(258, 8)
        bits = max(bits) if isinstance(bits, tuple) else bits
        channels, sample = max(3, int(image.tag_v2.get(277, 1))), max(1, -(-int(bits) // 8))
        return channels, sample, width * height * channels * sample
    return 4, 4, width * height * 16


def read_header(data: bytes) -> Header:
    """The :class:`Header` without decoding pixels: JPEGs by :func:`jpeg_header`, anything else
    (and odd JPEGs) by Pillow. Raises what Pillow raises for undecodable data."""
    header = jpeg_header(data)
    if header is not None:
        return header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(data))
        channels, sample_bytes, buffers = _layout(image, data)
        # + len(data): some of OpenCV's decoders (WebP) copy the whole file before decoding it
        return Header(image.size[0], image.size[1], getattr(image, "n_frames", 1), image.format, channels,
                      sample_bytes, buffers + len(data))


def memory_reason(header: Header, max_bytes: int, factor: int = 1, output_bytes: int = 0) -> str:
    """Why decoding ``header``'s image at scale ``1/factor`` (and making an ``output_bytes``
    frame of it) would hold more than ``max_bytes``; "" when it would not."""
    total = header.decode_bytes(factor) + output_bytes
    if total <= max_bytes:
        return ""
    buffers = " plus decoder buffers" if header.buffers else ""
    return (f"decompression bomb (memory): {header.width}x{header.height}, {header.channels} channels of "
            f"{8 * header.sample_bytes} bits{buffers}, {total / 1e6:.0f} MB over {max_bytes / 1e6:.0f} MB")


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
