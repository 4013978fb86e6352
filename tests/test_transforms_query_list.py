"""The query-list job's composite transforms on small in-memory inputs (beam.Create + assert_that)."""

from __future__ import annotations

import gzip

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from core.beam import make_pipeline
from query_list.build import (TOKENS_KEY, AssembleEntries, CountStage, PopularTitles, ScoreBigrams, SplitCounts,
                              pmi)


def test_count_stage_counts_words_and_frequent_bigrams_only(beam_options):
    with make_pipeline(beam_options) as pipeline:
        texts = pipeline | beam.Create(["red car, red car", "a red car. blue sky"])
        counts = texts | CountStage(shards=4, bigram_min_count=2)
        assert_that(counts, equal_to([("red", 3), ("car", 3), ("a", 1), ("blue", 1), ("sky", 1),
                                      ("red car", 3), (TOKENS_KEY, 9)]))


def test_split_counts_sorts_tokens_words_and_bigrams(beam_options):
    with make_pipeline(beam_options) as pipeline:
        parts = pipeline | beam.Create([(TOKENS_KEY, 50), ("cat", 3), ("red car", 2)]) | SplitCounts()
        assert_that(parts["tokens"], equal_to([("tokens", 50)]), label="tokens")
        assert_that(parts["unigrams"], equal_to([("cat", 3)]), label="unigrams")
        assert_that(parts["bigrams"], equal_to([("red car", 2)]), label="bigrams")


def test_score_bigrams_joins_both_word_counts_and_keeps_the_budget_by_pmi(beam_options):
    new_york, the_city = pmi(6, 10, 8, 1000), pmi(2, 100, 5, 1000)
    assert new_york > the_city
    with make_pipeline(beam_options) as pipeline:
        counts = {"unigrams": pipeline | "U" >> beam.Create([("new", 10), ("york", 8), ("the", 100), ("city", 5),
                                                             ("rare", 1)]),
                  "bigrams": pipeline | "B" >> beam.Create([("new york", 6), ("the city", 2), ("rare city", 3)]),
                  "tokens": pipeline | "T" >> beam.Create([("tokens", 1000)])}
        scored = counts | ScoreBigrams(min_count=2, budget=1)
        # "rare city": "rare" is under the word threshold, so the bigram is never scored
        assert_that(scored["scored"], equal_to([("new york", 6, new_york), ("the city", 2, the_city)]), label="all")
        assert_that(scored["top"], equal_to([("new york", 6, new_york)]), label="top")


def test_popular_titles_keeps_viewed_articles_of_the_dump(beam_options, tmp_path):
    lines = ["en Red_car 50 0", "en.m Red_car 30 0", "en Missing_page 500 0", "en Blue_sky 10 0",
             "de Rotes_Auto 900 0", "en Talk:Red_car 99 0", "broken line"]
    path = tmp_path / "pageviews-1.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    with make_pipeline(beam_options) as pipeline:
        popular = ({"paths": pipeline | "P" >> beam.Create([str(path)]),
                    "articles": pipeline | "A" >> beam.Create([("Red car", None), ("Blue sky", None)])}
                   | PopularTitles(min_views=60))
        assert_that(popular["titles"], equal_to([("Red car", ("title", "Red car", 80))]), label="titles")
        totals = popular["stats"] | beam.CombinePerKey(sum)
        assert_that(totals, equal_to([("pageview_lines_ok", 4), ("pageview_lines_other_domain", 1),
                                      ("pageview_lines_namespaced", 1), ("pageview_lines_malformed", 1),
                                      ("titles_dropped_not_in_dump", 1)]), label="stats")


def test_assemble_entries_joins_the_four_parts_on_the_key(beam_options):
    def row(entry):
        return (entry.key, entry.entry, tuple(entry.sources), entry.unigram_count, entry.bigram_count, entry.pmi,
                entry.title_views)

    with make_pipeline(beam_options) as pipeline:
        parts = {"lemmas": pipeline | "L" >> beam.Create(["cat", "  "]),
                 "unigrams": pipeline | "U" >> beam.Create([("cat", 5), ("dog", 1), ("red", 9)]),
                 "bigrams": pipeline | "B" >> beam.Create([("red car", 4)]),
                 "top_bigrams": pipeline | "T" >> beam.Create([("red car", 4, 1.5)]),
                 "titles": pipeline | "V" >> beam.Create([("red car", ("title", "Red car", 70))])}
        entries = parts | AssembleEntries(min_count=2) | beam.Map(row)
        # "dog" is under min_count and no other part names it; "red" is a frequent unigram
        assert_that(entries, equal_to([("cat", "cat", ("wordnet", "unigram"), 5, None, None, None),
                                       ("red", "red", ("unigram",), 9, None, None, None),
                                       ("red car", "red car", ("bigram", "title"), None, 4, 1.5, 70)]))
