"""Decoding, resizing and encoding one image (pipeline.images), on real photos."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from core.image_header import jpeg_size
from pipeline.images import ImageConfig, process


def psnr(a: bytes, b: bytes) -> float:
    x = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR).astype(float)
    y = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR).astype(float)
    return 10 * np.log10(255**2 / max(np.mean((x - y) ** 2), 1e-9))


def test_images_match_img2dataset_output_format_and_quality(photos):
    """Our resize/encode keeps img2dataset's output: same sizes, same look (PSNR), same format."""
    from img2dataset.resizer import Resizer

    for mode in ("border", "keep_ratio", "center_crop"):
        theirs = Resizer(128, mode, False, encode_quality=95)
        scores = []
        for data in photos[:20]:
            expected, width, height, original_width, original_height, error = theirs(io.BytesIO(data))
            ours = process(data, ImageConfig(image_size=128, resize_mode=mode))
            assert error is None and ours.status == "success"
            assert (ours.width, ours.height, ours.original_width, ours.original_height) == (
                width, height, original_width, original_height), mode
            scores.append(psnr(expected, ours.data))
            assert ours.data[:3] == b"\xff\xd8\xff"  # JPEG
        assert np.median(scores) > 35, (mode, scores)


def test_area_downscale_gives_opencvs_inter_area_bytes(photos):
    """The float32 route of the resize is a speed-up only: the same bytes as uint8 INTER_AREA on
    real photos, full and reduced decodes, integer and non-integer factors."""
    from pipeline.images import area_downscale

    checked = 0
    for data in photos[:12]:
        for flag in (cv2.IMREAD_COLOR, cv2.IMREAD_REDUCED_COLOR_2):
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            height, width = image.shape[:2]
            sizes = [(max(1, round(width * t / max(width, height))), max(1, round(height * t / max(width, height))))
                     for t in (256, 224, 160, 97)] + [(width // 2, height // 2), (width // 4, height // 4)]
            for size in [s for s in sizes if s[0] < width]:  # the resize's downscaling cases
                expected = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                assert np.array_equal(area_downscale(image, size), expected), (image.shape, size)
                checked += 1
    assert checked >= 12 * 2 * 3


def test_jpeg_header_reader_agrees_with_pillow(photos):
    """Sizes read from the frame header by hand equal Pillow's, for baseline and progressive
    JPEGs and padding bytes between segments; anything else is left to Pillow (None)."""
    for data in photos:
        assert jpeg_size(data) == Image.open(io.BytesIO(data)).size
    image = Image.open(io.BytesIO(photos[0]))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True, quality=80)
    progressive = buffer.getvalue()
    assert jpeg_size(progressive) == image.size
    padded = photos[1][:2] + b"\xff\xff\xff" + photos[1][2:]  # fill bytes before a marker are allowed
    assert jpeg_size(padded) == Image.open(io.BytesIO(photos[1])).size
    png = io.BytesIO()
    image.save(png, "PNG")
    sof = photos[2].index(b"\xff\xc0") if b"\xff\xc0" in photos[2] else photos[2].index(b"\xff\xc2")
    for data in (png.getvalue(), b"", b"\xff\xd8", photos[2][:sof], b"\xff\xd8\x00garbage" * 3):
        assert jpeg_size(data) is None
    assert process(png.getvalue(), ImageConfig(image_size=64)).status == "success"  # through Pillow
    assert process(photos[2][:sof], ImageConfig()).status == "failed_to_resize"


def test_exif_orientation_is_honoured(photos):
    """A photo stored on its side with an EXIF orientation comes out upright, as a browser shows
    it, with the displayed sizes, at full and at reduced decoding scale."""
    for data in photos[:4]:
        upright = Image.open(io.BytesIO(data))
        exif = Image.Exif()
        exif[0x0112] = 6  # "turn 90 degrees clockwise to display"
        buffer = io.BytesIO()
        upright.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
        turned = buffer.getvalue()
        assert jpeg_size(turned) == upright.size[::-1]
        for size, mode in ((128, "border"), (128, "center_crop"), (600, "keep_ratio")):  # 128: reduced decode
            config = ImageConfig(image_size=size, resize_mode=mode)
            expected, got = process(data, config), process(turned, config)
            assert got.status == "success"
            assert (got.width, got.height, got.original_width, got.original_height) == (
                expected.width, expected.height, expected.original_width, expected.original_height)
            assert psnr(got.data, expected.data) > 30, (size, mode)


# -- memory per decode -----------------------------------------------------------------------------
PEAK_SCRIPT = r"""
import json, re, sys
from pathlib import Path

import cv2
import numpy as np

from pipeline import images

def resident(key):
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024

data = Path(sys.argv[1]).read_bytes()
config = images.ImageConfig(**json.loads(sys.argv[2]))
images.process(cv2.imencode(".png", np.zeros((64, 64, 4), np.uint16))[1].tobytes(), config)  # set-up, unmeasured
Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from what is resident now
before = resident("VmRSS")
result = images.process(data, config)
Path(sys.argv[3]).write_bytes(result.data)
print(json.dumps({"status": result.status, "reason": result.reason, "peak": resident("VmHWM") - before}))
"""


def processed_in_fresh_process(tmp_path, data: bytes, **config) -> tuple[dict, bytes]:
    """``process(data)`` in a new Python process: its outcome, its output bytes and how far the
    process's peak resident memory rose above what it held just before (Linux's VmHWM)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    source, output = tmp_path / "input.bin", tmp_path / "output.bin"
    source.write_bytes(data)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(source), json.dumps(config), str(output)],
                          cwd=root, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1]), output.read_bytes()


def test_small_files_declaring_huge_frames_are_refused_before_decoding(tmp_path):
    """A 16-bit RGBA PNG of 5000 x 5000 zeros is under 1 MB and under the pixel cap, and its
    decode would hold 400 MB; a 700-byte progressive JPEG declaring 9000 x 9000 makes libjpeg
    zero half a gigabyte of coefficients even at 1/8 scale. Both are refused from their headers,
    with a reason, and the process's memory does not move."""
    png = cv2.imencode(".png", np.zeros((5000, 5000, 4), np.uint16))[1].tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 90)).save(buffer, "JPEG", progressive=True, subsampling=0)
    small = buffer.getvalue()
    sof = small.index(b"\xff\xc2")
    jpeg = small[:sof + 5] + (9000).to_bytes(2, "big") * 2 + small[sof + 9:]
    assert len(png) < 1_000_000 and len(jpeg) < 1_000
    for data, (width, height) in ((png, (5000, 5000)), (jpeg, (9000, 9000))):
        outcome, _ = processed_in_fresh_process(tmp_path, data)
        assert outcome["status"] == "filtered", outcome
        assert outcome["reason"].startswith(f"decompression bomb (memory): {width}x{height}"), outcome
        assert outcome["peak"] < 10_000_000, outcome


def _matted_reference(bgra: np.ndarray) -> np.ndarray:
    """Alpha over white in float64, the whole frame at once (a test can afford it)."""
    colour, alpha = bgra[:, :, :3].astype(np.float64), bgra[:, :, 3:].astype(np.float64) / 255
    return np.rint(alpha * colour + (1 - alpha) * 255).astype(np.uint8)


def test_16bit_and_alpha_pngs_decode_to_8bit_bgr_within_twice_their_frame(photos, tmp_path):
    """A real photo as 8-bit RGBA, 16-bit RGBA and 16-bit RGB PNGs (1600 x 1200): each comes
    out as the 8-bit picture matted onto white (within one level of a float64 reference), and
    its work peaks at the decoded frame twice (OpenCV's buffer and NumPy's copy) plus the 8-bit
    frame: no float copy of the whole frame (those cost 77 MB here for either RGBA file)."""
    photo = cv2.imdecode(np.frombuffer(photos[0], np.uint8), cv2.IMREAD_COLOR)
    bgr = cv2.resize(photo, (1600, 1200), interpolation=cv2.INTER_CUBIC)
    alpha = (np.add.outer(np.arange(1200), np.arange(1600)) % 256).astype(np.uint8)[:, :, None]
    bgra = np.concatenate([bgr, alpha], axis=2)
    cases = {"rgba8": (bgra, _matted_reference(bgra)),
             "rgba16": (bgra.astype(np.uint16) * 257, _matted_reference(bgra)),
             "rgb16": (bgr.astype(np.uint16) * 257, bgr)}
    for name, (frame, expected) in cases.items():
        data = cv2.imencode(".png", frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
        outcome, out = processed_in_fresh_process(tmp_path, data, image_size=400, resize_mode="border",
                                                   encode_format="png")
        assert outcome["status"] == "success", (name, outcome)
        stored = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)
        reference = cv2.resize(expected, (400, 300), interpolation=cv2.INTER_AREA)
        assert stored.shape == (400, 400, 3) and stored.dtype == np.uint8, name
        assert np.abs(stored[50:350].astype(int) - reference).max() <= 1, name
        assert (stored[:50] == 255).all() and (stored[350:] == 255).all(), name  # the white border
        bound = 2 * frame.nbytes + 3 * 1600 * 1200 + 8_000_000
        assert outcome["peak"] < bound, (name, outcome["peak"], bound)


def test_jpeg_header_counts_libjpegs_coefficient_buffers(photos):
    """Baseline JPEGs decode scan by scan (no whole-image buffer); progressive ones keep every
    coefficient, at full resolution, whatever the output scale: 128 bytes per 8x8 block of each
    component, fewer blocks for subsampled chroma."""
    from core.image_header import jpeg_header

    image = Image.open(io.BytesIO(photos[0])).convert("RGB").resize((640, 480))
    for options, buffers in ((dict(), 0), (dict(progressive=True, subsampling=0), 640 * 480 * 3 * 2),
                             (dict(progressive=True, subsampling=2), 640 * 480 * 2 * 3 // 2)):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90, **options)
        header = jpeg_header(buffer.getvalue())
        assert (header.width, header.height, header.channels, header.buffers) == (640, 480, 3, buffers), options


def test_a_strip_too_long_for_the_encoder_is_filtered_with_its_reason_before_decoding():
    def png(width: int, height: int) -> bytes:
        ok, data = cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))
        return data.tobytes()

    strip = png(4000, 10)  # keep_ratio at 256: 102,400 x 256, over JPEG's 65,535 px side
    out = process(strip, ImageConfig(image_size=256, resize_mode="keep_ratio"))
    assert (out.status, out.original_width, out.original_height) == ("filtered", 4000, 10)
    assert "102400x256" in out.reason and "65535" in out.reason
    webp = process(png(2000, 20), ImageConfig(image_size=256, resize_mode="keep_ratio", encode_format="webp"))
    assert webp.status == "filtered" and "16383" in webp.reason  # 25,600 px: WebP's limit is lower
    fits = process(png(2000, 20), ImageConfig(image_size=256, resize_mode="keep_ratio"))  # 25,600 px: a JPEG
    assert fits.status == "success" and (fits.width, fits.height) == (25600, 256)
    assert process(strip, ImageConfig(image_size=256, resize_mode="border")).status == "success"  # 256 x 1
