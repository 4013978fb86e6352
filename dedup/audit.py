"""Audit crawled shards against evaluation-set indexes; optionally write them back without the
near-duplicates (a Beam job).

Each shard is one work item: its samples are read in order (:mod:`dedup.samples`), their images
matched by a :class:`dedup.detect.Detector` built once per worker from the indexes (a side
input), and every sample ends as clean, duplicate or unreadable. Outputs in ``--out``:
``overlaps.parquet`` (one row per pool sample and evaluation image with evidence: duplicates and
near misses), ``report.json`` (per evaluation set, in CLIP's terms: All, Overlap and Clean sizes,
contamination percentage, zero-shot accuracy on each with ``--checkpoint``) and ``report.html``
(one self-contained page, pairs side by side, sortable). ``--write-clean PATH`` writes each shard
without its duplicates (same member bytes and order), its status parquet with those rows set to
``eval_duplicate`` when the input has one, and ``sizes.json``.

Local:

    wit dedup audit --shards 'out/shards/*.tar' --index out/dedup/cifar10 --index out/dedup/imagenet \\
        --out out/dedup/audit --write-clean out/shards-clean

Dataflow:

    python -m dedup.audit --shards 'gs://BUCKET/shards/*.tar' --index gs://BUCKET/dedup/imagenet-val \\
        --out gs://BUCKET/dedup/audit --write-clean gs://BUCKET/shards-clean --runner DataflowRunner \\
        --project PROJECT --region us-central1 --temp_location gs://BUCKET/tmp --setup_file ./setup.py \\
        --machine_type n2-standard-8

The index is memory-mapped by every worker process (a ``gs://`` index is first copied once per
machine into ``$WIT_DEDUP_CACHE``), so the processes of a machine share one copy in the page
cache and a worker is ready in well under a second per 10,000 evaluation images.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tarfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions

from dedup import features, report, samples, store
from dedup.detect import DetectConfig, Detector, shared_detector
from dedup.store import load_indexes
from query_list.sources import expand
from core.beam import TolerantParser, run_job
from core.storage import join, write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)


@dataclass
class AuditConfig:
    shards: list[str]
    indexes: list[str]
    out: str
    write_clean: str | None = None
    detect: DetectConfig = field(default_factory=DetectConfig)
    checkpoint: str | None = None
    classnames: str | None = None
    templates: str | None = None
    task: str | None = None


def add_arguments(parser) -> None:
    parser.add_argument("--shards", action="append", default=None, metavar="GLOB", help="webdataset tars; repeatable")
    parser.add_argument("--index", dest="indexes", action="append", default=None, metavar="INDEX_DIR",
                        help="an index from `wit dedup index`; repeatable")
    parser.add_argument("--out", default=None, help="report folder (local or gs://)")
    parser.add_argument("--write-clean", default=None, metavar="PATH", help="write the shards without duplicates here")
    parser.add_argument("--threshold", "--min-inliers", dest="min_inliers", type=int, default=DetectConfig.min_inliers,
                        help="geometrically verified keypoint matches that make a duplicate")
    parser.add_argument("--hash-threshold", type=int, default=4, help="PHash distance (bits) that alone makes one")
    parser.add_argument("--spread", type=int, default=DetectConfig.spread,
                        help="vocabulary words each pool descriptor votes through (1..4)")
    parser.add_argument("--checkpoint", default=None, help="a model folder: zero-shot accuracy on All/Clean/Overlap")
    parser.add_argument("--classnames", default=None, help="JSON class names (default: the index's sorted labels)")
    parser.add_argument("--templates", default=None, help="JSON prompt templates (default: the project's own)")
    parser.add_argument("--task", default=None, help="the key in --classnames/--templates JSON dicts")


class DedupAuditOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        add_arguments(TolerantParser(parser))


def config_from_args(args: argparse.Namespace) -> AuditConfig:
    return AuditConfig(shards=args.shards or [], indexes=args.indexes or [], out=args.out,
                       write_clean=args.write_clean, checkpoint=args.checkpoint, classnames=args.classnames,
                       templates=args.templates, task=args.task,
                       detect=DetectConfig(min_inliers=args.min_inliers, hash_threshold=args.hash_threshold,
                                           spread=args.spread))


# -- one shard -----------------------------------------------------------------------------------
def shard_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def sample_meta(sample: samples.TarSample) -> dict:
    raw = sample.get("json")
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        meta = {}
    caption = sample.get("txt")
    return {"uid": meta.get("uid"), "url": meta.get("url"),
            "caption": caption.decode("utf-8", "replace") if caption is not None else meta.get("caption")}


def audit_shard(path: str, detector: Detector) -> tuple[dict, list[samples.TarSample], set[str]]:
    """The shard's result record, its samples (for rewriting) and the keys found to be duplicates."""
    result = {"shard": shard_name(path), "path": path, "samples": 0, "duplicates": 0, "unreadable": [],
              "damaged": None, "dropped_members": [], "overlaps": [], "hits": {}}
    read, duplicates = [], set()
    for sample in samples.read_tar(path):
        if isinstance(sample, samples.TarDamaged):
            result["damaged"] = sample.error
            continue
        if isinstance(sample, samples.TarSkipped):  # not audited, and never written to a clean shard
            result["dropped_members"].append({"name": sample.name, "reason": sample.reason})
            continue
        read.append(sample)
        result["samples"] += 1
        image = sample.image()
        if image is None:
            result["unreadable"].append({"key": sample.key, "error": "no image member"})
            continue
        try:
            grey = features.decode_grey(image[1], detector.features.side)
        except features.UnreadableImage as exc:
            result["unreadable"].append({"key": sample.key, "error": str(exc)[:200]})
            continue
        found = detector.match_grey(grey)
        if not found:
            continue
        meta = sample_meta(sample)
        thumb = report.thumbnail_bytes(image[1])
        for match in found:
            row = {"key": sample.key, "shard": result["shard"], **meta, **detector.describe(match),
                   "thumbnail": thumb}
            result["overlaps"].append(row)
            if match.is_duplicate:
                result["hits"].setdefault(row["eval_set"], set()).add(row["eval_id"])
        if any(match.is_duplicate for match in found):
            duplicates.add(sample.key)
    result["duplicates"] = len(duplicates)
    return result, read, duplicates


def rewrite_tar(kept: list[samples.TarSample]) -> bytes:
    from pipeline.shards import add_member

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in kept:
            for name, data in sample.members:
                add_member(tar, name, data)
    return buffer.getvalue()


def write_clean_shard(path: str, read: list[samples.TarSample], duplicates: set[str], out: str) -> int:
    """The shard without duplicates, and its status table (when there is one) marking them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    kept = [sample for sample in read if sample.key not in duplicates]
    name = shard_name(path)
    status_path = path[:-len(samples.SHARD_SUFFIX)] + ".parquet"
    fs, local = fsspec.core.url_to_fs(status_path)
    if fs.exists(local):
        table = pq.read_table(io.BytesIO(fs.cat_file(local)))
        if "status" in table.column_names and "key" in table.column_names:
            hit = pc.is_in(table.column("key"), value_set=pa.array(sorted(duplicates), pa.string()))
            status = pc.if_else(hit, pa.scalar("eval_duplicate"), table.column("status"))
            table = table.set_column(table.column_names.index("status"), "status", status)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        write_bytes_atomic(join(out, name[:-len(samples.SHARD_SUFFIX)] + ".parquet"), buffer.getvalue())
    write_bytes_atomic(join(out, name), rewrite_tar(kept))
    return len(kept)


class AuditShardFn(beam.DoFn):
    def __init__(self, config: AuditConfig) -> None:
        self.config = config

    def setup(self) -> None:
        features.cv2.setNumThreads(1)

    def process(self, path: str, indexes: list[store.EvalIndex]):
        detector = shared_detector(indexes, self.config.detect)
        started = time.monotonic()
        result, read, duplicates = audit_shard(path, detector)
        if self.config.write_clean:
            result["clean"] = write_clean_shard(path, read, duplicates, self.config.write_clean)
        result["seconds"] = time.monotonic() - started
        yield result


# -- the end -------------------------------------------------------------------------------------
def finish(results: list[dict], indexes: list[store.EvalIndex], config: AuditConfig) -> dict:
    """The report's tables are per evaluation set (an index may hold many): the report reads
    each set with every column, thumbnails included, which workers never load."""
    indexes = store.eval_sets(indexes)
    results = sorted(results, key=lambda r: r["shard"])
    write_bytes_atomic(join(config.out, "overlaps.parquet"), report.overlaps_table(results))
    accuracy = report.zero_shot(indexes, results, config) if config.checkpoint else {}
    summary = report.summarize(results, indexes, config, accuracy)
    write_text_atomic(join(config.out, "report.json"), json.dumps(summary, indent=2, default=str) + "\n")
    write_text_atomic(join(config.out, "report.html"), report.render_html(summary, results, indexes))
    if config.write_clean:
        sizes = {r["shard"]: r["clean"] for r in results}
        write_text_atomic(join(config.write_clean, "sizes.json"),
                          json.dumps({**sizes, "__total__": sum(sizes.values())}, indent=2) + "\n")
        write_text_atomic(join(config.write_clean, "_SUCCESS"), "")
    log.info("audit: %s", {name: s["contamination_pct"] for name, s in summary["eval_sets"].items()})
    return summary


def build_pipeline(pipeline, config: AuditConfig) -> None:
    paths = [path for path in expand(config.shards) if path.lower().endswith(samples.SHARD_SUFFIX)]
    if not paths:
        raise ValueError(f"no .tar shards match {config.shards}")
    load_indexes(config.indexes)  # fail here, before any work, on a bad index
    side = beam.pvalue.AsSingleton(pipeline | "IndexPaths" >> beam.Create([config.indexes])
                                   | "LoadIndexes" >> beam.Map(load_indexes))
    (pipeline
     | "Shards" >> beam.Create(paths)
     | "SpreadShards" >> beam.Reshuffle()
     | "AuditShard" >> beam.ParDo(AuditShardFn(config), side)
     | "CollectResults" >> beam.combiners.ToList()
     | "Finish" >> beam.Map(finish, side, config))


def run(argv: Sequence[str] | None = None) -> int:
    run_job(argv, prog="wit dedup audit", doc=__doc__, add_arguments=add_arguments,
            required=["shards", "indexes", "out"], config_from_args=config_from_args, build_pipeline=build_pipeline)
    return 0


if __name__ == "__main__":
    import importlib

    from core.logs import setup_logging

    setup_logging()
    sys.exit(importlib.import_module("dedup.audit").run())
