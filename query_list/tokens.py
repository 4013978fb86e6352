"""The one text normalisation shared by query counting and caption matching.

A query matches a caption when its tokens appear, in order and whole, among the caption's
tokens. Both sides are tokenised the same way:

1. case is kept ("Apple" and "apple" are different queries, as in CLIP and MetaCLIP);
2. the characters in :data:`SPACED` are padded with spaces, so "St. Louis," becomes the
   tokens ``St . Louis ,``;
3. the text is split on whitespace.

MetaCLIP pads ``, . ; : ? !`` and the backtick. We pad those and also brackets and double
quotes, because alt-text is full of ``"Golden Gate Bridge"`` and ``(1920)``; padding the same
characters on both sides keeps every MetaCLIP match a match. Counting in ``query_list`` uses
this tokeniser, so every counted unigram and bigram is a token sequence the matcher can find.

Counting keeps only *word* tokens (:func:`is_word`); bigrams are adjacent word tokens inside
one *segment*: a run of words not interrupted by punctuation or a line break.
"""

from __future__ import annotations

import re
from typing import Iterator

# MetaCLIP's set first, then ours (see the module docstring).
SPACED = ",.;:?!`" + '()[]{}"'
_SPACE_TABLE = str.maketrans({c: f" {c} " for c in SPACED})

# A word: starts and ends with a letter or digit; inside, letters, digits and the joiners
# found in real names (O'Brien, Coca-Cola, AT&T, 3/4, C++ is not a word).
_WORD = re.compile(r"[^\W_](?:[\w'’&\-/]*[^\W_])?")


def spaced(text: str) -> str:
    """``text`` with the :data:`SPACED` characters padded by spaces."""
    return text.translate(_SPACE_TABLE)


def tokenize(text: str) -> list[str]:
    """Case-kept tokens of ``text`` (see the module docstring)."""
    return text.translate(_SPACE_TABLE).split()


def normalize(text: str) -> str:
    """The canonical form of a query or caption: its tokens joined by single spaces."""
    return " ".join(tokenize(text))


def is_word(token: str) -> bool:
    return _WORD.fullmatch(token) is not None


def segments(text: str) -> Iterator[list[str]]:
    """Runs of word tokens, split at punctuation, other non-word tokens and line breaks."""
    for line in text.splitlines():
        run: list[str] = []
        for token in line.translate(_SPACE_TABLE).split():
            if _WORD.fullmatch(token):
                run.append(token)
            elif run:
                yield run
                run = []
        if run:
            yield run
