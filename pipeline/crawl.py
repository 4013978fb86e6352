"""Crawl the images of a url list into webdataset shards (a Beam job), politely and resumably.

Input: ``urls/part-*.parquet`` from ``wit curate`` or any img2dataset-style url list (parquet,
csv, tsv, jsonl with ``url`` and ``caption`` columns). Each input file is cut into shards of
``--shard-size`` rows in file order, so shard numbers derive from the input alone. Each shard is
one work item: its urls are fetched by ``--threads-per-worker`` threads through one
:class:`pipeline.fetch.Fetcher` per worker, decoded and resized by :mod:`pipeline.images` by at
most ``--image-threads`` of them at a time (the CPU work; the rest keep downloading), and
written by :mod:`pipeline.shards` (temporary name, then rename; stats last). Exact duplicates
(same bytes) are dropped within each shard as it is written and then across shards
(:mod:`pipeline.exact_duplicates`). A re-run skips finished shards, so a killed job re-run ends
with the same output. At the end: ``sizes.json``,
``crawl_report.json`` and ``crawl_report.html``, then ``_SUCCESS``; the job fails, with the
counts, when successes over downloaded images fall below ``--min-success-ratio``.

Local:

    wit crawl --urls 'out/curated/urls/*.parquet' --out out/shards --image-size 256 \\
        --threads-per-worker 32

Dataflow:

    python -m pipeline.crawl --urls 'gs://BUCKET/curated/urls/*.parquet' --out gs://BUCKET/shards \\
        --runner DataflowRunner --project PROJECT --region us-central1 \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py \\
        --machine_type n2-highcpu-8 --max_num_workers 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import crawl_report, exact_duplicates, images, shards
from pipeline.fetch import FetchConfig, Fetcher
from query_list.sources import expand
from wit.beam import TolerantParser, freeze_long_lived, run_job, worker_processes_per_machine
from wit.storage import join, write_text_atomic

log = logging.getLogger(__name__)

MAX_SHARD_SIZE = 10_000  # keys are {shard:05d}{row:04d}


class CrawlFailed(RuntimeError):
    """The success ratio fell under --min-success-ratio; the message carries the counts."""


@dataclass
class CrawlConfig:
    urls: list[str]
    out: str
    url_col: str = "url"
    caption_col: str = "caption"
    shard_size: int = 1000
    threads: int = 32
    image_threads: int = 0  # of those, how many decode/resize at once; 0 = its share of the cores
    worker_processes: int = 1  # worker processes per machine (set from the runner options; 0 = one per core)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    image: images.ImageConfig = field(default_factory=images.ImageConfig)
    min_success_ratio: float = 0.0
    eval_indexes: list[str] = field(default_factory=list)
    min_inliers: int = 15

    def __post_init__(self) -> None:
        if not 1 <= self.shard_size <= MAX_SHARD_SIZE:
            raise ValueError(f"--shard-size must be between 1 and {MAX_SHARD_SIZE}")
        if self.threads < 1 or self.image_threads < 0:
            raise ValueError("--threads-per-worker must be at least 1 and --image-threads at least 0")


@dataclass(frozen=True)
class ShardTask:
    shard: int
    path: str
    start: int
    end: int


def add_arguments(parser) -> None:
    parser.add_argument("--urls", action="append", default=None, metavar="GLOB", help="url list files; repeatable")
    parser.add_argument("--out", default=None, help="output folder (local or gs://)")
    parser.add_argument("--url-col", default="url")
    parser.add_argument("--caption-col", default="caption")
    parser.add_argument("--shard-size", type=int, default=1000, help="input rows per shard")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--resize-mode", default="border", choices=images.MODES)
    parser.add_argument("--encode-format", default="jpg", choices=("jpg", "png", "webp"))
    parser.add_argument("--encode-quality", type=int, default=95)
    parser.add_argument("--min-image-size", type=int, default=0)
    parser.add_argument("--max-aspect-ratio", type=float, default=float("inf"))
    parser.add_argument("--threads-per-worker", type=int, default=32, help="downloads in flight per worker")
    parser.add_argument("--image-threads", type=int, default=0,
                        help="of those threads, how many decode and resize at once (0: the worker process's "
                             "share of the machine's cores)")
    parser.add_argument("--per-host-connections", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=10.0, help="total seconds per image")
    parser.add_argument("--max-bytes", type=int, default=20_000_000)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--no-robots", dest="robots", action="store_false", default=True,
                        help="do not fetch robots.txt (X-Robots-Tag is still honoured)")
    parser.add_argument("--allow-private-addresses", action="store_true",
                        help="allow loopback/private hosts (tests and local runs only)")
    parser.add_argument("--min-success-ratio", type=float, default=0.0,
                        help="fail when successes / downloaded images fall below this")
    parser.add_argument("--eval-index", dest="eval_indexes", action="append", default=None, metavar="DIR",
                        help="drop near-duplicates of this evaluation index (`wit dedup index`); repeatable")
    parser.add_argument("--eval-min-inliers", type=int, default=15,
                        help="verified keypoint matches that make an evaluation duplicate")


class CrawlOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        add_arguments(TolerantParser(parser))


def config_from_args(args: argparse.Namespace) -> CrawlConfig:
    return CrawlConfig(
        urls=args.urls or [], out=args.out, url_col=args.url_col, caption_col=args.caption_col,
        shard_size=args.shard_size, threads=args.threads_per_worker, image_threads=args.image_threads,
        fetch=FetchConfig(timeout=args.timeout, max_bytes=args.max_bytes, retries=args.retries,
                          per_host=args.per_host_connections, robots=args.robots,
                          allow_private=args.allow_private_addresses),
        image=images.ImageConfig(image_size=args.image_size, resize_mode=args.resize_mode,
                                 encode_format=args.encode_format, encode_quality=args.encode_quality,
                                 min_image_size=args.min_image_size, max_aspect_ratio=args.max_aspect_ratio),
        min_success_ratio=args.min_success_ratio, eval_indexes=args.eval_indexes or [],
        min_inliers=args.eval_min_inliers)


# -- reading url lists ---------------------------------------------------------------------------
def read_table(path: str):
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    name = path.rsplit("/", 1)[-1].lower()
    with fsspec.open(path, "rb", compression="infer") as handle:
        if ".parquet" in name:
            return pq.read_table(handle)
        if ".jsonl" in name or ".json" in name:
            return pajson.read_json(handle)
        delimiter = "\t" if ".tsv" in name or ".txt" in name else ","
        return pacsv.read_csv(handle, parse_options=pacsv.ParseOptions(delimiter=delimiter))


def row_count(path: str) -> int:
    """Rows of a url list; for parquet from the footer alone, without reading the columns."""
    if ".parquet" in path.rsplit("/", 1)[-1].lower():
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    return read_table(path).num_rows


def plan_shards(paths: list[str], shard_size: int) -> list[ShardTask]:
    tasks, shard = [], 0
    for path in paths:
        rows = row_count(path)
        for start in range(0, rows, shard_size):
            tasks.append(ShardTask(shard, path, start, min(rows, start + shard_size)))
            shard += 1
    return tasks


def shard_rows(task: ShardTask, config: CrawlConfig) -> list[dict]:
    table = read_table(task.path).slice(task.start, task.end - task.start)
    names = table.column_names
    lowered = {n.lower(): n for n in names}
    url_col = config.url_col if config.url_col in names else lowered.get(config.url_col.lower())
    if url_col is None:
        raise ValueError(f"{task.path}: no url column {config.url_col!r} (columns: {names})")
    caption_col = config.caption_col if config.caption_col in names else lowered.get(config.caption_col.lower())
    columns = {"url": url_col, "caption": caption_col, "uid": "uid" if "uid" in names else None,
               "entry_ids": "entry_ids" if "entry_ids" in names else None}
    data = {key: table.column(col).to_pylist() if col else [None] * table.num_rows for key, col in columns.items()}
    return [{key: data[key][i] for key in columns} for i in range(table.num_rows)]


# -- one shard -------------------------------------------------------------------------------------
def image_threads(config: CrawlConfig, cores: int | None = None) -> int:
    """Threads of a worker that decode and resize at once: ``--image-threads``, or else the
    worker's share of the machine's cores (at least one)."""
    if config.image_threads:
        return config.image_threads
    cores = cores or os.cpu_count() or 1
    return max(1, cores // (config.worker_processes or cores))


def crawl_one(fetcher: Fetcher, key: str, row: dict, config: CrawlConfig, detector=None,
              cpu_slot=nullcontext()) -> shards.Sample:
    """One url -> its sample. The image work runs inside ``cpu_slot`` (a semaphore shared by the
    worker's download threads): the downloads stay many, the CPU-bound decoding stays at about
    one thread per core instead of every thread contending for the cores and the GIL."""
    url, caption = row["url"], row["caption"]
    base = dict(key=key, url=url if isinstance(url, str) else "", caption=caption, uid=row.get("uid"),
                entry_ids=row.get("entry_ids"))
    if not isinstance(url, str) or not url.strip():
        return shards.Sample(status="failed_to_download", error_message="missing url", **base)
    fetched = fetcher.fetch(url.strip())
    base.update(final_url=fetched.final_url or None, attempts=fetched.attempts)
    if fetched.status != "ok":
        status = {"failed": "failed_to_download"}.get(fetched.status, fetched.status)
        return shards.Sample(status=status, error_message=fetched.reason, **base)
    with cpu_slot:
        result = images.process(fetched.data, config.image)
        duplicate = None
        if detector is not None and result.status == "success":
            duplicate = next((m for m in detector.match(result.data) if m.is_duplicate), None)
    if duplicate is not None:
        found = detector.describe(duplicate)
        return shards.Sample(status="eval_duplicate", sha256=result.sha256 or None, phash=result.phash or None,
                             error_message=f"near-duplicate of {found['eval_set']}/{found['eval_id']} "
                                           f"(score {found['score']})", **base)
    return shards.Sample(status=result.status, error_message=result.reason, image=result.data, width=result.width or None,
                         height=result.height or None, original_width=result.original_width or None,
                         original_height=result.original_height or None, sha256=result.sha256 or None,
                         phash=result.phash or None, **base)


class CrawlShardFn(beam.DoFn):
    def __init__(self, config: CrawlConfig) -> None:
        self.config = config

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # the download threads are the parallelism
        freeze_long_lived()
        self.fetcher = Fetcher(self.config.fetch)
        self.pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="wit-crawl")
        self.cpu_slots = threading.BoundedSemaphore(image_threads(self.config))

    def teardown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def process(self, task: ShardTask, indexes=None):
        detector = None
        if indexes:
            from dedup.detect import DetectConfig, shared_detector

            detector = shared_detector(indexes, DetectConfig(min_inliers=self.config.min_inliers))
        names = shards.shard_names(self.config.out, task.shard)
        fs, stats_path = fsspec.core.url_to_fs(names["stats"])
        if fs.exists(stats_path):  # finished by an earlier run: resume past it
            with fs.open(stats_path, "rt") as handle:
                yield {**json.load(handle), "resumed": True, "seconds": 0.0}
            for pair in exact_duplicates.written_hashes(self.config.out, task.shard):
                yield beam.pvalue.TaggedOutput("hashes", pair)
            return
        started = time.monotonic()
        rows = shard_rows(task, self.config)
        keys = [f"{task.shard:05d}{index:04d}" for index in range(len(rows))]
        samples = list(self.pool.map(lambda kr: crawl_one(self.fetcher, kr[0], kr[1], self.config, detector,
                                                               self.cpu_slots),
                                     zip(keys, rows)))
        exact_duplicates.mark_in_shard(samples)
        stats = shards.write_shard(self.config.out, task.shard, samples, self.config.image.encode_format)
        yield {**stats, "resumed": False, "seconds": time.monotonic() - started}
        for pair in exact_duplicates.success_hashes(samples):
            yield beam.pvalue.TaggedOutput("hashes", pair)


# -- the end ---------------------------------------------------------------------------------------
def finish(all_stats: list[dict], top_hosts: list, config: CrawlConfig, started: float) -> dict:
    report = crawl_report.summarize(all_stats, top_hosts, config, time.time() - started)
    sizes = {f"{s['shard']:05d}.tar": s["successes"] for s in sorted(all_stats, key=lambda s: s["shard"])}
    write_text_atomic(join(config.out, "sizes.json"), json.dumps({**sizes, "__total__": sum(sizes.values())},
                                                                   indent=2) + "\n")
    write_text_atomic(join(config.out, "crawl_report.json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(join(config.out, "crawl_report.html"), crawl_report.html_page(report))
    if report["downloaded"] and report["success_ratio"] < config.min_success_ratio:
        raise CrawlFailed(f"success ratio {report['success_ratio']:.3f} < --min-success-ratio "
                          f"{config.min_success_ratio}: statuses {report['status']}, top reasons "
                          f"{list(report['top_reasons'].items())[:5]}")
    write_text_atomic(join(config.out, "_SUCCESS"), "")  # last: the crawl is complete
    return report


def build_pipeline(pipeline, config: CrawlConfig) -> None:
    config = replace(config, worker_processes=worker_processes_per_machine(pipeline.options))
    tasks = plan_shards(expand(config.urls), config.shard_size)
    started = time.time()
    side = []
    if config.eval_indexes:
        from dedup.store import load_indexes

        load_indexes(config.eval_indexes)  # a bad index fails here, before any download
        side = [beam.pvalue.AsSingleton(pipeline | "EvalIndexPaths" >> beam.Create([config.eval_indexes])
                                        | "LoadEvalIndexes" >> beam.Map(load_indexes))]
    crawled = (pipeline
               | "Shards" >> beam.Create(tasks)
               | "SpreadShards" >> beam.Reshuffle()
               | "CrawlShard" >> beam.ParDo(CrawlShardFn(config), *side).with_outputs("hashes", main="stats"))
    repeats = (crawled.hashes
               | "GroupByHash" >> beam.GroupByKey()
               | "RepeatsAcrossShards" >> beam.FlatMap(exact_duplicates.repeats_of))
    stats = crawled.stats | "StatsByShard" >> beam.Map(lambda s: (s["shard"], s))
    settled = ({"stats": stats, "repeats": repeats}
               | "JoinByShard" >> beam.CoGroupByKey()
               | "DropRepeats" >> beam.Map(exact_duplicates.settle_shard, config.out))
    top_hosts = (settled
                 | "HostsOfShard" >> beam.FlatMap(lambda s, out: crawl_report.host_tally(out, s["shard"]).items(),
                                                  config.out)
                 | "CountHosts" >> beam.CombinePerKey(crawl_report.add_counts)
                 | "TopHosts" >> beam.combiners.Top.Of(crawl_report.TOP_HOSTS, key=crawl_report.host_order))
    (settled
     | "CollectStats" >> beam.combiners.ToList()
     | "Finish" >> beam.Map(finish, beam.pvalue.AsSingleton(top_hosts), config, started))


def run(argv: Sequence[str] | None = None) -> int:
    config = run_job(argv, prog="wit crawl", doc=__doc__, add_arguments=add_arguments, required=['urls', 'out'],
                     config_from_args=config_from_args, build_pipeline=build_pipeline)
    log.info("crawl written to %s", config.out)
    return 0


if __name__ == "__main__":
    # Run through the importable module, not __main__: worker processes (multi_processing,
    # Dataflow) unpickle our DoFns and records by module path.
    import importlib

    from wit.logs import setup_logging

    setup_logging()
    sys.exit(importlib.import_module("pipeline.crawl").run())
