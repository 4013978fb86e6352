"""Build CLIP's query list from a Wikipedia dump, page views and WordNet (a Beam job).

The list joins four parts (see ``docs/query_list.md``): words seen at least ``--min-count``
times, the bigrams with the highest PMI among those seen ``--bigram-min-count`` times (at most
``--bigram-budget``), titles with at least ``--title-min-views`` views (desktop and mobile
together) that are articles of the dump (no redirect, disambiguation or missing page: those are
counted in ``titles_dropped_not_in_dump``), and every WordNet synset's head lemma; ``--target-size`` caps the total. Outputs under ``--out``:
``metadata.json`` (the list; index = entry id), ``entries.parquet`` and ``query_stats.json``.
When no source gives an entry the job fails with the counts (``query_stats.json`` only).

Local (Beam's Python FnApiRunner; the real sample dump, small thresholds):

    wit queries --wiki '../shared/data/wiki/xml/*.bz2' --out out/queries \\
        --min-count 20 --bigram-min-count 5 --bigram-budget 2000 --target-size 50000

    python -m query_list.build --wiki dump.xml.bz2 --pageviews 'pageviews-*.gz' --out out/q \\
        --direct_num_workers 2 --direct_running_mode multi_processing

Dataflow (the full English dump, split on its multistream index):

    python -m query_list.build \\
        --wiki 'gs://BUCKET/enwiki/enwiki-*-pages-articles-multistream*.xml*.bz2' \\
        --pageviews 'gs://BUCKET/pageviews/2024/2024-*/pageviews-*.gz' --out gs://BUCKET/queries \\
        --runner DataflowRunner --project PROJECT --region us-central1 \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py \\
        --machine_type n2-standard-4 --max_num_workers 64
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import apache_beam as beam

from query_list import assemble, pageviews, sources, wikitext
from query_list.assemble import Entry
from query_list.tokens import is_word, normalize, segments, tokenize
from query_list.wordnet import find_wordnet_dir, iter_head_lemmas
from core import config as config_flags
from core.beam import MergeCounts, run_job, windowed
from core.config import option
from core.storage import expand_globs

log = logging.getLogger(__name__)

FLUSH_KEYS = 1_000_000  # a bundle's local counters are emitted early past this many keys


@dataclass
class QueryListConfig:
    wiki: list[str] = option(metavar="PATH_OR_GLOB", gcs=True, label="Wikipedia dump(s)",
                             help="MediaWiki XML dump (plain, .bz2, multistream) or WikiExtractor output; repeatable")
    out: str = option(metavar="DIR", gcs=True, label="Output folder", help="output folder (local or gs://)")
    pageviews: list[str] = option(default_factory=list, metavar="GLOB", gcs=True, label="Page-view files",
                                  help="Wikimedia hourly page-view files; repeatable")
    # None: search the usual places (wit doctor shows which)
    wordnet: str | None = option(None, metavar="DIR", help="WordNet 3.0 database folder")
    use_wordnet: bool = option(True, flag="--no-wordnet", help="leave WordNet out (the report says so)")
    min_count: int = option(100, help="unigram minimum count")
    bigram_min_count: int = option(100, help="bigram minimum count before PMI ranking")
    bigram_budget: int = option(100_000, help="at most this many bigrams, by PMI")
    title_min_views: int = option(70, help="minimum summed views of a title")
    target_size: int = option(500_000, help="cap on the list size")
    skip_bad_input: bool = option(False, help="record unreadable files/pages in the stats instead of failing")
    # hash shards of the counters (parallelism of the merge)
    count_shards: int = option(256, help="hash shards of the count merge (raise for the full dump: smaller "
                                         "accumulators)")

    def __post_init__(self) -> None:
        if not self.wiki:
            raise ValueError("at least one --wiki input is required")
        for name in ("min_count", "bigram_min_count", "title_min_views"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.bigram_budget < 0 or self.target_size < 1 or self.count_shards < 1:
            raise ValueError("--bigram-budget must be >= 0, --target-size and --count-shards >= 1")

    def thresholds(self) -> dict:
        return {"min_count": self.min_count, "bigram_min_count": self.bigram_min_count,
                "bigram_budget": self.bigram_budget, "title_min_views": self.title_min_views,
                "target_size": self.target_size}


def add_arguments(parser) -> None:
    config_flags.add_arguments(parser, QueryListConfig)


# -- DoFns (thin wrappers around the pure functions) -------------------------------------------
class ReadPagesFn(beam.DoFn):
    """Work item -> prose of each article; skipped pages and bad inputs go to ``stats``/``bad``."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad

    def process(self, item: sources.WorkItem):
        for record in sources.read(item, skip_bad=self.skip_bad):
            if isinstance(record, sources.BadInput):
                yield beam.pvalue.TaggedOutput("stats", ("bad_inputs", 1))
                yield beam.pvalue.TaggedOutput("bad", {"path": record.path, "offset": record.offset,
                                                       "reason": record.reason})
                continue
            yield beam.pvalue.TaggedOutput("stats", ("pages_seen", 1))
            reason = wikitext.skip_reason(record)
            if reason is not None:
                yield beam.pvalue.TaggedOutput("stats", (f"pages_skipped_{reason}", 1))
                continue
            text = record.text if record.plain else wikitext.wikitext_to_prose(record.text)
            yield beam.pvalue.TaggedOutput("stats", ("documents_read", 1))
            if record.title:  # an article of the dump: a title from page views must be one
                yield beam.pvalue.TaggedOutput("articles", (pageviews.canonical_title(record.title), None))
            yield text


def count_ngrams(texts: Iterable[str], unigrams: Counter, bigrams: Counter) -> int:
    """Add the word unigrams and in-segment bigrams of ``texts``; return the tokens counted."""
    tokens = 0
    for text in texts:
        for run in segments(text):
            tokens += len(run)
            unigrams.update(run)
            if len(run) > 1:
                bigrams.update(zip(run, run[1:]))
    return tokens


TOKENS_KEY = "\x00tokens"  # the running token total travels with the counts


def shard_of(key: str, shards: int) -> int:
    """A stable shard for a key (Python's own str hash differs between processes)."""
    return zlib.crc32(key.encode("utf-8")) % shards


class CountNgramsFn(beam.DoFn):
    """Counts a whole bundle in local Counters and emits them as a few large dictionaries,
    one per hash shard of the keys. Beam's cost is per element: one element per distinct token
    would cost more than the counting itself; one per shard costs nothing. Keys are strings:
    a unigram is a token, a bigram is its two tokens joined by a space (tokens hold none)."""

    def __init__(self, shards: int = 256) -> None:
        self.shards = shards

    def start_bundle(self) -> None:
        self.unigrams: Counter = Counter()
        self.bigrams: Counter = Counter()
        self.tokens = 0

    def _drain(self):
        buckets: list[dict] = [{} for _ in range(self.shards)]
        for token, count in self.unigrams.items():
            buckets[shard_of(token, self.shards)][token] = count
        for (left, right), count in self.bigrams.items():
            key = f"{left} {right}"
            buckets[shard_of(key, self.shards)][key] = count
        buckets[0][TOKENS_KEY] = buckets[0].get(TOKENS_KEY, 0) + self.tokens
        self.unigrams, self.bigrams, self.tokens = Counter(), Counter(), 0
        return [(shard, bucket) for shard, bucket in enumerate(buckets) if bucket]

    def process(self, text: str):
        self.tokens += count_ngrams((text,), self.unigrams, self.bigrams)
        if len(self.unigrams) + len(self.bigrams) > FLUSH_KEYS:
            yield from self._drain()

    def finish_bundle(self):
        for element in self._drain():
            yield windowed(element)


def expand_counts(shard_counts, bigram_min_count: int):
    """(shard, counts) -> (key, count) for every unigram, and for bigrams over the threshold:
    rarer bigrams can neither enter the list nor annotate an entry, so they stop here."""
    _, counts = shard_counts
    for key, count in counts.items():
        if " " not in key or count >= bigram_min_count:
            yield key, count


def read_pageview_file(path: str):
    """(title, views) for each usable line; ``("\\x00stat", reason)`` markers for the others."""
    import fsspec

    with fsspec.open(path, "rb", compression="infer") as handle:
        for raw in handle:
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield beam.pvalue.TaggedOutput("stats", ("pageview_lines_malformed", 1))
                continue
            status, parsed = pageviews.parse_line(line)
            yield beam.pvalue.TaggedOutput("stats", (f"pageview_lines_{status}", 1))
            if parsed is not None:
                yield parsed


class CountStage(beam.PTransform):
    """Prose -> (key, count): every unigram, bigrams with at least ``bigram_min_count``, and
    the token total under :data:`TOKENS_KEY`."""

    def __init__(self, shards: int, bigram_min_count: int) -> None:
        super().__init__()
        self.shards = shards
        self.bigram_min_count = bigram_min_count

    def expand(self, texts):
        return (texts
                | "CountBundles" >> beam.ParDo(CountNgramsFn(self.shards))
                | "MergeShards" >> beam.CombinePerKey(MergeCounts())
                | "ExpandCounts" >> beam.FlatMap(expand_counts, self.bigram_min_count))


def pmi(count: int, left: int, right: int, total: int) -> float:
    """Pointwise mutual information of a bigram, natural log: log(c12 * N / (c1 * c2))."""
    return math.log(count * total / (left * right))


def join_left(element):
    """(w1, {bigrams: [(w1, w2, c)], unigrams: [c1]}) -> (w2, (w1, w2, c, c1))."""
    _, grouped = element
    counts = grouped["unigrams"]
    for w1, w2, count in grouped["bigrams"]:
        if counts:
            yield w2, (w1, w2, count, counts[0])


def join_right(element, total: int):
    _, grouped = element
    counts = grouped["unigrams"]
    for w1, w2, count, left in grouped["bigrams"]:
        if counts:
            yield f"{w1} {w2}", count, pmi(count, left, counts[0], total)


def article_views(element, min_views: int):
    """(canonical title, {views: [(title, views)], articles: [...]}) -> (title, total views) when
    the total reaches ``min_views`` and the dump holds the title as an article (not a redirect,
    a disambiguation page or a missing page); such titles it lacks are counted, not kept."""
    title, grouped = element
    total = sum(views for _, views in grouped["views"])
    if total < min_views:
        return
    if grouped["articles"]:
        yield title, total
    else:
        yield beam.pvalue.TaggedOutput("stats", ("titles_dropped_not_in_dump", 1))


def best_title(element):
    """Several titles can share a normalised key; views add up, the most viewed spelling wins."""
    key, titles = element
    titles = sorted(titles, key=lambda tv: (-tv[1], tv[0]))
    return key, ("title", titles[0][0], sum(views for _, views in titles))


def make_entry(element) -> Entry | None:
    key, grouped = element
    candidates = grouped["candidates"]
    if not candidates:
        return None
    entry = Entry(key=key, entry="")
    surfaces = []
    for candidate in candidates:
        kind = candidate[0]
        if kind not in entry.sources:
            entry.sources.append(kind)
        surfaces.append((assemble.PART_ORDER.index(kind), candidate[1]))
        if kind == "bigram":
            entry.pmi = candidate[3]
        elif kind == "title":
            entry.title_views = candidate[2]
    entry.sources.sort(key=assemble.PART_ORDER.index)
    entry.entry = min(surfaces)[1]
    if grouped["unigrams"]:
        entry.unigram_count = grouped["unigrams"][0]
    if grouped["bigrams"]:
        entry.bigram_count = grouped["bigrams"][0]
    return entry


class EmptyQueryList(RuntimeError):
    """No source gave an entry (an empty dump, a wrong path, thresholds above every count)."""


def finish(entries: list[Entry], stats: dict, bad: list[dict], config: QueryListConfig, wordnet_info: dict) -> dict:
    kept, summary = assemble.order_and_cap(entries, config.target_size)
    counters = dict(sorted(stats.items()))
    report = {
        "inputs": {"wiki": config.wiki, "pageviews": config.pageviews, **wordnet_info},
        "documents_read": counters.pop("documents_read", 0),
        "tokens_read": counters.pop("tokens", 0),
        "pages_seen": counters.pop("pages_seen", 0),
        "pages_skipped": {k.removeprefix("pages_skipped_"): counters.pop(k) for k in list(counters)
                          if k.startswith("pages_skipped_")},
        "pageview_lines": {k.removeprefix("pageview_lines_"): counters.pop(k) for k in list(counters)
                           if k.startswith("pageview_lines_")},
        "bad_inputs": sorted(bad, key=lambda b: (b["path"], b["offset"])),
        "bigrams_scored": counters.pop("bigrams_scored", 0),
        "titles_over_threshold": counters.pop("titles_over_threshold", 0),
        "titles_dropped_not_in_dump": counters.pop("titles_dropped_not_in_dump", 0),
        "thresholds": config.thresholds(),
        **summary,
        "other_counters": counters,
    }
    if not kept:
        assemble.write_stats(config.out, report)  # the counts, to see why; no empty list for later stages
        raise EmptyQueryList(
            f"the query list is empty: {report['documents_read']} documents and {report['tokens_read']} tokens read, "
            f"{report['pages_seen']} pages seen, skipped {report['pages_skipped']}, bad inputs "
            f"{len(report['bad_inputs'])}, WordNet {report['inputs'].get('wordnet')}, thresholds "
            f"{report['thresholds']}; see query_stats.json")
    if not summary["filled"]:
        log.warning("the sources gave %d entries, short of --target-size %d by %d",
                    summary["size"], config.target_size, summary["shortfall"])
    assemble.write_outputs(config.out, kept, report)
    return report


def load_wordnet(config: QueryListConfig) -> tuple[list[str], dict]:
    if not config.use_wordnet:
        return [], {"wordnet": None}
    folder = find_wordnet_dir(config.wordnet)
    lemmas = sorted(set(iter_head_lemmas(folder)))
    return lemmas, {"wordnet": str(folder)}


# -- the job's composite transforms ----------------------------------------------------------------
class ReadPages(beam.PTransform):
    """Dump files -> article prose, with the side outputs of reading them.

    PCollection[path] -> {texts: PCollection[str], stats: PCollection[(name, n)],
    bad: PCollection[dict], articles: PCollection[(canonical title, None)]}"""

    def __init__(self, skip_bad: bool) -> None:
        super().__init__()
        self.skip_bad = skip_bad

    def expand(self, paths):
        read = (paths
                | "PlanWork" >> beam.FlatMap(sources.plan)
                | "SpreadWork" >> beam.Reshuffle()
                | "ReadPages" >> beam.ParDo(ReadPagesFn(self.skip_bad)).with_outputs("stats", "bad", "articles",
                                                                                   main="texts"))
        return {"texts": read.texts, "stats": read.stats, "bad": read.bad, "articles": read.articles}


def is_unigram(kv) -> bool:
    return " " not in kv[0] and kv[0] != TOKENS_KEY


def is_bigram(kv) -> bool:
    return " " in kv[0]


class SplitCounts(beam.PTransform):
    """The merged counts by kind.

    PCollection[(key, count)] -> {tokens: PCollection[("tokens", n)], unigrams:
    PCollection[(word, count)], bigrams: PCollection[("w1 w2", count)]}"""

    def expand(self, totals):
        return {"tokens": (totals
                           | "TokenTotal" >> beam.Filter(lambda kv: kv[0] == TOKENS_KEY)
                           | "TokenStat" >> beam.Map(lambda kv: ("tokens", kv[1]))),
                "unigrams": totals | "Unigrams" >> beam.Filter(is_unigram),
                "bigrams": totals | "BigramCounts" >> beam.Filter(is_bigram)}


class ScoreBigrams(beam.PTransform):
    """PMI of every frequent bigram, and the ``budget`` best. PMI needs both words' counts: two
    joins on the word (no side-input dictionary of the vocabulary).

    {unigrams: PCollection[(word, count)], bigrams: PCollection[("w1 w2", count)], tokens:
    PCollection[("tokens", n)]} -> {scored: PCollection[("w1 w2", count, pmi)], top: the same,
    at most ``budget``, highest PMI first}"""

    def __init__(self, min_count: int, budget: int) -> None:
        super().__init__()
        self.min_count, self.budget = min_count, budget

    def expand(self, counts):
        total = beam.pvalue.AsSingleton(counts["tokens"] | "TotalValue" >> beam.Map(lambda kv: kv[1]),
                                        default_value=0)
        words = counts["unigrams"] | "BigramWordCounts" >> beam.Filter(lambda kv, m: kv[1] >= m, self.min_count)
        by_left = (counts["bigrams"]
                   | "SplitBigrams" >> beam.Map(lambda kv: (tuple(kv[0].split(" ")), kv[1]))
                   | "KeyByLeft" >> beam.Map(lambda kv: (kv[0][0], (kv[0][0], kv[0][1], kv[1]))))
        by_right = ({"bigrams": by_left, "unigrams": words}
                    | "JoinLeft" >> beam.CoGroupByKey() | "AttachLeft" >> beam.FlatMap(join_left))
        scored = ({"bigrams": by_right, "unigrams": words}
                  | "JoinRight" >> beam.CoGroupByKey() | "AttachRight" >> beam.FlatMap(join_right, total))
        top = (scored
               | "TopByPmi" >> beam.combiners.Top.Of(self.budget, key=lambda b: (b[2], b[1], b[0]))
               | "FlattenTop" >> beam.FlatMap(lambda top: top))
        return {"scored": scored, "top": top}


def has_word(title_views) -> bool:
    return any(is_word(t) for t in tokenize(title_views[0]))


class PopularTitles(beam.PTransform):
    """Titles with at least ``min_views`` views that are articles of the dump, one spelling per
    normalised key.

    {paths: PCollection[page-view file], articles: PCollection[(canonical title, None)]} ->
    {titles: PCollection[(key, ("title", title, views))], stats: PCollection[(name, n)]}"""

    def __init__(self, min_views: int) -> None:
        super().__init__()
        self.min_views = min_views

    def expand(self, inputs):
        views = (inputs["paths"]
                 | "SpreadPageviewFiles" >> beam.Reshuffle()
                 | "ReadPageviews" >> beam.FlatMap(read_pageview_file).with_outputs("stats", main="views"))
        by_title = (views.views
                    | "SumViews" >> beam.CombinePerKey(sum)
                    | "CanonicalTitle" >> beam.Map(lambda tv: (pageviews.canonical_title(tv[0]), tv)))
        joined = ({"views": by_title, "articles": inputs["articles"]}
                  | "JoinArticles" >> beam.CoGroupByKey()
                  | "ArticleViews" >> beam.FlatMap(article_views, self.min_views).with_outputs("stats", main="titles"))
        titles = (joined.titles
                  | "PopularTitles" >> beam.Filter(has_word)
                  | "KeyTitle" >> beam.Map(lambda tv: (normalize(tv[0]), tv))
                  | "GroupTitle" >> beam.GroupByKey()
                  | "BestTitle" >> beam.Map(best_title))
        stats = (views.stats, joined.stats) | "TitleStats" >> beam.Flatten()
        return {"titles": titles, "stats": stats}


class AssembleEntries(beam.PTransform):
    """The four parts joined on the normalised key into entries (counts attached).

    {lemmas: PCollection[str], unigrams: PCollection[(word, count)], bigrams:
    PCollection[("w1 w2", count)], top_bigrams: PCollection[("w1 w2", count, pmi)], titles:
    PCollection[(key, ("title", title, views))]} -> PCollection[Entry]"""

    def __init__(self, min_count: int) -> None:
        super().__init__()
        self.min_count = min_count

    def expand(self, parts):
        candidates = (
            (parts["lemmas"]
             | "KeyLemma" >> beam.Map(lambda lemma: (normalize(lemma), ("wordnet", lemma)))
             | "DropEmptyLemma" >> beam.Filter(lambda kv: kv[0] != "")),
            (parts["unigrams"] | "FrequentUnigrams" >> beam.Filter(lambda kv, m: kv[1] >= m, self.min_count)
             | "UnigramCandidate" >> beam.Map(lambda kv: (kv[0], ("unigram", kv[0], kv[1])))),
            (parts["top_bigrams"] | "BigramCandidate" >> beam.Map(lambda b: (b[0], ("bigram", b[0], b[1], b[2])))),
            parts["titles"],
        ) | "AllCandidates" >> beam.Flatten()
        return ({"candidates": candidates, "unigrams": parts["unigrams"], "bigrams": parts["bigrams"]}
                | "JoinParts" >> beam.CoGroupByKey()
                | "MakeEntries" >> beam.Map(make_entry)
                | "DropNonCandidates" >> beam.Filter(lambda e: e is not None))


def count_stat(name: str):
    """PCollection[x] -> PCollection[(name, number of elements)]."""
    return beam.combiners.Count.Globally() | beam.Map(lambda n, name: (name, n), name)


def build_pipeline(pipeline, config: QueryListConfig) -> None:
    """Inputs and outputs only; the work is in the composites above."""
    wiki_paths = expand_globs(config.wiki)
    view_paths = expand_globs(config.pageviews) if config.pageviews else []
    lemmas, wordnet_info = load_wordnet(config)

    pages = pipeline | "ListWikiFiles" >> beam.Create(wiki_paths) | "Read" >> ReadPages(config.skip_bad_input)
    counts = (pages["texts"]
              | "CountNgrams" >> CountStage(config.count_shards, config.bigram_min_count)
              | "SplitCounts" >> SplitCounts())
    bigrams = counts | "ScoreBigrams" >> ScoreBigrams(config.bigram_min_count, config.bigram_budget)
    title_stats = []
    titles = pipeline | "NoTitles" >> beam.Create([])
    if view_paths:
        popular = ({"paths": pipeline | "ListPageviewFiles" >> beam.Create(view_paths), "articles": pages["articles"]}
                   | "Titles" >> PopularTitles(config.title_min_views))
        titles, title_stats = popular["titles"], [popular["stats"]]
    entries = ({"lemmas": pipeline | "WordNetLemmas" >> beam.Create(lemmas), "unigrams": counts["unigrams"],
                "bigrams": counts["bigrams"], "top_bigrams": bigrams["top"], "titles": titles}
               | "Entries" >> AssembleEntries(config.min_count))
    stats = ((pages["stats"], counts["tokens"], *title_stats,
              bigrams["scored"] | "CountScored" >> count_stat("bigrams_scored"),
              titles | "CountTitles" >> count_stat("titles_over_threshold"))
             | "AllStats" >> beam.Flatten() | "SumStats" >> beam.CombinePerKey(sum))
    bad = pages["bad"] | "CollectBad" >> beam.combiners.ToList()
    (entries
     | "CollectEntries" >> beam.combiners.ToList()
     | "Write" >> beam.Map(finish, beam.pvalue.AsDict(stats), beam.pvalue.AsSingleton(bad), config, wordnet_info))


def run(argv: Sequence[str] | None = None) -> int:
    config = run_job(argv, prog="wit queries", doc=__doc__, config=QueryListConfig, build_pipeline=build_pipeline)
    log.info("wrote %s/metadata.json", config.out.rstrip("/"))
    return 0


if __name__ == "__main__":
    from core.beam import job_main

    job_main("query_list.build")
