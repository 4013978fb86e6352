"""A caption as text: whatever a url list or a page holds in its caption field, as a ``str``.

Tables from the web hold anything where a caption should be: a number in a jsonl file, bytes
that are not UTF-8 in a CSV (pyarrow then hands the whole column over as ``bytes``), a lone
surrogate from a JSON ``\\ud800`` escape, a nested object. Readers pass every caption through
:func:`caption_text` once, where the table is read, so everything downstream (cleaning,
matching, parquet and tar writers) sees valid text and nothing crashes on ``.encode``. The
reason it returns is counted by the job: a converted caption is kept, but not silently.
"""

from __future__ import annotations

import math
import numbers
import re

NOT_TEXT = "caption_not_text"  # a number, a boolean, a nested value: made text or emptied
NOT_UTF8 = "caption_not_utf8"  # bytes or surrogates that are not UTF-8: bad parts replaced

_SURROGATE = re.compile("[\ud800-\udfff]")


def caption_text(value: object) -> tuple[str, str | None]:
    """(the caption as text, the reason it was not text already, or None).

    Text is kept as it is; null is the empty caption; bytes are decoded as UTF-8 with
    replacement characters; numbers become their decimal form; anything else (lists, objects)
    is no caption at all. Never raises."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decoded(bytes(value))
    if isinstance(value, bool):  # before numbers: a bool is an int to Python
        return ("true" if value else "false"), NOT_TEXT
    if isinstance(value, numbers.Number):
        return _number_text(value), NOT_TEXT
    return "", NOT_TEXT


def _valid_text(text: str) -> tuple[str, str | None]:
    """A str that UTF-8 can encode: lone surrogates (from JSON escapes, or bytes decoded with
    ``surrogateescape``) become U+FFFD, as undecodable bytes do."""
    fixed = _SURROGATE.sub("\ufffd", text)
    return fixed, (NOT_UTF8 if fixed != text else None)


def _decoded(data: bytes) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), NOT_UTF8


def _number_text(value: numbers.Number) -> str:
    """Decimal form of a number; NaN and infinities (a float column's "missing") are empty."""
    try:
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            return ""
        return str(value)
    except (ValueError, TypeError, OverflowError):  # e.g. ints past Python's 4,300-digit str limit
        return ""


__all__ = ["caption_text", "NOT_TEXT", "NOT_UTF8"]
