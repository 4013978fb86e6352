"""Real photos at typical web size for crawl benchmarks and the WAN web.

:func:`web_photos` fills a folder with ``count`` distinct JPEGs made from the ImageNet sample in
the shared data folder (upscaled to ``short_side`` px on the short side, flipped, cropped and
colour-shifted variants, so no two files are equal: about 100 KB each at 640 px). Files already
there are reused.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from wit.testing.shared_data import shared_data_dir


def web_photos(target: Path, count: int, short_side: int = 640, quality: int = 85) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    existing = sorted(target.glob("*.jpg"))
    if len(existing) >= count:
        return existing[:count]
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    sources = sorted((data / "images/photos/imagenet_sample").glob("*.JPEG"))
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        img = cv2.imread(str(sources[index % len(sources)]))
        variant = index // len(sources)
        if variant % 2:
            img = img[:, ::-1]
        h, w = img.shape[:2]
        crop = 1.0 - 0.04 * (variant % 5)
        top, left = int((h - h * crop) / 2), int((w - w * crop) / 2)
        img = img[top:top + int(h * crop), left:left + int(w * crop)]
        scale = short_side / min(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, size=3), 0, 255).astype(np.uint8)
        path = target / f"{index:06d}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        paths.append(path)
    return paths
