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

    wit crawl --urls 'out/curated/urls/*.parquet' --out out/shards --image-size 256

Dataflow:

    python -m pipeline.crawl --urls 'gs://BUCKET/curated/urls/*.parquet' --out gs://BUCKET/shards \\
        --runner DataflowRunner --project PROJECT --region us-central1 \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py \\
        --machine_type n2-highcpu-8 --max_num_workers 100
"""

from __future__ import annotations

if __name__ == "__main__":  # the command's own process: its allocator first (core.malloc)
    from core.malloc import preload_for

    preload_for("pipeline.crawl")

import ipaddress
import json
import logging
import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Sequence

import apache_beam as beam
import fsspec

from pipeline import crawl_report, exact_duplicates, images, shards
from pipeline.list_rows import read_table, row_count
from pipeline.fetch import FetchConfig, Fetcher, tls_context
from pipeline.urls import allowed_networks, ascii_host
from core import config as config_flags
from core.beam import default_experiment, freeze_long_lived, run_job, worker_processes_per_machine
from core.config import group, opt, option
from core.reports import CrawlFigures
from core.shards import shard_names
from core import malloc
from core import sizes as shard_sizes
from core.storage import expand_globs, join, write_text_atomic

log = logging.getLogger(__name__)

MAX_SHARD_SIZE = 10_000  # keys are {shard:05d}{row:04d}


class CrawlFailed(RuntimeError):
    """The success ratio fell under --min-success-ratio; the message carries the counts."""


@dataclass
class CrawlConfig:
    urls: list[str] = option(metavar="GLOB", gcs=True, label="Url lists", help="url list files; repeatable")
    out: str = option(gcs=True, label="Output folder", help="output folder (local or gs://)")
    url_col: str = option("url", help="url column of the url lists")
    caption_col: str = option("caption", help="caption column of the url lists")
    shard_size: int = option(1000, help="input rows per shard")
    # downloads in flight per worker: on the WAN benchmark 256 took ~10% more CPU than 128 (the
    # GIL's hand-offs) for ~10% less wall time; the crawl is paid by the CPU-second
    threads: int = option(128, flag="--threads-per-worker",
                          help="downloads in flight per worker process (most of them wait on the network)")
    # of those, how many decode/resize at once; 0 = its share of the cores
    image_threads: int = option(0, help="of those threads, how many decode and resize at once (0: the worker "
                                        "process's share of the machine's cores)")
    worker_processes: int = 1  # worker processes per machine (set from the runner options; 0 = one per core)
    fetch: FetchConfig = group(
        FetchConfig,
        per_host=opt("connections to one host at once, per worker process", flag="--per-host-connections"),
        per_host_qps=opt("requests a second to one host at most, per worker process (0: no limit); "
                         "robots.txt Crawl-delay and Retry-After pauses are honoured either way"),
        timeout=opt("total seconds per image"),
        max_bytes=opt("largest image body downloaded, in bytes"),
        retries=opt("retries of a failed download"),
        robots=opt("do not fetch robots.txt (X-Robots-Tag is still honoured)", flag="--no-robots"),
        allow_private=opt("allow every non-public address (tests and local runs only)",
                          flag="--allow-private-addresses", template=False),
        allow_networks=opt("a non-public network to allow all the same, e.g. 127.0.0.0/8 (tests); repeatable",
                           flag="--allow-network", metavar="CIDR", template=False,
                           parse=lambda values: tuple(allowed_networks_text(values)), unparse=list),
        ca_pem=opt("PEM certificates to trust for https (local or gs://; read once, sent to the workers); "
                   "default: $SSL_CERT_FILE, $REQUESTS_CA_BUNDLE, else certifi's bundle",
                   flag="--ca-bundle", metavar="FILE", shown=lambda pem: None,
                   parse=lambda path: read_ca_bundle(path)),
        hosts=opt("use ADDRESS for HOST instead of DNS (as curl --resolve); repeatable", flag="--resolve",
                  metavar="HOST=ADDRESS", template=False, repeat=True, parse=lambda values: resolve_pairs(values),
                  unparse=lambda pairs: [f"{host}={address}" for host, address in pairs.items()]))
    image: images.ImageConfig = group(
        images.ImageConfig,
        image_size=opt("longer or shorter side in pixels, by resize mode"),
        resize_mode=opt("how images are resized", choices=images.MODES),
        encode_format=opt("format of the stored images", choices=("jpg", "png", "webp")),
        encode_quality=opt("jpg/webp quality of the stored images"),
        min_image_size=opt("smaller images are filtered"),
        max_aspect_ratio=opt("images more elongated than this are filtered"),
        max_decode_bytes=opt("refuse (filtered) an image whose decode would hold more memory than this at its "
                             "peak, read from its header before decoding", flag="--max-decode-mb",
                             shown=lambda size: size // 1_000_000, parse=lambda megabytes: megabytes * 1_000_000,
                             unparse=lambda size: whole_megabytes(size)))
    min_success_ratio: float = option(0.0, help="fail when successes / downloaded images fall below this")
    eval_indexes: list[str] = option(default_factory=list, flag="--eval-index", metavar="DIR", gcs=True,
                                     label="Evaluation index",
                                     help="drop near-duplicates of this evaluation index (`wit dedup index`); "
                                          "repeatable")
    min_inliers: int = option(10, flag="--eval-min-inliers",  # the audit's --threshold (dedup.detect.DetectConfig)
                              help="verified keypoint matches that make an evaluation duplicate")

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
    config_flags.add_arguments(parser, CrawlConfig)


def whole_megabytes(size: int) -> int:
    """``--max-decode-mb`` of a byte count (the flag takes whole megabytes)."""
    if size % 1_000_000:
        raise ValueError(f"--max-decode-mb: {size} bytes is not a whole number of megabytes")
    return size // 1_000_000


def allowed_networks_text(values: list[str]) -> list[str]:
    """``--allow-network`` values, checked here so that a typo fails at launch."""
    try:
        return [str(network) for network in allowed_networks(values)]
    except ValueError as exc:
        raise ValueError(f"--allow-network: {exc}") from exc


def read_ca_bundle(path: str | None) -> str:
    """The PEM text of ``--ca-bundle`` (workers get the text, not a path they may not have)."""
    if not path:
        return ""
    with fsspec.open(path, "rt") as handle:
        text = handle.read()
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"--ca-bundle {path}: no PEM certificate in it")
    try:
        tls_context(text)
    except ssl.SSLError as exc:
        raise ValueError(f"--ca-bundle {path}: {exc}") from exc
    return text


def resolve_pairs(values: list[str]) -> dict[str, str]:
    """``--resolve HOST=ADDRESS`` values as a mapping (names as IDNA, addresses checked)."""
    pairs = {}
    for value in values:
        host, sep, address = value.partition("=")
        try:
            pairs[ascii_host(host.strip())] = str(ipaddress.ip_address(address.strip()))
        except ValueError as exc:
            raise ValueError(f"--resolve {value!r}: want HOST=ADDRESS ({exc})") from exc
    return pairs


# -- reading url lists ---------------------------------------------------------------------------
def plan_shards(paths: list[str], shard_size: int) -> list[ShardTask]:
    tasks, shard = [], 0
    for path in paths:
        rows = row_count(path)
        for start in range(0, rows, shard_size):
            tasks.append(ShardTask(shard, path, start, min(rows, start + shard_size)))
            shard += 1
    return tasks


def shard_rows(task: ShardTask, config: CrawlConfig) -> list[dict]:
    """The shard's rows as the crawl takes them: ``url`` text or None, ``caption`` text (made
    so where the file held a number, bytes or null; counted by reason in the Beam counters
    ``wit.crawl/caption_not_text`` and ``caption_not_utf8``), ``uid`` and ``entry_ids`` as
    found. A file without the url column, or without a caption column named other than the
    default, is an error naming the columns it has."""
    from collections import Counter

    from pipeline.candidates import find_columns, url_value
    from pipeline.captions import caption_text

    def columns(names: list[str]) -> tuple[str, str | None]:
        url_col, caption_col = find_columns(names, config.url_col, config.caption_col, task.path)
        if url_col is None:
            raise ValueError(f"{task.path}: no url column {config.url_col!r} (columns: {names})")
        return url_col, caption_col

    def select(names: list[str]) -> list[str]:  # parquet: only the columns the crawl uses are read
        return [name for name in (*columns(names), "uid", "entry_ids") if name and name in names]

    names, rows = read_table(task.path, task.start, task.end, select)
    # no names when every record of a csv/jsonl shard failed to parse: each is then a missing url
    url_col, caption_col = columns(names) if names else (None, None)
    issues: Counter = Counter()
    taken = []
    for row in rows:
        caption, issue = caption_text(row.get(caption_col) if caption_col else None)
        issues[issue] += 1
        taken.append({"url": url_value(row.get(url_col)) if url_col else None, "caption": caption,
                      "uid": row.get("uid"), "entry_ids": row.get("entry_ids")})
    for issue, count in issues.items():
        if issue:
            beam.metrics.Metrics.counter("wit.crawl", issue).inc(count)
    return taken


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
    """One url -> its sample, whatever happens: an exception anywhere in the work of one url
    (none is expected: the fetch, the image code and the detector each return statuses) is
    that url's ``failed_to_download`` or ``failed_to_resize`` row with the exception named,
    never the shard's failure."""
    progress: dict = {}
    try:
        return _crawl_one(fetcher, key, row, config, detector, cpu_slot, progress)
    except Exception as exc:  # noqa: BLE001 - the last resort of the error policy: one url, one row
        log.exception("url %s of key %s raised", row.get("url"), key)
        url = row.get("url")
        return shards.Sample(key=key, url=url if isinstance(url, str) else "", caption=row.get("caption"),
                             uid=row.get("uid"), entry_ids=row.get("entry_ids"),
                             status="failed_to_resize" if progress.get("fetched") else "failed_to_download",
                             error_message=f"internal error {type(exc).__name__}: {exc}"[:300])


def _crawl_one(fetcher: Fetcher, key: str, row: dict, config: CrawlConfig, detector, cpu_slot,
               progress: dict) -> shards.Sample:
    """The image work runs inside ``cpu_slot`` (a semaphore shared by the worker's download
    threads): the downloads stay many, the CPU-bound decoding stays at about one thread per
    core instead of every thread contending for the cores and the GIL."""
    url, caption = row["url"], row["caption"]
    base = dict(key=key, url=url if isinstance(url, str) else "", caption=caption, uid=row.get("uid"),
                entry_ids=row.get("entry_ids"))
    if not isinstance(url, str) or not url.strip():
        return shards.Sample(status="failed_to_download", error_message="missing url", **base)
    fetched = fetcher.fetch(url.strip())
    progress["fetched"] = True
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


def worker_resources(fetcher: Fetcher) -> dict:
    """This worker process's allocators (C's and Arrow's), peak memory, open files, threads and the
    fetcher's cache sizes."""
    import resource

    import pyarrow as pa

    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    return {"pid": os.getpid(), "allocator": malloc.allocator(), "arrow_pool": pa.default_memory_pool().backend_name,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "open_files": fds, "threads": threading.active_count(), **fetcher.cache_sizes()}


@dataclass
class _OpenShard:
    """A shard whose urls are in the worker's download pool."""

    task: ShardTask
    futures: list
    started: float


class CrawlShardFn(beam.DoFn):
    """Crawls shards. The shards of a bundle overlap: a shard's urls go into the worker's one
    download pool as soon as the shard arrives, and up to ``OPEN_SHARDS`` shards are open at
    once, so the threads freed by a finished url take the next shard's urls instead of waiting
    for the slowest url of their shard (a hanging server holds one thread for ``--timeout``, not
    the whole worker). A shard is written when its last url is done, oldest first; its stats
    and hashes are emitted then, or at the end of the bundle."""

    OPEN_SHARDS = 3

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # the download threads are the parallelism
        freeze_long_lived()
        malloc.limit_arenas()
        self.fetcher = Fetcher(self.config.fetch)
        self.pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="wit-crawl")
        self.cpu_slots = threading.BoundedSemaphore(image_threads(self.config))
        self.open: list[_OpenShard] = []

    def teardown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()

    def start_bundle(self) -> None:
        self.open = []

    def process(self, task: ShardTask, indexes=None):
        names = shard_names(self.config.out, task.shard)
        fs, stats_path = fsspec.core.url_to_fs(names["stats"])
        if fs.exists(stats_path):  # finished by an earlier run: resume past it
            with fs.open(stats_path, "rt") as handle:
                yield {**json.load(handle), "resumed": True, "seconds": 0.0}
            for pair in exact_duplicates.written_hashes(self.config.out, task.shard):
                yield beam.pvalue.TaggedOutput("hashes", pair)
            return
        detector = None
        if indexes:
            from dedup.detect import DetectConfig, shared_detector

            detector = shared_detector(indexes, DetectConfig(min_inliers=self.config.min_inliers))
        started = time.monotonic()
        rows = shard_rows(task, self.config)
        futures = [self.pool.submit(crawl_one, self.fetcher, f"{task.shard:05d}{index:04d}", row, self.config,
                                    detector, self.cpu_slots) for index, row in enumerate(rows)]
        self.open.append(_OpenShard(task, futures, started))
        while len(self.open) >= self.OPEN_SHARDS or (self.open and all(f.done() for f in self.open[0].futures)):
            yield from self._close(self.open.pop(0))

    def finish_bundle(self):
        from core.beam import windowed

        while self.open:
            for output in self._close(self.open.pop(0)):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(output.tag, windowed(output.value))
                else:
                    yield windowed(output)

    def _close(self, shard: _OpenShard):
        """Wait for the shard's urls, write it, and give its stats and hashes."""
        samples = [future.result() for future in shard.futures]
        exact_duplicates.mark_in_shard(samples)
        stats = shards.write_shard(self.config.out, shard.task.shard, samples, self.config.image.encode_format)
        hashes = list(exact_duplicates.success_hashes(samples))
        samples.clear()  # the shard's images are written: freed before the heap's free pages go back
        shard.futures.clear()
        malloc.release_free_memory()
        yield {**stats, "resumed": False, "seconds": time.monotonic() - shard.started,
               "worker": worker_resources(self.fetcher)}
        for pair in hashes:
            yield beam.pvalue.TaggedOutput("hashes", pair)


# -- the end ---------------------------------------------------------------------------------------
def finish(all_stats: list[dict], top_hosts: list, config: CrawlConfig, started: float) -> dict:
    report = crawl_report.summarize(all_stats, top_hosts, config, time.time() - started)
    sizes = {f"{s['shard']:05d}.tar": s["successes"] for s in sorted(all_stats, key=lambda s: s["shard"])}
    shard_sizes.write_sizes(config.out, sizes)
    CrawlFigures.check(report, join(config.out, CrawlFigures.FILE))  # the headline figures keep their names
    write_text_atomic(join(config.out, CrawlFigures.FILE), json.dumps(report, indent=2) + "\n")
    write_text_atomic(join(config.out, "crawl_report.html"), crawl_report.html_page(report))
    if report["downloaded"] and report["success_ratio"] < config.min_success_ratio:
        raise CrawlFailed(f"success ratio {report['success_ratio']:.3f} < --min-success-ratio "
                          f"{config.min_success_ratio}: statuses {report['status']}, top reasons "
                          f"{list(report['top_reasons'].items())[:5]}")
    shard_sizes.write_success(config.out)  # last: the crawl is complete
    return report


# -- the job's composite transforms ----------------------------------------------------------------
class CrawlShards(beam.PTransform):
    """Shards spread over the workers, crawled and written; the hash of every image kept.

    PCollection[ShardTask] -> {stats: PCollection[shard stats dict], hashes:
    PCollection[(sha256, key)]}"""

    def __init__(self, config: CrawlConfig, side: Sequence = ()) -> None:
        super().__init__()
        self.config, self.side = config, list(side)

    def expand(self, tasks):
        crawled = (tasks
                   | "SpreadShards" >> beam.Reshuffle()
                   | "CrawlShard" >> beam.ParDo(CrawlShardFn(self.config), *self.side).with_outputs("hashes",
                                                                                                   main="stats"))
        return {"stats": crawled.stats, "hashes": crawled.hashes}


def keyed_by_shard(stats: dict) -> tuple[int, dict]:
    return stats["shard"], stats


class SettleRepeats(beam.PTransform):
    """Exact duplicates across shards: an image's bytes stay with its smallest key; the other
    samples are marked ``duplicate`` in their status table and removed from their tar.

    {stats: PCollection[shard stats], hashes: PCollection[(sha256, key)]} ->
    PCollection[final shard stats]"""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def expand(self, crawled):
        repeats = (crawled["hashes"]
                   | "GroupByHash" >> beam.GroupByKey()
                   | "RepeatsAcrossShards" >> beam.FlatMap(exact_duplicates.repeats_of))
        stats = crawled["stats"] | "StatsByShard" >> beam.Map(keyed_by_shard)
        return ({"stats": stats, "repeats": repeats}
                | "JoinByShard" >> beam.CoGroupByKey()
                | "DropRepeats" >> beam.Map(exact_duplicates.settle_shard, self.out))


def hosts_of_shard(stats: dict, out: str):
    return crawl_report.host_tally(out, stats["shard"]).items()


class TopHosts(beam.PTransform):
    """The hosts with the most urls over all shards, read from the status tables.

    PCollection[final shard stats] -> PCollection[list[(host, counts)]] (one element)"""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def expand(self, settled):
        return (settled
                | "HostsOfShard" >> beam.FlatMap(hosts_of_shard, self.out)
                | "CountHosts" >> beam.CombinePerKey(crawl_report.add_counts)
                | "TopHosts" >> beam.combiners.Top.Of(crawl_report.TOP_HOSTS, key=crawl_report.host_order))


# A worker's outputs (each success's hash, for the duplicates across shards: ~70 KB a shard) wait
# in Beam's data-channel buffer until 10 MiB, and the last message sent stays alive in the worker
# until the next one replaces it (~35 MB resident, from the ~150th shard on). Sent every second
# instead, a message holds a second's output. Read by every worker (locally: core.beam_local).
DATA_FLUSH_MS = 1000


def build_pipeline(pipeline, config: CrawlConfig) -> None:
    config = replace(config, worker_processes=worker_processes_per_machine(pipeline.options))
    default_experiment(pipeline.options, "data_buffer_time_limit_ms", DATA_FLUSH_MS)
    tasks = plan_shards(expand_globs(config.urls), config.shard_size)
    for path in sorted({task.path for task in tasks}):  # a missing column fails here, before any download
        shard_rows(ShardTask(-1, path, 0, 1), config)
    started = time.time()
    side = []
    if config.eval_indexes:
        from dedup.store import load_indexes

        load_indexes(config.eval_indexes)  # a bad index fails here, before any download
        side = [beam.pvalue.AsSingleton(pipeline | "EvalIndexPaths" >> beam.Create([config.eval_indexes])
                                        | "LoadEvalIndexes" >> beam.Map(load_indexes))]
    crawled = pipeline | "Shards" >> beam.Create(tasks) | "CrawlShards" >> CrawlShards(config, side)
    settled = crawled | "SettleRepeats" >> SettleRepeats(config.out)
    top_hosts = settled | "TopHosts" >> TopHosts(config.out)
    (settled
     | "CollectStats" >> beam.combiners.ToList()
     | "Finish" >> beam.Map(finish, beam.pvalue.AsSingleton(top_hosts), config, started))


def run(argv: Sequence[str] | None = None) -> int:
    config = run_job(argv, prog="wit crawl", doc=__doc__, config=CrawlConfig, build_pipeline=build_pipeline)
    log.info("crawl written to %s", config.out)
    return 0


if __name__ == "__main__":
    from core.beam import job_main

    job_main("pipeline.crawl")
