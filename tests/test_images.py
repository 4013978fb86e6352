"""Decoding, resizing and encoding one image (pipeline.images), on real photos."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from pipeline.images import ImageConfig, jpeg_size, process


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
