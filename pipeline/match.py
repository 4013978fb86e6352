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

from operator import itemgetter

import ahocorasick

from query_list.tokens import normalize


_second = itemgetter(1)


def spaced_form(caption: str) -> str:
    """The normalised caption with a space at each end: the string the automaton scans."""
    return f" {normalize(caption)} "


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
        # Each key holds its first id (an int: the common case stays cheap); entries that share a
        # normalised form are expanded from ``aliases`` after the scan.
        self.aliases: dict[int, tuple[int, ...]] = {}
        for key, ids in keys.items():
            automaton.add_word(key, ids[0])
            if len(ids) > 1:
                self.aliases[ids[0]] = tuple(ids)
        automaton.make_automaton()
        self.automaton = automaton
        self.size = len(entries)

    def match(self, caption: str) -> list[int]:
        return self.match_spaced(spaced_form(caption))

    def match_spaced(self, spaced: str) -> list[int]:
        """Match a caption already in :func:`spaced_form` (the curation job computes it while
        cleaning, so the matching step scans and nothing else)."""
        found = set(map(_second, self.automaton.iter(spaced)))
        if self.aliases and not self.aliases.keys().isdisjoint(found):
            for first in self.aliases.keys() & found:
                found.update(self.aliases[first])
        return sorted(found)


def reference_match(entries: Sequence[str], caption: str) -> list[int]:
    """The plain definition, entry by entry (for tests)."""
    text = f" {normalize(caption)} "
    return [i for i, entry in enumerate(entries) if normalize(entry) and f" {normalize(entry)} " in text]
