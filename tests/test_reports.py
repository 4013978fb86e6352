"""Reports for people: every HTML report (demo, crawl, curation, dedup audit) opens in headless
Chromium with the shared look of core.html, its key figures visible with units, and the raw JSON
folded one click away."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_chromium
from wit.testing import browser


def opened(page_html: str, tmp_path: Path, name: str) -> tuple[set[str], str]:
    """The figures a reader sees in Chromium (label: value), and the DOM; a screenshot is taken
    and must show more than a blank page."""
    require_chromium()
    page = tmp_path / f"{name}.html"
    page.write_text(page_html)
    dom = browser.dump_dom(page)
    visible = json.loads(dom.split('data-visible-figures="', 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    shot = np.asarray(Image.open(browser.screenshot(page, tmp_path / f"{name}.png", width=1200, height=900)).convert("RGB"))
    assert shot.shape[:2] == (900, 1200) and len(np.unique(shot.reshape(-1, 3), axis=0)) > 20
    assert "--accent" in page_html and "<details class='raw'>" in page_html  # the shared style, folded JSON
    assert "<details class='raw' open" not in page_html
    return set(visible), dom


def test_shared_page_hides_the_raw_json_but_not_the_figures(tmp_path):
    from core import html

    secret = "figure-hidden-in-raw-json"
    page = html.page("t", [html.figures([("urls", "1,234")]),
                          f"<details><summary>more</summary>{html.figures([(secret, '9')])}</details>",
                          html.raw_json({"x": secret})])
    visible, dom = opened(page, tmp_path, "shared")
    assert visible == {"urls: 1,234"} and secret in dom  # folded figures have no box


def test_crawl_report_shows_key_figures(tmp_path):
    from core.shards import stats_of
    from pipeline import crawl_report
    from pipeline.crawl import CrawlConfig

    rng = random.Random(7)
    stats = []
    for shard in range(3):
        outcomes = [(rng.choice(["success"] * 8 + ["failed_to_download", "eval_duplicate"]), "HTTP 404: gone")
                    for _ in range(rng.randint(200, 400))]
        stats.append({**stats_of(shard, outcomes, 10_000, 5_000_000 + shard), "seconds": 4.0 + shard})
    report = crawl_report.summarize(stats, [("127.0.0.1", (100, 90))], CrawlConfig(urls=["u"], out=str(tmp_path)), 12.5)
    visible, _ = opened(crawl_report.html_page(report), tmp_path, "crawl")
    success = report["status"]["success"]
    assert f"urls: {report['urls']:,}" in visible and f"images stored: {success:,}" in visible
    assert f"success of downloaded: {100 * success / report['downloaded']:.1f} %" in visible
    assert f"evaluation duplicates dropped: {report['status']['eval_duplicate']:,}" in visible
    assert f"throughput: {report['urls'] / 12.5:,.1f} urls/s" in visible


def test_curation_report_shows_key_figures_and_the_plot(tmp_path):
    from pipeline import report

    entries = [f"entry {i}" for i in range(50)]
    matched = {i: 5 * (50 - i) for i in range(50)}
    kept = {i: min(c, 100) for i, c in matched.items()}
    stats = {"candidates_read": 9000, "pairs_unique": 8000, "pairs_matched": sum(matched.values()),
             "pairs_kept": sum(kept.values()), "dropped_empty_caption": 40}
    figures = report.summarize(stats, matched, kept, entries, 100, {}, cap="strict")
    plot = report.balance_plot(matched, {"selected_strict": kept}, 100, "strict")
    page = report.html_page(figures, plot)
    visible, dom = opened(page, tmp_path, "curation")
    assert "candidate pairs read: 9,000 pairs" in visible and f"kept pairs: {sum(kept.values()):,} pairs" in visible
    assert f"kept of matched: {100 * sum(kept.values()) / sum(matched.values()):.1f} %" in visible
    assert 'data-images="1"' in dom and 'data-images-loaded="1"' in dom
    report.write_report(str(tmp_path / "out"), figures, plot)
    assert (tmp_path / "out" / "curation_report.html").read_text() == page


def test_dedup_report_shows_key_figures(tmp_path):
    from dedup import report

    split = report.accuracy_split([True] * 30 + [False] * 70, [True] * 10 + [False] * 90, 10)
    summary = {"pool": {"samples": 5000, "shards": 4, "duplicates": 12, "clean": 4988, "unreadable": 1,
                        "damaged_shards": 0, "dropped_members": 0},
               "eval_sets": {"cifar": {"all": 100, "overlap": 10, "clean": 90, "contamination_pct": 10.0,
                                       "pool_duplicates": 12, "unreadable_eval_images": [], "zero_shot": split}},
               "unreadable_samples": [], "damaged_shards": [], "dropped_members": []}
    visible, dom = opened(report.render_html(summary, [], []), tmp_path, "dedup")
    assert {"pool samples audited: 5,000", "duplicates dropped: 12", "clean samples: 4,988",
            "cifar contaminated: 10.00 % of 100", "cifar zero-shot top-1: 30.0 %"} <= visible
    assert "n = 100 / 90 / 10" in dom


def test_demo_report_shows_each_stage_with_units(tmp_path):
    from pipeline.report import balance_plot
    from wit.demo_report import render

    out = tmp_path / "demo"
    (out / "curated").mkdir(parents=True)
    (out / "curated" / "balance.png").write_bytes(balance_plot({i: 50 - i for i in range(40)}, {}, 20, "strict"))
    (out / "run").mkdir()
    (out / "run" / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 4 - s / 20}) + "\n"
                                                       for s in range(40)))
    status = {"success": 1234, "failed_to_download": 56, "eval_duplicate": 7}
    summary = {"out": str(out), "seconds": 250.0, "storage": "a local folder standing in for the bucket",
               "world": {"pages": 20, "images": 320, "planted_eval_copies": 6},
               "stages": {"world": {"seconds": 1.0}, "queries": {"queries": 4321, "seconds": 9.0},
                          "curate": {"pool": 2000, "kept": 1500, "seconds": 20.0},
                          "crawl": {"status": status, "success_ratio": 1234 / 1241, "seconds": 30.0},
                          "dedup audit": {"pool": {"samples": 1234, "duplicates": 3},
                                          "eval_sets": {"demo-eval": {"contamination_pct": 0.5}}, "seconds": 5.0},
                          "train": {"steps": 40, "final_loss": 2.0, "samples_per_s": 123.456, "seconds": 60.0},
                          "zero-shot": {"n": 64, "top1": 0.40625, "top5": 0.8, "chance": 0.0625, "seconds": 3.0}},
               "commands": {"crawl": "wit crawl --urls x"}}
    page = render(summary, out)
    visible, dom = opened(page, tmp_path, "demo")
    for figure in ("urls crawled: 1,297", "crawl success: 99.4 %", "kept pairs: 1,500 pairs", "duplicates dropped: 3",
                   "training throughput: 123.5 samples/s", "zero-shot top-1: 40.6 %"):
        assert figure in visible, (figure, visible)
    assert "<b>4,321</b> queries" in dom and "<b>7</b> evaluation duplicates dropped" in dom
    assert "a local folder standing in for the bucket" in dom and "wit crawl --urls x" in dom
    assert "{&quot;" not in dom.split("<h2>Stages</h2>")[1].split("<details")[0]  # no raw dicts in sight
    assert 'data-images="1"' in dom and 'data-images-loaded="1"' in dom


def test_demo_storage_falls_back_to_a_local_folder_without_the_emulator(tmp_path, monkeypatch):
    from wit import demo
    from wit.testing import gcs

    with demo.bucket_storage("local", tmp_path) as (bucket, note):
        assert Path(bucket) == tmp_path / "bucket" and Path(bucket).is_dir()
        assert "local folder" in note and str(tmp_path / "bucket") in note

    def absent():
        raise FileNotFoundError("gcp-storage-emulator is not installed")

    (tmp_path / "bucket" / "00000_stats.json").write_text("{}")  # a previous run's shard
    monkeypatch.setattr(gcs, "emulator_command", absent)  # a plain install: the dev extra is missing
    with demo.bucket_storage("auto", tmp_path) as (bucket, note):
        assert Path(bucket) == tmp_path / "bucket" and "gcp-storage-emulator is not installed" in note
        assert not list(Path(bucket).iterdir())  # empty, as a fresh emulator bucket is
    with pytest.raises(demo.StageFailed, match=r"pip install .*\[dev\]"):
        with demo.bucket_storage("emulator", tmp_path):
            pass
