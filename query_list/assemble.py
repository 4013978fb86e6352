"""Joining the query parts into the final list, and writing it.

The parts come keyed by their normalised form (:func:`query_list.tokens.normalize`), so an
entry found by several parts (a WordNet lemma that is also a frequent word) is one entry with
several ``sources``. The list is ordered by priority, the order in which ``--target-size`` cuts:

1. WordNet lemmas and unigrams, most frequent in the corpus first;
2. bigrams, highest PMI first;
3. article titles, most viewed first;

ties broken by the entry string, so the same inputs always give the same ids (the index).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from core.reports import QueryListFigures
from core.storage import join, write_parquet_atomic, write_text_atomic

PART_ORDER = ("wordnet", "unigram", "bigram", "title")


@dataclass
class Entry:
    key: str  # normalised form: tokens joined by one space
    entry: str  # the string written to metadata.json
    sources: list[str] = field(default_factory=list)
    unigram_count: int | None = None
    bigram_count: int | None = None
    pmi: float | None = None
    title_views: int | None = None

    def tier(self) -> int:
        if "wordnet" in self.sources or "unigram" in self.sources:
            return 0
        return 1 if "bigram" in self.sources else 2

    def sort_key(self) -> tuple:
        tier = self.tier()
        if tier == 0:
            frequency = self.unigram_count if self.unigram_count is not None else (self.bigram_count or 0)
            return (0, -frequency, 0.0, self.entry)
        if tier == 1:
            return (1, -(self.pmi or 0.0), -(self.bigram_count or 0), self.entry)
        return (2, -(self.title_views or 0), 0, self.entry)


def order_and_cap(entries: list[Entry], target_size: int) -> tuple[list[Entry], dict]:
    """The final ordered list (at most ``target_size``) and per-part figures for the report."""
    ordered = sorted(entries, key=Entry.sort_key)
    kept = ordered[:target_size]
    parts = {}
    for part in PART_ORDER:
        parts[part] = {
            "available": sum(part in e.sources for e in ordered),
            "kept": sum(part in e.sources for e in kept),
            "kept_as_first_source": sum(e.sources and e.sources[0] == part for e in kept),
        }
    summary = {
        "target_size": target_size,
        "size": len(kept),
        "available": len(ordered),
        "filled": len(kept) >= target_size,
        "shortfall": max(0, target_size - len(kept)),
        "parts": parts,
    }
    return kept, summary


ENTRIES_SCHEMA = pa.schema([
    ("entry_id", pa.int32()),
    ("entry", pa.string()),
    ("sources", pa.list_(pa.string())),
    ("unigram_count", pa.int64()),
    ("bigram_count", pa.int64()),
    ("pmi", pa.float64()),
    ("title_views", pa.int64()),
])


def entries_table(entries: list[Entry]) -> pa.Table:
    return pa.table({
        "entry_id": pa.array(range(len(entries)), pa.int32()),
        "entry": [e.entry for e in entries],
        "sources": [e.sources for e in entries],
        "unigram_count": [e.unigram_count for e in entries],
        "bigram_count": [e.bigram_count for e in entries],
        "pmi": [e.pmi for e in entries],
        "title_views": [e.title_views for e in entries],
    }, schema=ENTRIES_SCHEMA)


def write_outputs(out: str, entries: list[Entry], stats: dict) -> dict[str, str]:
    """Write metadata.json, entries.parquet and query_stats.json under ``out`` (atomically)."""
    paths = {name: join(out, name) for name in ("metadata.json", "entries.parquet", "query_stats.json")}
    write_text_atomic(paths["metadata.json"], json.dumps([e.entry for e in entries], ensure_ascii=False))
    write_parquet_atomic(paths["entries.parquet"], entries_table(entries))
    write_stats(out, stats)
    return paths


def write_stats(out: str, stats: dict) -> str:
    path = join(out, QueryListFigures.FILE)
    QueryListFigures.check(stats, path)  # the headline figures keep their names
    write_text_atomic(path, json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def entry_to_dict(entry: Entry) -> dict:
    return asdict(entry)
