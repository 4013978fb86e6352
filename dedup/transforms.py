"""What happens to an image on its way around the web, as seeded transformations.

The detector's benchmark and tests apply these to real photos and check that the copies are
still found; distractors get the same treatment so that the edits themselves never look like
evidence. Every family takes a :class:`random.Random` so a benchmark row is reproducible from its
seed. Families (issue #6): any resize, JPEG recompression (quality 30 and up), crops keeping 70%
of the area or more (centred or not), horizontal flip, rotation up to 10 degrees, colour jitter,
grayscale, aspect distortion, padding to a square (img2dataset's ``border`` mode), text or banner
overlays, and pairs of these (:func:`apply_pair`).
"""

from __future__ import annotations

import io
import math
import random
from typing import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from dedup.features import inscribed

Transform = Callable[[Image.Image, random.Random], Image.Image]


def resize(img: Image.Image, rng: random.Random) -> Image.Image:
    """Down- or up-scaling by 0.25x to 2x (the longer side kept at 48 px or more)."""
    scale = rng.choice([rng.uniform(0.25, 0.8), rng.uniform(1.2, 2.0)])
    scale = max(scale, 48 / max(img.size))
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)


def jpeg(img: Image.Image, rng: random.Random) -> Image.Image:
    """Recompression at JPEG quality 30 to 60."""
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, "JPEG", quality=rng.randint(30, 60))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(img: Image.Image, rng: random.Random) -> Image.Image:
    """A crop keeping 70% to 95% of the area, anywhere in the image, aspect within 3:4..4:3 of the original."""
    area = rng.uniform(0.70, 0.95)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(1.0, math.sqrt(area * ratio))
    h = min(1.0, area / w)
    cw, ch = max(1, round(img.width * w)), max(1, round(img.height * h))
    x, y = rng.randint(0, img.width - cw), rng.randint(0, img.height - ch)
    return img.crop((x, y, x + cw, y + ch))


def flip(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(img)


def rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    """Rotation by 2 to 10 degrees either way, straightened: cropped to the largest upright rectangle."""
    degrees = rng.uniform(2, 10) * rng.choice([-1, 1])
    rotated = img.rotate(degrees, Image.BICUBIC, expand=False)
    w, h = inscribed(img.width, img.height, degrees)
    x, y = (img.width - w) // 2, (img.height - h) // 2
    return rotated.crop((x, y, x + w, y + h))


def jitter(img: Image.Image, rng: random.Random) -> Image.Image:
    """Brightness, contrast and saturation in 0.6..1.4 and a hue shift of up to 0.1 of the circle."""
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.6, 1.4))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
    hsv = img.convert("RGB").convert("HSV")
    h, s, v = hsv.split()
    shift = round(rng.uniform(-0.1, 0.1) * 255)
    h = h.point(lambda value: (value + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def grayscale(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.convert("L").convert("RGB")


def aspect(img: Image.Image, rng: random.Random) -> Image.Image:
    """One axis stretched or squeezed by 1.25x to 1.6x."""
    factor = rng.uniform(1.25, 1.6)
    if rng.random() < 0.5:
        return img.resize((round(img.width * factor), img.height), Image.BICUBIC)
    return img.resize((img.width, round(img.height * factor)), Image.BICUBIC)


def border(img: Image.Image, rng: random.Random) -> Image.Image:
    """img2dataset's ``border`` mode: longer side to 256 (or 224), padded to a square with black."""
    size = rng.choice([224, 256])
    scale = size / max(img.size)
    inner = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
    return canvas


_WORDS = ("sale", "photo", "copyright", "stock", "free", "shipping", "best", "price", "www", "example", "com",
          "new", "limited", "offer", "credit", "image", "click", "here")


def overlay(img: Image.Image, rng: random.Random) -> Image.Image:
    """A caption in large letters across the image, or a banner strip (up to 15% of the height)."""
    img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))).upper()
    size = max(10, img.height // rng.randint(10, 16))
    font = ImageFont.load_default(size=size)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    if rng.random() < 0.5:
        height = max(8, round(img.height * rng.uniform(0.08, 0.15)))
        top = 0 if rng.random() < 0.5 else img.height - height
        draw.rectangle((0, top, img.width, top + height), fill=colour)
        ink = tuple(255 - c for c in colour)
        draw.text((rng.randint(0, max(1, img.width // 4)), top + height // 6), text, fill=ink, font=font)
    else:
        x = rng.randint(0, max(1, img.width // 3))
        y = rng.randint(img.height // 4, max(img.height // 4 + 1, 3 * img.height // 4))
        draw.text((x, y), text, fill=colour, font=font, stroke_width=max(1, size // 12),
                  stroke_fill=tuple(255 - c for c in colour))
    return img


FAMILIES: dict[str, Transform] = {
    "resize": resize, "jpeg": jpeg, "crop": crop, "flip": flip, "rotate": rotate, "jitter": jitter,
    "grayscale": grayscale, "aspect": aspect, "border": border, "overlay": overlay,
}


def apply(name: str, img: Image.Image, rng: random.Random) -> Image.Image:
    """Apply one family, or ``a+b`` for a pair (in that order)."""
    for part in name.split("+"):
        if part not in FAMILIES:
            raise ValueError(f"unknown transformation {part!r}; known: {sorted(FAMILIES)}")
        img = FAMILIES[part](img.convert("RGB"), rng)
    return img


def pairs(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct pairs of different families, drawn with ``rng``."""
    names = sorted(FAMILIES)
    every = [f"{a}+{b}" for a in names for b in names if a != b]
    return rng.sample(every, min(count, len(every)))
