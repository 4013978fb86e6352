"""The curation job's composite transforms on small in-memory inputs (beam.Create + assert_that)."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from core.beam import make_pipeline
from pipeline import candidates
from pipeline.clean import CleanConfig, uid_of
from pipeline.curate import CountAndBalance, CurateConfig, MergeAndMatch, ReadCandidates, reject_shard

A, B, C = "https://a.example/1.jpg", "https://b.example/2.jpg", "https://c.example/3.jpg"


def record(url: str, source: str = "s") -> dict:
    return {"url": url, "source": source, "page_url": None, "spaced": None}


def test_read_candidates_cleans_keys_and_rejects_with_reasons(beam_options, tmp_path):
    pool = tmp_path / "pool.tsv"
    pool.write_text(f"url\tcaption\n{A}\ta red car\n\tno url here\nftp://x.example/f.jpg\ta cat\n{B}\t \n")
    with make_pipeline(beam_options) as pipeline:
        read = (pipeline | beam.Create([str(pool)])
                | ReadCandidates(candidates.ReaderConfig(), CleanConfig()))
        assert_that(read["pairs"] | beam.Map(lambda kv: (kv[0], kv[1]["url"])),
                    equal_to([((uid_of(A), "a red car"), A)]), label="pairs")
        assert_that(read["rejects"] | beam.Map(lambda row: row["reason"]),
                    equal_to(["missing_url", "bad_scheme", "empty_caption"]), label="rejects")
        totals = read["stats"] | beam.CombinePerKey(sum)
        assert_that(totals, equal_to([("candidates_read", 4), ("dropped_missing_url", 1), ("dropped_bad_scheme", 1),
                                      ("dropped_empty_caption", 1)]), label="stats")


def test_merge_and_match_merges_duplicates_and_keeps_matched_pairs(beam_options, tmp_path):
    queries = tmp_path / "metadata.json"
    queries.write_text(json.dumps(["red car", "cat"]))
    from pipeline.match import spaced_form

    def pair(url, caption, source="s"):
        return (uid_of(url), caption), {**record(url, source), "spaced": spaced_form(caption)}

    with make_pipeline(beam_options) as pipeline:
        matched = (pipeline
                   | beam.Create([pair(A, "a red car", "s2"), pair(A, "a red car", "s1"),
                                  pair(B, "a cat and a red car"), pair(C, "nothing here")])
                   | MergeAndMatch(str(queries), batch_size=2))
        rows = matched["matched"] | beam.FlatMap(lambda batch: [(p["uid"], p["source"], sorted(p["entry_ids"]))
                                                                for p in batch])
        # the duplicate of A keeps its smallest source; C matches no entry
        assert_that(rows, equal_to([(uid_of(A), "s1", [0]), (uid_of(B), "s", [0, 1])]), label="rows")
        totals = matched["stats"] | beam.CombinePerKey(sum)
        assert_that(totals, equal_to([("duplicates_merged", 1), ("pairs_unique", 3), ("pairs_matched", 2),
                                      ("pairs_unmatched", 1)]), label="stats")


def test_count_and_balance_caps_an_entry_at_t_under_the_strict_cap(beam_options):
    config = CurateConfig(pool=["p"], queries="q", out="o", max_per_query=1, url_shards=2)
    batch = [{**record(url), "uid": uid_of(url), "caption": "a cat", "entry_ids": {0}} for url in (A, B, C)]
    only = {**record("https://d.example/4.jpg"), "uid": uid_of("https://d.example/4.jpg"), "caption": "a dog",
            "entry_ids": {1}}
    with make_pipeline(beam_options) as pipeline:
        balanced = pipeline | beam.Create([batch, [only]]) | CountAndBalance(config, size=2)
        assert_that(balanced["counts"], equal_to([{0: 3, 1: 1}]), label="counts")
        per_entry = (balanced["kept"]
                     | beam.Map(lambda kv: (kv[1]["entry_ids"][0], round(kv[1]["keep_prob"], 6)))
                     | beam.combiners.Count.PerElement())
        # entry 0 matched 3 pairs and selects exactly t=1 (each with probability 1/3); entry 1 keeps its one
        assert_that(per_entry, equal_to([((0, round(1 / 3, 6)), 1), ((1, 1.0), 1)]), label="kept")
        shards = balanced["kept"] | beam.Map(lambda kv: 0 <= kv[0] < 2)
        assert_that(shards | "AllInRange" >> beam.combiners.ToList() | beam.Map(all), equal_to([True]), label="shards")


def test_reject_shard_is_stable_and_in_range():
    row = {"reason": "missing_url", "source": "s", "url": None, "caption": "x", "detail": ""}
    assert reject_shard(row, 4) == reject_shard(dict(reversed(list(row.items()))), 4)
    assert 0 <= reject_shard(row, 4)[0] < 4
