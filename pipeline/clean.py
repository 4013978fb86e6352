"""Cleaning candidate pairs: one pure function per field, each drop named by a reason.

Reasons (the ``rejects/`` rows and the report count them):

- url: ``missing_url``, ``bad_scheme`` (not http/https, ``data:`` included), ``url_too_long``,
  ``bad_url`` (no host, or lone surrogates from a JSON escape);
- caption: ``empty_caption``, ``caption_too_long``, ``filename_caption`` (``IMG_1234.JPG``,
  ``photo.png``), ``camera_caption`` (``DSC01234``, ``IMG_20190101_123456``, exposure
  settings such as ``1/250 sec f/5.6 ISO 200``: the YFCC100M titles CLIP's paper complains
  about), ``not_english`` (with the optional language filter).
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

MAX_URL_CHARS = 2048
# The caption cap (--max-caption-chars) may be set up to this; the readers take fields this long,
# so a caption over the cap is read and dropped here, counted as caption_too_long.
MAX_CAPTION_CHARS_LIMIT = 1 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: a str UTF-8 cannot encode


@dataclass(frozen=True)
class CleanConfig:
    min_caption_chars: int = 2
    max_caption_chars: int = 1000
    english_only: bool = False
    english_min_score: float = 0.0  # py3langid's normalised probability threshold

    def __post_init__(self) -> None:
        if not 1 <= self.max_caption_chars <= MAX_CAPTION_CHARS_LIMIT:
            raise ValueError(f"--max-caption-chars must be between 1 and {MAX_CAPTION_CHARS_LIMIT}")


def uid_of(url: str) -> str:
    """The record identity: first 24 hex characters of sha224 of the url."""
    return hashlib.sha224(url.encode("utf-8")).hexdigest()[:24]


def clean_url(url: object) -> tuple[str | None, str | None]:
    """(url, None) when usable, else (None, reason). The fragment is dropped (never fetched)."""
    if not isinstance(url, str) or not url.strip():
        return None, "missing_url"
    url = html.unescape(url.strip())
    if len(url) > MAX_URL_CHARS:
        return None, "url_too_long"
    if not url.isascii() and _SURROGATE.search(url):  # from a JSON escape: no url, and no uid (sha224 of UTF-8)
        return None, "bad_url"
    try:
        parts = urlsplit(url)
    except ValueError:
        return None, "bad_url"
    if parts.scheme.lower() not in ("http", "https"):
        return None, "bad_scheme"
    if not parts.hostname:
        return None, "bad_url"
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path, parts.query, "")), None


_FILENAME = re.compile(r"^[\w\-. ()\[\]]+\.(jpe?g|png|gif|webp|bmp|tiff?|heic|svg|avif)$", re.IGNORECASE)
_CAMERA = re.compile(
    r"^(img|dsc|dscn|dscf|dcim|pict|pic|sam|gopr|mvi|dji|p|image|photo|screenshot|pxl|wp)[_\- ]?\d{3,}([_\- ]\d+)*$",
    re.IGNORECASE)
_EXPOSURE = re.compile(r"\b(\d+/\d+\s*s(ec)?|f/\d+(\.\d+)?|iso\s*\d{2,5}|\d+(\.\d+)?\s*mm)\b", re.IGNORECASE)
_DIGITS_ONLY = re.compile(r"^[\d\W_]+$")


def normalize_caption(text: str) -> str:
    """HTML entities unescaped (twice: alt text is often double-escaped), whitespace collapsed."""
    text = html.unescape(html.unescape(text))
    return " ".join(text.split())


def caption_junk_reason(caption: str) -> str | None:
    if _FILENAME.match(caption):
        return "filename_caption"
    if _CAMERA.match(caption) or _DIGITS_ONLY.match(caption):
        return "camera_caption"
    if len(_EXPOSURE.findall(caption)) >= 2 and len(caption.split()) <= 12:
        return "camera_caption"
    return None


def clean_caption(text: object, config: CleanConfig) -> tuple[str | None, str | None]:
    if not isinstance(text, str):
        return None, "empty_caption"
    caption = normalize_caption(text)
    if len(caption) < config.min_caption_chars:
        return None, "empty_caption"
    if len(caption) > config.max_caption_chars:
        return None, "caption_too_long"
    reason = caption_junk_reason(caption)
    if reason:
        return None, reason
    if config.english_only and not is_english(caption, config.english_min_score):
        return None, "not_english"
    return caption, None


_IDENTIFIER = None


def is_english(text: str, min_score: float = 0.0) -> bool:
    """py3langid (its model ships inside the package: no download)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    language, score = _IDENTIFIER.classify(text)
    return language == "en" and score >= min_score
