"""Curate candidate (image url, alt-text) pairs: extract, clean, merge, match, count, balance.

Outputs under ``--out``: ``urls/part-NNNNN.parquet`` (``url``, ``caption``, ``uid``,
``entry_ids``, ``keep_prob``, ``source``, ``page_url``: img2dataset reads them as they are),
``entry_counts.parquet`` (entry_id, entry, matched, kept: kept pairs containing the entry,
selected: those it selected itself, at most t under ``--cap strict``), ``rejects/part-NNNNN.parquet`` (every
dropped row with its reason), ``curation_report.json`` and ``balance.png``. A run that keeps
nothing, or under ``--min-kept-ratio`` of the candidates it read, fails with the counts after
writing the report. See ``docs/curation.md``.

Local (Beam's Python FnApiRunner):

    wit curate --pool '../shared/data/captions/cc3m/*.tsv' --queries out/queries/metadata.json \\
        --out out/curated --max-per-query 200
    python -m pipeline.curate --pool 'pool/*.parquet' --url-col URL --caption-col TEXT \\
        --queries out/queries/metadata.json --out out/curated --direct_num_workers 2

Dataflow (Common Crawl WAT files):

    python -m pipeline.curate --pool 'gs://BUCKET/cc/CC-MAIN-2024-22/wat/*.wat.gz' \\
        --queries gs://BUCKET/queries/metadata.json --out gs://BUCKET/curated \\
        --runner DataflowRunner --project PROJECT --region us-central1 \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py \\
        --machine_type n2-standard-4 --max_num_workers 200

Re-balance after the crawl (failed downloads and dedup removals leave entries under ``t``):

    wit curate --rebalance --pool 'out/shards/*.parquet' --queries out/queries/metadata.json \\
        --out out/rebalanced --max-per-query 20000
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Sequence

import apache_beam as beam

from pipeline import balance, candidates, report
from pipeline.captions import NOT_TEXT, NOT_UTF8, caption_text
from pipeline.clean import MAX_CAPTION_CHARS_LIMIT, CleanConfig, clean_caption, clean_url, uid_of
from pipeline.match import EntryTally, Matcher, load_entries, spaced_form
from core import config as config_flags
from core.beam import MergeCounts, run_job, windowed
from core.config import group, opt, option
from core.storage import expand_globs, join, write_parquet_atomic

log = logging.getLogger(__name__)


@dataclass
class CurateConfig:
    pool: list[str] = option(metavar="GLOB", gcs=True, label="Candidate pool", help="candidate inputs; repeatable")
    queries: str = option(metavar="PATH", gcs=True, label="Query list", help="metadata.json from `wit queries`")
    out: str = option(metavar="DIR", gcs=True, label="Output folder", help="output folder (local or gs://)")
    reader: candidates.ReaderConfig = group(
        candidates.ReaderConfig,
        pool_format=opt(choices=("auto",) + candidates.FORMATS, help="format of the pool files (auto: by name)"),
        url_col=opt("url column of url-list files; a name other than the default must be in every file"),
        caption_col=opt("caption column of url-list files; a name other than the default must be in every file"))
    clean: CleanConfig = group(
        CleanConfig,
        english_only=opt("drop captions py3langid does not call English"),
        max_caption_chars=opt(f"longer captions are dropped (caption_too_long); at most {MAX_CAPTION_CHARS_LIMIT:,}"))
    max_per_query: int = option(20_000, help="t: at most this many pairs per entry")
    cap: str = option("strict", choices=balance.CAPS,
                      help="strict: an entry matching more than t pairs selects exactly the t with the smallest "
                           "seeded draw (two passes); expected: MetaCLIP's draw, t selected on average; either "
                           "way a pair is kept when one of its entries selects it")
    oversample: float = option(1.0, help="keep t x this, for a re-balance after the crawl")
    seed: int = option(0, help="seed of the balancing draw")
    url_shards: int = option(16, help="number of urls/part-*.parquet files")
    rebalance: bool = option(False, help="--pool is crawl/curation parquet with entry_ids: re-count and "
                                         "re-balance only")
    min_kept_ratio: float = option(0.001, help="fail, with the counts, when kept pairs / candidates read fall below "
                                               "this, and whenever nothing is kept (default 0.001: under 1 in 1,000 is "
                                               "a wrong column or a broken pool, not curation); 0 turns the check off")
    batch_size: int = 512  # pairs per element between merging and balancing (not a flag)

    @property
    def target(self) -> float:
        return self.max_per_query * self.oversample

    @property
    def quota(self) -> int:
        """The strict cap: the most pairs one entry selects (t, times --oversample)."""
        return int(self.target)

    def __post_init__(self) -> None:
        if self.max_per_query < 1 or self.oversample < 1.0 or self.url_shards < 1:
            raise ValueError("--max-per-query and --url-shards must be >= 1, --oversample >= 1.0")
        if self.cap not in balance.CAPS:
            raise ValueError(f"--cap must be one of {', '.join(balance.CAPS)}")
        if not 0.0 <= self.min_kept_ratio <= 1.0:
            raise ValueError("--min-kept-ratio must be between 0 and 1")


def add_arguments(parser) -> None:
    config_flags.add_arguments(parser, CurateConfig)


def stat(name: str, count: int = 1):
    return beam.pvalue.TaggedOutput("stats", (name, count))


# -- DoFns ---------------------------------------------------------------------------------------
class ReadCleanFn(beam.DoFn):
    """File -> cleaned pairs; bad records and cleaning drops go to ``rejects`` with a reason."""

    def __init__(self, reader: candidates.ReaderConfig, clean: CleanConfig) -> None:
        self.reader, self.clean = reader, clean

    def process(self, path: str):
        counts: Counter = Counter()  # per file: one stats element per counter, not per row
        for raw in candidates.read(path, self.reader):
            if isinstance(raw, candidates.Bad):
                counts["bad_input"] += 1
                yield beam.pvalue.TaggedOutput("rejects", {"reason": raw.reason, "source": raw.source, "url": None,
                                                           "caption": None, "detail": raw.detail})
                continue
            counts["candidates_read"] += 1
            if raw.caption_issue:  # made text where it was read: kept, and counted
                counts[raw.caption_issue] += 1
            url, reason = clean_url(raw.url)
            caption = None
            if reason is None:
                caption, reason = clean_caption(raw.caption, self.clean)
            if reason is not None:
                counts[f"dropped_{reason}"] += 1
                yield beam.pvalue.TaggedOutput("rejects", {
                    "reason": reason, "source": raw.source, "url": candidates.url_value(raw.url),
                    "caption": raw.caption, "detail": ""})
                continue
            yield (uid_of(url), caption), {"url": url, "source": raw.source, "page_url": raw.page_url,
                                           "spaced": spaced_form(caption)}
        for name, count in counts.items():
            yield stat(name, count)


class FirstOccurrence(beam.CombineFn):
    """Merge exact (url, caption) duplicates: keep the record with the smallest source, count the rest."""

    def create_accumulator(self):
        return (0, None)

    def add_input(self, accumulator, record):
        count, best = accumulator
        if best is None or (record["source"], record["page_url"] or "") < (best["source"], best["page_url"] or ""):
            best = record
        return count + 1, best

    def merge_accumulators(self, accumulators):
        count, best = 0, None
        for other_count, other in accumulators:
            count += other_count
            if other is not None:
                _, best = self.add_input((0, best), other)
        return count, best

    def extract_output(self, accumulator):
        return accumulator


class BatchPairsFn(beam.DoFn):
    """Merged (uid, caption) groups -> lists of up to ``batch_size`` pairs. Matching and
    balancing then pay Beam's per-element cost once per batch, not once per pair."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def start_bundle(self) -> None:
        self.batch: list[dict] = []
        self.counts: Counter = Counter()

    def process(self, element):
        (uid, caption), (count, record) = element
        self.counts["duplicates_merged"] += count - 1
        self.counts["pairs_unique"] += 1
        self.batch.append({"uid": uid, "url": record["url"], "caption": caption, "source": record["source"],
                           "page_url": record["page_url"], "spaced": record["spaced"]})
        if len(self.batch) >= self.batch_size:
            yield self.batch
            self.batch = []

    def finish_bundle(self):
        if self.batch:
            yield windowed(self.batch)
        for name, count in self.counts.items():
            yield beam.pvalue.TaggedOutput("stats", windowed((name, count)))


class MatchFn(beam.DoFn):
    """A batch of pairs -> the matched ones, with ``entry_ids``. The automaton is built once per
    worker, in setup(); counting is the ``CountEntries`` combiner's, downstream."""

    def __init__(self, queries: str) -> None:
        self.queries = queries
        self.matcher: Matcher | None = None

    def setup(self) -> None:
        self.matcher = self.build_matcher()
        # CPU time spent matching, as Beam metrics: the stage's own rate, apart from the runner.
        self.busy_us = beam.metrics.Metrics.counter("wit.curate", "match_busy_us")
        self.scanned = beam.metrics.Metrics.counter("wit.curate", "match_captions")

    def build_matcher(self) -> Matcher:
        return Matcher(load_entries(self.queries))

    def start_bundle(self) -> None:
        self.matched = self.unmatched = 0

    def process(self, batch: list[dict]):
        started = time.thread_time()
        found = self.matcher.match_many([pair["spaced"] for pair in batch])
        matched = []
        for pair, entry_ids in zip(batch, found):
            if entry_ids:
                # In place: the batch is this DoFn's own (decoded after the Reshuffle, one consumer);
                # "spaced" rides along to the balancing step, which drops it and sorts entry_ids.
                pair["entry_ids"] = entry_ids
                matched.append(pair)
        self.busy_us.inc(int((time.thread_time() - started) * 1e6))
        self.scanned.inc(len(batch))
        self.matched += len(matched)
        self.unmatched += len(batch) - len(matched)
        if matched:
            yield matched

    def finish_bundle(self):
        yield beam.pvalue.TaggedOutput("stats", windowed(("pairs_matched", self.matched)))
        yield beam.pvalue.TaggedOutput("stats", windowed(("pairs_unmatched", self.unmatched)))


class CountEntries(beam.CombineFn):
    """Batches of matched pairs -> {entry_id: pairs matching it} (an ``EntryTally`` per bundle)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def create_accumulator(self) -> EntryTally:
        return EntryTally(self.size)

    def add_input(self, tally: EntryTally, batch: list[dict]) -> EntryTally:
        tally.add_batch(batch)
        return tally

    def merge_accumulators(self, tallies) -> EntryTally:
        tallies = iter(tallies)
        merged = next(tallies)
        for other in tallies:
            merged.merge(other)
        return merged

    def extract_output(self, tally: EntryTally) -> dict[int, int]:
        return tally.as_dict()


def read_matched(path: str, size: int):
    """Re-balance input: parquet rows that already carry entry_ids (crawl status rows too);
    ``size``: the query list's length (ids beyond it mean another list made these rows)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        table = pq.read_table(handle)
    names = table.column_names
    for missing in ("uid", "url", "caption", "entry_ids"):
        if missing not in names:
            raise ValueError(f"{path}: --rebalance needs the column {missing!r} (has {names})")
    batch, used = [], 0
    for row in table.to_pylist():
        if "status" in names and row["status"] != "success":
            continue
        used += 1
        entry_ids = sorted(int(e) for e in row["entry_ids"])
        if entry_ids and not (0 <= entry_ids[0] and entry_ids[-1] < size):
            raise ValueError(f"{path}: uid {row['uid']} has entry ids {entry_ids} outside the query list "
                             f"(0..{size - 1}): was it curated with another list?")
        batch.append({"uid": row["uid"], "url": row["url"], "caption": row["caption"],
                      "source": row.get("source") or path, "page_url": row.get("page_url"), "entry_ids": entry_ids})
        if len(batch) >= REBALANCE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
    for name in ("candidates_read", "pairs_unique", "pairs_matched"):
        yield stat(name, used)
    yield stat("dropped_not_success", table.num_rows - used)


TALLIES = ("selected_strict", "selected_expected", "kept_strict", "kept_expected")


class BalanceFn(beam.DoFn):
    """A batch of matched pairs -> (url shard, kept pair) under ``cap``. Both caps are decided for
    every pair (one draw per entry serves both), so the report compares them from one run: per
    bundle, pairs selected by each entry and pairs kept containing it, per cap (``tallies``)."""

    def __init__(self, target: float, seed: int, shards: int, cap: str = "strict") -> None:
        self.target, self.seed, self.shards, self.cap = target, seed, shards, cap

    def start_bundle(self) -> None:
        self.tallies = {name: Counter() for name in TALLIES}
        self.pairs = Counter()

    def process(self, batch: list[dict], counts: dict, cutoffs: dict):
        for pair in batch:
            entry_ids = sorted(pair["entry_ids"])  # matching hands over sets; the product needs an order
            chosen = balance.selections(pair["uid"], entry_ids, counts, self.target, self.seed, cutoffs)
            for cap, entries in chosen.items():
                if entries:
                    self.pairs[f"pairs_kept_{cap}"] += 1
                    self.tallies[f"selected_{cap}"].update(entries)
                    self.tallies[f"kept_{cap}"].update(entry_ids)
            if chosen[self.cap]:
                row = {name: pair.get(name) for name in URL_COLUMNS}
                row["entry_ids"] = entry_ids
                row["keep_prob"] = balance.keep_probability(entry_ids, counts, self.target)
                yield shard_key(pair["uid"], self.shards), row

    def finish_bundle(self):
        self.pairs["pairs_kept"] = self.pairs[f"pairs_kept_{self.cap}"]
        for name in ("pairs_kept", "pairs_kept_strict", "pairs_kept_expected"):
            yield beam.pvalue.TaggedOutput("stats", windowed((name, self.pairs[name])))
        for name, counts in self.tallies.items():
            yield beam.pvalue.TaggedOutput("tallies", windowed((name, dict(counts))))


def over_quota(batch: list[dict], counts: dict, quota: int, seed: int):
    """(entry, selection key) for each entry of each pair whose entry matches more than ``quota``."""
    for pair in batch:
        for entry_id in pair["entry_ids"]:
            if counts[entry_id] > quota:
                yield entry_id, balance.selection_key(seed, pair["uid"], entry_id)


class QuotaCutoffs(beam.PTransform):
    """The strict cap's first pass: per entry matching more than ``quota`` pairs, the ``quota``-th
    smallest selection key (a per-key top: at most ``quota`` keys of one entry held together)."""

    def __init__(self, counts, quota: int, seed: int) -> None:
        super().__init__()
        self.counts, self.quota, self.seed = counts, quota, seed

    def expand(self, matched):
        return (matched
                | "KeysOverQuota" >> beam.FlatMap(over_quota, beam.pvalue.AsSingleton(self.counts), self.quota,
                                                  self.seed)
                | "SmallestKeys" >> beam.combiners.Top.SmallestPerKey(self.quota)
                | "Cutoff" >> beam.MapTuple(lambda entry_id, keys: (entry_id, max(keys))))


REBALANCE_BATCH = 512
URL_COLUMNS = ("url", "caption", "uid", "entry_ids", "source", "page_url")


def shard_key(uid: str, shards: int) -> int:
    return zlib.crc32(uid.encode()) % shards



def write_url_shard(element, out: str, shards: int) -> str:
    import pyarrow as pa

    shard, rows = element
    rows = sorted(rows, key=lambda r: r["uid"])
    schema = pa.schema([("url", pa.string()), ("caption", pa.string()), ("uid", pa.string()),
                        ("entry_ids", pa.list_(pa.int32())), ("keep_prob", pa.float64()), ("source", pa.string()),
                        ("page_url", pa.string())])
    table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
    path = join(out, "urls", f"part-{shard:05d}-of-{shards:05d}.parquet")
    write_parquet_atomic(path, table)
    return path


def write_rejects(element, out: str, shards: int) -> str:
    import pyarrow as pa

    shard, rows = element
    names = ("reason", "source", "url", "caption", "detail")
    rows = [{name: None if row.get(name) is None else caption_text(row[name])[0] for name in names} for row in rows]
    rows = sorted(rows, key=lambda r: (r["reason"], r["source"], r["url"] or "", r["caption"] or ""))
    schema = pa.schema([(name, pa.string()) for name in names])
    path = join(out, "rejects", f"part-{shard:05d}-of-{shards:05d}.parquet")
    write_parquet_atomic(path, pa.Table.from_pylist(rows, schema=schema))
    return path


class CurationFailed(RuntimeError):
    """Nothing, or too little, of the pool was kept; the message carries the counts."""


def check_kept(figures: dict, min_ratio: float) -> None:
    """Fail a run that kept nothing, or under ``min_ratio`` of the candidates it read: a wrong
    column, a mistyped option or a broken pool, which would otherwise end with exit status 0
    and no url files. The report is written first, so the counts can be looked at."""
    read, kept = figures["pool_size"], figures["kept_pairs"]
    if min_ratio <= 0 or (kept and kept >= min_ratio * read):
        return
    drops = sorted(figures["dropped"].items(), key=lambda kv: -kv[1])[:5]
    raise CurationFailed(
        f"kept {kept} of {read} candidate pairs read (--min-kept-ratio {min_ratio}): "
        f"bad input records {figures['bad_input_records']}, top drops {dict(drops)}, unique pairs "
        f"{figures['unique_pairs']}, matched {figures['matched_pairs']}; see curation_report.json and rejects/")


def finish(_, stats: dict, matched: dict, tallies: dict, config: CurateConfig) -> dict:
    import pyarrow as pa

    entries = load_entries(config.queries)
    tallies = {name: tallies.get(name, {}) for name in TALLIES}
    kept, selected = tallies[f"kept_{config.cap}"], tallies[f"selected_{config.cap}"]
    table = pa.table({
        "entry_id": pa.array(range(len(entries)), pa.int32()),
        "entry": entries,
        "matched": pa.array([matched.get(i, 0) for i in range(len(entries))], pa.int64()),
        "kept": pa.array([kept.get(i, 0) for i in range(len(entries))], pa.int64()),
        "selected": pa.array([selected.get(i, 0) for i in range(len(entries))], pa.int64()),  # by the entry itself
    })
    write_parquet_atomic(join(config.out, "entry_counts.parquet"), table)
    summary_config = {**asdict(config), "target": config.target}
    figures = report.summarize(stats, matched, kept, entries, config.max_per_query, summary_config, tallies,
                               config.cap, config.target)
    figures["captions_made_text"] = {name: stats[name] for name in (NOT_TEXT, NOT_UTF8) if stats.get(name)}
    report.write_report(config.out, figures, report.balance_plot(matched, tallies, config.quota, config.cap))
    check_kept(figures, config.min_kept_ratio)
    return figures


# -- the job's composite transforms ----------------------------------------------------------------
class ReadCandidates(beam.PTransform):
    """Pool files -> cleaned pairs keyed for merging, with what reading and cleaning dropped.

    PCollection[path] -> {pairs: PCollection[((uid, caption), record)], stats:
    PCollection[(name, n)], rejects: PCollection[reject row]}"""

    def __init__(self, reader: candidates.ReaderConfig, clean: CleanConfig) -> None:
        super().__init__()
        self.reader, self.clean = reader, clean

    def expand(self, paths):
        read = paths | "ReadClean" >> beam.ParDo(ReadCleanFn(self.reader, self.clean)).with_outputs(
            "stats", "rejects", main="pairs")
        return {"pairs": read.pairs, "stats": read.stats, "rejects": read.rejects}


class MergeAndMatch(beam.PTransform):
    """Exact (url, caption) duplicates merged, pairs batched and matched against the query list.

    PCollection[((uid, caption), record)] -> {matched: PCollection[list[matched pair]], stats:
    PCollection[(name, n)]}"""

    def __init__(self, queries: str, batch_size: int) -> None:
        super().__init__()
        self.queries, self.batch_size = queries, batch_size

    def expand(self, pairs):
        batches = (pairs
                   | "MergeDuplicates" >> beam.CombinePerKey(FirstOccurrence())
                   | "BatchPairs" >> beam.ParDo(BatchPairsFn(self.batch_size)).with_outputs("stats", main="batches"))
        matching = (batches.batches
                    | "SpreadBatches" >> beam.Reshuffle()
                    | "Match" >> beam.ParDo(MatchFn(self.queries)).with_outputs("stats", main="pairs"))
        stats = (batches.stats, matching.stats) | "MatchStats" >> beam.Flatten()
        return {"matched": matching.pairs, "stats": stats}


class ReadMatched(beam.PTransform):
    """Re-balance input: crawl or curation parquet that already carries entry_ids.

    PCollection[path] -> {matched: PCollection[list[matched pair]], stats: PCollection[(name, n)]}"""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def expand(self, paths):
        read = paths | "ReadMatched" >> beam.FlatMap(read_matched, self.size).with_outputs("stats", main="pairs")
        return {"matched": read.pairs, "stats": read.stats}


class CountAndBalance(beam.PTransform):
    """Per-entry match counts, the strict cap's cutoffs, and the balancing decision.

    PCollection[list[matched pair]] -> {kept: PCollection[(url shard, kept row)], counts:
    PCollection[{entry_id: matched}] (one element), tallies: PCollection[(tally, {entry_id: n})],
    stats: PCollection[(name, n)]}"""

    def __init__(self, config: CurateConfig, size: int) -> None:
        super().__init__()
        self.config, self.size = config, size

    def expand(self, matched):
        config = self.config
        counts = matched | "CountMatched" >> beam.CombineGlobally(CountEntries(self.size))
        cutoffs = matched | "QuotaCutoffs" >> QuotaCutoffs(counts, config.quota, config.seed)
        decided = matched | "Balance" >> beam.ParDo(
            BalanceFn(config.target, config.seed, config.url_shards, config.cap), beam.pvalue.AsSingleton(counts),
            beam.pvalue.AsDict(cutoffs)).with_outputs("stats", "tallies", main="kept")
        tallies = decided.tallies | "SumTallies" >> beam.CombinePerKey(MergeCounts())
        return {"kept": decided.kept, "counts": counts, "tallies": tallies, "stats": decided.stats}


def reject_shard(row: dict, shards: int) -> tuple[int, dict]:
    return zlib.crc32(repr(sorted(row.items())).encode()) % shards, row


class WriteShards(beam.PTransform):
    """Rows grouped by shard and written, one parquet file per shard.

    PCollection[(shard, row)] -> PCollection[path written]"""

    def __init__(self, write, out: str, shards: int) -> None:
        super().__init__()
        self.write, self.out, self.shards = write, out, shards

    def expand(self, keyed):
        return keyed | "Group" >> beam.GroupByKey() | "Write" >> beam.Map(self.write, self.out, self.shards)


def build_pipeline(pipeline, config: CurateConfig) -> None:
    """Inputs and outputs only; the work is in the composites above."""
    entries = load_entries(config.queries)  # a bad query list fails here, before any work starts
    listed = pipeline | "ListPool" >> beam.Create(expand_globs(config.pool)) | "SpreadFiles" >> beam.Reshuffle()
    if config.rebalance:
        matching = listed | "ReadMatched" >> ReadMatched(len(entries))
        stats_parts = [matching["stats"]]
        rejects = pipeline | "NoRejects" >> beam.Create([])
    else:
        read = listed | "ReadCandidates" >> ReadCandidates(config.reader, config.clean)
        matching = read["pairs"] | "MergeAndMatch" >> MergeAndMatch(config.queries, config.batch_size)
        stats_parts = [read["stats"], matching["stats"]]
        rejects = read["rejects"]
    balanced = matching["matched"] | "CountAndBalance" >> CountAndBalance(config, len(entries))
    balanced["kept"] | "WriteUrls" >> WriteShards(write_url_shard, config.out, config.url_shards)
    reject_shards = max(1, config.url_shards // 4)
    (rejects
     | "KeyRejectShard" >> beam.Map(reject_shard, reject_shards)
     | "WriteRejects" >> WriteShards(write_rejects, config.out, reject_shards))
    stats = ((*stats_parts, balanced["stats"]) | "AllStats" >> beam.Flatten() | "SumStats" >> beam.CombinePerKey(sum))
    (pipeline
     | "Once" >> beam.Create([None])
     | "Report" >> beam.Map(finish, beam.pvalue.AsDict(stats), beam.pvalue.AsSingleton(balanced["counts"]),
                            beam.pvalue.AsDict(balanced["tallies"]), config))


def run(argv: Sequence[str] | None = None) -> int:
    config = run_job(argv, prog="wit curate", doc=__doc__, config=CurateConfig, build_pipeline=build_pipeline)
    log.info("curated pairs written under %s", config.out)
    return 0


if __name__ == "__main__":
    from core.beam import job_main

    job_main("pipeline.curate")
