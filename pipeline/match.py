"""Substring matching of captions against the query list (Aho-Corasick).

An entry matches a caption when the entry's tokens occur in the caption's tokens, in order and
whole, both tokenised by :mod:`query_list.tokens` (case kept, punctuation spaced). Written as
strings: ``" " + normalize(entry) + " "`` is a substring of ``" " + normalize(caption) + " "``
(MetaCLIP's rule, with the same padding on both sides).

One pyahocorasick automaton holds every entry; a caption costs one pass over its characters,
whatever the list size. Entries that normalise to the same string share one key, and a match
reports all their ids.
"""

from __future__ import annotations

import json
from typing import Sequence

import ahocorasick

from query_list.tokens import normalize


class QueryListError(ValueError):
    """The query list is not a JSON array of strings."""


def load_entries(path: str) -> list[str]:
    import fsspec

    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            entries = json.load(handle)
    except json.JSONDecodeError as exc:
        raise QueryListError(f"{path} is not JSON ({exc}); expected a JSON array of strings (metadata.json)") from exc
    if not isinstance(entries, list):
        raise QueryListError(f"{path} holds a JSON {type(entries).__name__}, expected an array of strings")
    bad = [i for i, entry in enumerate(entries) if not isinstance(entry, str)]
    if bad:
        raise QueryListError(f"{path}: entries {bad[:5]} are not strings; expected a JSON array of strings")
    if not entries:
        raise QueryListError(f"{path} is an empty list: nothing could match")
    return entries


class Matcher:
    """Built once (per worker); ``match(caption)`` returns the sorted matching entry ids."""

    def __init__(self, entries: Sequence[str]) -> None:
        automaton = ahocorasick.Automaton()
        keys: dict[str, list[int]] = {}
        for entry_id, entry in enumerate(entries):
            key = normalize(entry)
            if key:
                keys.setdefault(f" {key} ", []).append(entry_id)
        for key, ids in keys.items():
            automaton.add_word(key, tuple(ids))
        automaton.make_automaton()
        self.automaton = automaton
        self.size = len(entries)

    def match(self, caption: str) -> list[int]:
        found: set[int] = set()
        for _, ids in self.automaton.iter(f" {normalize(caption)} "):
            found.update(ids)
        return sorted(found)


def reference_match(entries: Sequence[str], caption: str) -> list[int]:
    """The plain definition, entry by entry (for tests)."""
    text = f" {normalize(caption)} "
    return [i for i, entry in enumerate(entries) if normalize(entry) and f" {normalize(entry)} " in text]
