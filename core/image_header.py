"""What an image's bytes say before any pixel is decoded: format, size, frame layout, and the
memory a decode would hold at its peak. The one guard every stage that decodes untrusted images
asks first (the crawl, dedup): JPEG frame headers are read by hand (two orders of magnitude
faster than opening the image with Pillow; docs/crawl.md gives the figures), other formats by
Pillow without decoding pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

# What one image's work may hold at its peak (Header.decode_bytes plus the resized frame), so a
# worker decoding one image per core keeps a known ceiling; the measured peaks stay at or under
# it (docs/crawl.md, "Memory per decode").
MAX_DECODE_BYTES = 256_000_000
MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold

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
