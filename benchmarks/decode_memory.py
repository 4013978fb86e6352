"""Peak memory of one image's work in the crawl (``pipeline.images.process``) and in dedup
(``dedup.features.decode_grey``), for the costliest images each default cap still lets through,
and for hostile images the caps refuse.

    .venv/bin/python benchmarks/decode_memory.py            # every case, about 30 s on 2 cores
    .venv/bin/python benchmarks/decode_memory.py --only png-rgba16 --only jpeg-progressive-444

Each image is made at the largest square size under the caps (``MAX_DECODE_BYTES``, the pixel
cap), written to a temporary folder, and processed in a fresh Python process: the image's bytes
are read, a small image is processed first (imports, OpenCV's lazy set-up), the process's peak
resident set is reset (``/proc/self/clear_refs``), the case runs, and the growth of the peak over
the resident set just before it is what that one image cost. Linux only.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core import image_header
from pipeline import images


def _gradient(side: int, channels: int, dtype=np.uint8) -> np.ndarray:
    """A smooth picture (compresses well, decodes like any other) with a varying alpha."""
    top = 65535 if dtype == np.uint16 else 255
    ramp = (np.arange(side, dtype=np.float64) * (top / max(1, side - 1))).astype(dtype)
    planes = [np.broadcast_to(ramp[None, :], (side, side)), np.broadcast_to(ramp[:, None], (side, side)),
              np.broadcast_to(ramp[::-1][None, :], (side, side)), np.broadcast_to(ramp[::-1][:, None], (side, side))]
    return np.dstack(planes[:channels]) if channels > 1 else np.ascontiguousarray(planes[0])


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()


def _pillow(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def _rgb(side: int) -> Image.Image:
    return Image.fromarray(_gradient(side, 3))


def _turned_jpeg(side: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: OpenCV makes a turned copy of the frame
    return _pillow(_rgb(side), "JPEG", quality=80, exif=exif.tobytes())


# name -> (make(side) -> bytes, resize mode)
CASES = {
    "png-rgba8": (lambda n: _png(_gradient(n, 4)), "border"),
    "png-rgba16": (lambda n: _png(_gradient(n, 4, np.uint16)), "border"),
    "png-rgb16": (lambda n: _png(_gradient(n, 3, np.uint16)), "border"),
    "png-grey8": (lambda n: _png(_gradient(n, 1)), "border"),
    "png-palette-trns": (lambda n: _pillow(_rgb(n).quantize(64), "PNG", transparency=0), "border"),
    "gif": (lambda n: _pillow(_rgb(n).quantize(64), "GIF"), "border"),
    "webp-rgba": (lambda n: _pillow(Image.fromarray(_gradient(n, 4)), "WEBP", quality=50, method=0), "border"),
    "tiff-rgb": (lambda n: _pillow(_rgb(n), "TIFF", compression="tiff_deflate"), "border"),
    "jpeg-baseline-420": (lambda n: _pillow(_rgb(n), "JPEG", quality=80), "border"),
    "jpeg-progressive-444": (lambda n: _pillow(_rgb(n), "JPEG", quality=80, progressive=True, subsampling=0),
                             "border"),
    "jpeg-full-decode-turned": (_turned_jpeg, "no"),
}
HOSTILE = {
    # the review's example: a 16-bit RGBA PNG of 5000 x 5000, a few hundred KB
    "hostile-png-rgba16-5000": lambda: _png(np.zeros((5000, 5000, 4), np.uint16)),
    "hostile-png-1bit-20000": lambda: __import__("wit.testing.fakeweb", fromlist=["x"]).decompression_bomb_png(),
}


def largest_allowed(make, config: images.ImageConfig) -> tuple[int, bytes]:
    """The largest square (side a multiple of 16) the caps let through, and its bytes: from the
    count of a 2048 px one, then down in steps of 16 until the count fits."""
    probe = make(2048)
    per_pixel = max(count(probe, config) - 256 * 256 * 3, 1) / 2048 ** 2
    side = int(min(math.sqrt(image_header.MAX_DECODE_BYTES / per_pixel), math.sqrt(image_header.MAX_PIXELS))) // 16 * 16
    while True:
        data = make(side)
        if count(data, config) <= image_header.MAX_DECODE_BYTES and side * side <= image_header.MAX_PIXELS:
            return side, data
        side -= 16


def count(data: bytes, config: images.ImageConfig) -> int:
    """What the crawl's cap counts for this image (as ``images.process`` counts it)."""
    header = image_header.read_header(data)
    factor = 1
    if header.format == "JPEG":
        factor = images._reduced_flag(header.width, header.height, config)[1]  # noqa: SLF001 - as process() does
    out_w, out_h = images.resized_size(config, header.width, header.height)
    return header.decode_bytes(factor) + out_w * out_h * 3


def counted(data: bytes, config: images.ImageConfig) -> str:
    try:
        return f"{count(data, config) / 1e6:.0f} MB"
    except Exception:  # noqa: BLE001 - a bomb Pillow refuses has no header to count
        return "-"


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", text).group(1)) * 1024 for key in ("VmRSS", "VmHWM")}


def child(path: str, mode: str, resize_mode: str) -> None:
    """Runs in a fresh process: one image, one line of JSON on stdout."""
    data = Path(path).read_bytes()
    config = images.ImageConfig(resize_mode=resize_mode)
    if mode == "dedup":
        from dedup import features

        def work(payload):
            try:
                grey = features.decode_grey(payload)
                return "ok", f"{grey.shape[1]}x{grey.shape[0]}"
            except features.UnreadableImage as exc:
                return "unreadable", str(exc)
    else:
        def work(payload):
            result = images.process(payload, config)
            return result.status, result.reason
    work(_png(_gradient(64, 4, np.uint16)))  # imports and set-up out of the measure
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to what is resident now
    before = _status()["VmRSS"]
    status, reason = work(data)
    print(json.dumps({"status": status, "reason": reason, "peak_mb": (_status()["VmHWM"] - before) / 1e6}))


def measure(path: Path, mode: str, resize_mode: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(path), mode, resize_mode],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--only", action="append", default=None, help="a case name; repeatable")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"cap {image_header.MAX_DECODE_BYTES / 1e6:.0f} MB (2 x decoded frame + decoder buffers + resized frame), "
          f"{image_header.MAX_PIXELS:,} pixels")
    print(f"{'case':26s} {'size':>11s} {'file':>9s} {'counted':>9s} {'crawl peak':>11s} {'dedup peak':>11s}  outcome")
    with tempfile.TemporaryDirectory() as folder:
        todo = [(name, spec) for name, spec in {**CASES, **HOSTILE}.items() if not args.only or name in args.only]
        for name, spec in todo:
            if name in HOSTILE:
                data, resize_mode, size = spec(), "border", ""
            else:
                make, resize_mode = spec
                side, data = largest_allowed(make, images.ImageConfig(resize_mode=resize_mode))
                size = f"{side}x{side}"
            path = Path(folder) / name
            path.write_bytes(data)
            counted_text = counted(data, images.ImageConfig(resize_mode=resize_mode))
            crawl, dedup = measure(path, "crawl", resize_mode), measure(path, "dedup", resize_mode)
            outcome = f"{crawl['status']} {crawl['reason'][:40]} / dedup {dedup['status']}"
            print(f"{name:26s} {size:>11s} {len(data) / 1e6:7.2f}MB {counted_text:>9s} {crawl['peak_mb']:8.0f} MB "
                  f"{dedup['peak_mb']:8.0f} MB  {outcome}", flush=True)


if __name__ == "__main__":
    main()
