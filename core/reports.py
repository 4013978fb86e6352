"""Report records: the headline figures of each stage's report, one name per figure.

Every Beam job writes a JSON report with much detail (per-host tables, per-entry tallies, ...).
Its headline figures are a contract between the stage that writes them and everything that reads
them (the demo, the runbook's checks, a person comparing runs): each has exactly one name, a unit,
and one place it lives in the file. The stage builds its report, then passes it through
``Record.check`` before writing; readers use ``Record.read(path)``. A renamed or missing figure
is a clear error at the writer, not a guess at the reader.

    from core.reports import CrawlFigures
    crawl = CrawlFigures.read("gs://bucket/shards/crawl_report.json")
    print(crawl.success_ratio, [f.text() for f in crawl.figures()])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar


class ReportError(ValueError):
    """A report file without a figure its stage promises."""


@dataclass(frozen=True)
class Figure:
    label: str
    value: float | int | None
    unit: str = ""  # "" (a count), "%" (value is a fraction shown as a percentage), "/s", "MB", ...

    def text(self) -> str:
        """The figure as a person reads it: ``12,345 urls``, ``87.2 %``, ``95.1 urls/s``."""
        if self.value is None:
            return "n/a"
        if self.unit == "%":
            return f"{100 * self.value:.1f} %"
        if isinstance(self.value, int):
            number = f"{self.value:,}"
        else:
            number = f"{self.value:,.1f}" if abs(self.value) >= 10 else f"{self.value:.3g}"
        return f"{number} {self.unit}".strip()


@dataclass(frozen=True)
class Record:
    """A stage's headline figures. ``PATHS`` maps each field to its place in the report
    (dotted for nested dicts); ``FILE`` is the report's file name; ``LABELS`` gives each
    figure's label and unit for people."""

    FILE: ClassVar[str] = ""
    PATHS: ClassVar[dict[str, str]] = {}
    LABELS: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def check(cls, report: dict, source: str | None = None):
        """The record of a report dict; :class:`ReportError` naming each missing figure."""
        values, missing = {}, []
        for item in fields(cls):
            found, value = _lookup(report, cls.PATHS.get(item.name, item.name))
            if not found:
                missing.append(cls.PATHS.get(item.name, item.name))
            values[item.name] = value
        if missing:
            raise ReportError(f"{source or cls.FILE}: no {', '.join(missing)} (the {cls.__name__} of a "
                              f"{cls.FILE} report)")
        return cls(**values)

    @classmethod
    def read(cls, path: str):
        import fsspec

        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            try:
                report = json.load(handle)
            except ValueError as exc:
                raise ReportError(f"{path}: not JSON: {exc}") from None
        if not isinstance(report, dict):
            raise ReportError(f"{path}: not a JSON object")
        return cls.check(report, path)

    def figures(self) -> list[Figure]:
        return [Figure(label, getattr(self, name), unit) for name, (label, unit) in self.LABELS.items()]


def _lookup(report: dict, path: str) -> tuple[bool, Any]:
    value: Any = report
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


@dataclass(frozen=True)
class QueryListFigures(Record):
    FILE: ClassVar[str] = "query_stats.json"
    PATHS: ClassVar[dict[str, str]] = {"queries": "size", "parts": "parts"}
    LABELS: ClassVar[dict[str, tuple[str, str]]] = {"queries": ("queries", ""), "target_size": ("target", "")}
    queries: int
    target_size: int
    parts: dict


@dataclass(frozen=True)
class CurationFigures(Record):
    FILE: ClassVar[str] = "curation_report.json"
    LABELS: ClassVar[dict[str, tuple[str, str]]] = {
        "pool_size": ("candidates read", "pairs"), "unique_pairs": ("unique", "pairs"),
        "matched_pairs": ("matched a query", "pairs"), "kept_pairs": ("kept", "pairs"),
        "kept_fraction": ("kept of matched", "%"), "entries_kept": ("queries with pairs", "")}
    pool_size: int
    unique_pairs: int
    matched_pairs: int
    kept_pairs: int
    kept_fraction: float
    entries_kept: int
    max_per_query: int
    cap: str


@dataclass(frozen=True)
class CrawlFigures(Record):
    FILE: ClassVar[str] = "crawl_report.json"
    PATHS: ClassVar[dict[str, str]] = {"successes": "status.success", "eval_duplicates": "status.eval_duplicate"}
    LABELS: ClassVar[dict[str, tuple[str, str]]] = {
        "urls": ("urls", ""), "successes": ("images stored", ""), "success_ratio": ("success of downloaded", "%"),
        "eval_duplicates": ("evaluation duplicates dropped", ""), "urls_per_second": ("throughput", "urls/s")}
    urls: int
    successes: int
    success_ratio: float
    eval_duplicates: int
    urls_per_second: float | None
    shards: int
    image_bytes: int


@dataclass(frozen=True)
class AuditFigures(Record):
    FILE: ClassVar[str] = "report.json"
    PATHS: ClassVar[dict[str, str]] = {"samples": "pool.samples", "duplicates": "pool.duplicates",
                                       "clean": "pool.clean", "unreadable": "pool.unreadable",
                                       "eval_sets": "eval_sets"}
    LABELS: ClassVar[dict[str, tuple[str, str]]] = {
        "samples": ("pool samples audited", ""), "duplicates": ("evaluation duplicates", ""),
        "clean": ("clean samples", "")}
    samples: int
    duplicates: int
    clean: int
    unreadable: int
    eval_sets: dict
