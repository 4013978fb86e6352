"""Substring matching of captions against the query list (Aho-Corasick).

An entry matches a caption when the entry's tokens occur in the caption's tokens, in order and
whole, both tokenised by :mod:`query_list.tokens` (case kept, punctuation spaced). Written as
strings: ``" " + normalize(entry) + " "`` is a substring of ``" " + normalize(caption) + " "``
(MetaCLIP's rule, with the same padding on both sides).

One Aho-Corasick automaton holds every entry; a caption costs one pass over its bytes, whatever
the list size. The automaton is ``ahocorasick_rs`` (the Rust ``aho-corasick`` crate's contiguous
NFA: one block of memory) over the UTF-8 bytes of the spaced forms; UTF-8 is self-synchronising,
so a byte match is a character match. It scans at 1.1-1.8x pyahocorasick's rate here and, unlike
pyahocorasick's node-per-character trie (whose speed moved by 1.6x with where its nodes landed
in memory), at a steady one (``benchmarks/curate_matching.py``). Entries that normalise to the
same string share one key, and a match reports all their ids.
"""

from __future__ import annotations

import json
from typing import Sequence

from itertools import chain
from operator import itemgetter

import ahocorasick_rs
import numpy as np

from query_list.tokens import normalize


_pattern = itemgetter(0)


def key_bytes(spaced: str) -> bytes:
    """What the automaton scans (lone surrogates from JSON escapes pass through on both sides)."""
    return spaced.encode("utf-8", "surrogatepass")


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
        keys: dict[bytes, list[int]] = {}
        for entry_id, entry in enumerate(entries):
            key = normalize(entry)
            if key:
                keys.setdefault(key_bytes(f" {key} "), []).append(entry_id)
        # Pattern i reports the first id of its key (the common case stays one lookup, none at all
        # when the ids are the patterns' positions); entries that share a normalised form are
        # expanded from ``aliases`` after the scan.
        self.first_ids = tuple(ids[0] for ids in keys.values())
        self.aliases: dict[int, tuple[int, ...]] = {ids[0]: tuple(ids) for ids in keys.values() if len(ids) > 1}
        self.identity = self.first_ids == tuple(range(len(self.first_ids)))
        self.automaton = (ahocorasick_rs.BytesAhoCorasick(
            list(keys), implementation=ahocorasick_rs.Implementation.ContiguousNFA) if keys else None)
        self.size = len(entries)

    def match(self, caption: str) -> list[int]:
        return self.match_spaced(spaced_form(caption))

    def match_spaced(self, spaced: str) -> list[int]:
        """Match a caption already in :func:`spaced_form` (the curation job computes it while
        cleaning, so the matching step scans and nothing else)."""
        return sorted(self.match_many([spaced])[0])

    def match_many(self, spaced: Sequence[str]) -> list[tuple[int, ...]]:
        """The entry ids of each caption (in :func:`spaced_form`), unordered: the job's hot loop.
        Callers that need an order sort (the balancing step does, for its float product). Tuples,
        not sets: tuples of ints leave the garbage collector's lists after its first look, sets
        held by the batch would be traversed by every collection."""
        if self.automaton is None:
            return [()] * len(spaced)
        find = self.automaton.find_matches_as_indexes
        if self.identity and not self.aliases:
            return [tuple(set(map(_pattern, find(key_bytes(text), overlapping=True)))) for text in spaced]
        first_of = self.first_ids.__getitem__
        firsts, found = self.aliases.keys(), []
        for text in spaced:
            ids = set(map(first_of, map(_pattern, find(key_bytes(text), overlapping=True))))
            if firsts and not firsts.isdisjoint(ids):
                for first in firsts & ids:
                    ids.update(self.aliases[first])
            found.append(tuple(ids))
        return found


class EntryTally:
    """Pairs per entry, for a list of ``size`` entries (ids are dense). Batches' ids are kept
    aside and added in bursts of about a million (one sequential ``bincount``, not a random
    write per id between every two matching batches, which would keep evicting the automaton
    from the CPU caches); ``sparse()`` is the compact form that travels between workers."""

    FLUSH = 1 << 20

    def __init__(self, size: int) -> None:
        self.size = size
        self.dense: np.ndarray | None = None
        self.pending: list[np.ndarray] = []
        self.pending_ids = 0

    def add_batch(self, batch: Sequence[dict]) -> None:
        """One per entry id of each pair (a pair's ids are distinct: this counts pairs)."""
        ids = np.fromiter(chain.from_iterable(pair["entry_ids"] for pair in batch), np.int64)
        self.pending.append(ids)
        self.pending_ids += ids.size
        if self.pending_ids >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            ids = np.concatenate(self.pending)
            self.pending, self.pending_ids = [], 0
            if ids.size and (ids.min() < 0 or ids.max() >= self.size):
                raise ValueError(f"entry ids outside the query list (0..{self.size - 1})")
            dense = self._dense()
            dense += np.bincount(ids, minlength=self.size)

    def merge(self, other: "EntryTally") -> None:
        ids, counts = other.sparse()
        self._dense()[ids] += counts

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        self.flush()
        if self.dense is None:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        nonzero = np.flatnonzero(self.dense)
        return nonzero.astype(np.int32), self.dense[nonzero]

    def as_dict(self) -> dict[int, int]:
        ids, counts = self.sparse()
        return dict(zip(ids.tolist(), counts.tolist()))

    def __getstate__(self) -> dict:  # between workers: the sparse form only
        ids, counts = self.sparse()
        return {"size": self.size, "ids": ids, "counts": counts}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["size"])
        if state["ids"].size:
            self._dense()[state["ids"]] += state["counts"]

    def _dense(self) -> np.ndarray:
        if self.dense is None:
            self.dense = np.zeros(self.size, np.int64)
        return self.dense


def reference_match(entries: Sequence[str], caption: str) -> list[int]:
    """The plain definition, entry by entry (for tests)."""
    text = f" {normalize(caption)} "
    return [i for i, entry in enumerate(entries) if normalize(entry) and f" {normalize(entry)} " in text]
