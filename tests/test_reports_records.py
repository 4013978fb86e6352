"""Report records (core.reports): one name per headline figure, checked where reports are written
and read, shown to people with units."""

from __future__ import annotations

import json

import pytest

from core.reports import AuditFigures, CrawlFigures, CurationFigures, Figure, QueryListFigures, ReportError


def test_nested_figures_are_read_by_their_one_name(tmp_path):
    report = {"urls": 1000, "status": {"success": 870, "eval_duplicate": 3}, "success_ratio": 0.9,
              "urls_per_second": 95.12, "shards": 4, "image_bytes": 12_000_000, "top_hosts": []}
    path = tmp_path / "crawl_report.json"
    path.write_text(json.dumps(report))
    crawl = CrawlFigures.read(str(path))
    assert (crawl.urls, crawl.successes, crawl.eval_duplicates) == (1000, 870, 3)
    assert [f.text() for f in crawl.figures()] == ["1,000", "870", "90.0 %", "3", "95.1 urls/s"]


def test_a_missing_or_renamed_figure_is_an_error_naming_it(tmp_path):
    report = {"pool_size": 10, "unique_pairs": 9, "matched_pairs": 8, "pairs_kept": 4, "kept_fraction": 0.5,
              "entries_kept": 3, "max_per_query": 20000, "cap": "strict"}
    with pytest.raises(ReportError, match="curation_report.json: no kept_pairs"):
        CurationFigures.check(report)
    path = tmp_path / "report.json"
    path.write_text("[1, 2]")
    with pytest.raises(ReportError, match="not a JSON object"):
        AuditFigures.read(str(path))
    path.write_text("{")
    with pytest.raises(ReportError, match="not JSON"):
        AuditFigures.read(str(path))


def test_query_list_and_audit_records():
    queries = QueryListFigures.check({"size": 500, "target_size": 500, "parts": {"unigram": {"kept": 400}}})
    assert queries.queries == 500 and queries.parts["unigram"]["kept"] == 400
    audit = AuditFigures.check({"pool": {"samples": 10, "duplicates": 2, "clean": 8, "unreadable": 0},
                                "eval_sets": {"cifar10": {"overlap": 2}}})
    assert (audit.samples, audit.duplicates, audit.clean) == (10, 2, 8)


@pytest.mark.parametrize("figure, text", [
    (Figure("x", 12345), "12,345"), (Figure("x", 0.1234, "%"), "12.3 %"), (Figure("x", 3.14159, "s"), "3.14 s"),
    (Figure("x", 1234.56, "MB"), "1,234.6 MB"), (Figure("x", None, "/s"), "n/a")])
def test_figures_read_as_people_read_them(figure, text):
    assert figure.text() == text
