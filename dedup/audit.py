"""Audit crawled shards against evaluation-set indexes; optionally write them back without the
near-duplicates (a Beam job).

Each shard is one work item: its samples are read in order (:func:`core.shards.read_tar`), their images
matched by a :class:`dedup.detect.Detector` built once per worker from the indexes (a side
input), and every sample ends as clean, duplicate or unreadable. Outputs in ``--out``:
``overlaps.parquet`` (one row per pool sample and evaluation image with evidence: duplicates and
near misses), ``report.json`` (per evaluation set, in CLIP's terms: All, Overlap and Clean sizes,
contamination percentage, a model's zero-shot accuracy on each with ``--zero-shot-items``, which
``wit dedup audit --checkpoint`` makes) and ``report.html``
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
cache and a worker starts without building anything (start-up figures in docs/dedup.md).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Sequence

import apache_beam as beam
import faiss
import fsspec

from core import shards
from core import sizes as shard_sizes
from dedup import features, report, store
from dedup.detect import DetectConfig, Detector, shared_detector
from dedup.store import load_indexes
from core import config as config_flags
from core.beam import run_job
from core.reports import AuditFigures
from core.config import group, opt, option
from core.storage import join, write_bytes_atomic, write_parquet_atomic, write_text_atomic

log = logging.getLogger(__name__)


@dataclass
class AuditConfig:
    shards: list[str] = option(metavar="SHARDS", gcs=True, label="Shards",
                               help="webdataset tars: a glob, a brace list ({00000..00009}.tar), a folder "
                                    "(img2dataset's or the crawl's output) or a sizes.json; repeatable")
    indexes: list[str] = option(flag="--index", metavar="INDEX_DIR", gcs=True, label="Evaluation index",
                                help="an index from `wit dedup index`; repeatable")
    out: str = option(gcs=True, label="Report folder", help="report folder (local or gs://)")
    write_clean: str | None = option(None, metavar="PATH", gcs=True,
                                     help="write the shards without duplicates here")
    detect: DetectConfig = group(
        DetectConfig,
        min_inliers=opt("geometrically verified keypoint matches that make a duplicate", flag="--threshold",
                        aliases=("--min-inliers",)),
        hash_threshold=opt("PHash distance (bits) that alone makes one"),
        spread=opt("vocabulary words each pool descriptor votes through (1..4)"))
    zero_shot_items: str | None = option(
        None, metavar="JSON", gcs=True,
        help="a model's per-image zero-shot results on the indexed sets (`wit eval audit-items`): the report "
             "gives its top-1 on All, Clean and Overlap (`wit dedup audit --checkpoint MODEL` makes this file)")


def add_arguments(parser) -> None:
    config_flags.add_arguments(parser, AuditConfig)


# -- one shard -----------------------------------------------------------------------------------
def shard_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def sample_meta(sample: shards.TarSample) -> dict:
    raw = sample.get("json")
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        meta = {}
    caption = sample.get("txt")
    return {"uid": meta.get("uid"), "url": meta.get("url"),
            "caption": caption.decode("utf-8", "replace") if caption is not None else meta.get("caption")}


def audit_shard(path: str, detector: Detector) -> tuple[dict, list[shards.TarSample], set[str]]:
    """The shard's result record, its samples (for rewriting) and the keys found to be duplicates."""
    result = {"shard": shard_name(path), "path": path, "samples": 0, "duplicates": 0, "unreadable": [],
              "damaged": None, "dropped_members": [], "overlaps": [], "hits": {}}
    read, duplicates = [], set()
    for sample in shards.read_tar(path):
        if isinstance(sample, shards.TarDamaged):
            result["damaged"] = sample.error
            continue
        if isinstance(sample, shards.TarSkipped):  # not audited, and never written to a clean shard
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


def write_clean_shard(path: str, read: list[shards.TarSample], duplicates: set[str], out: str) -> int:
    """The shard without duplicates, and its status table (when there is one) marking them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    kept = [sample for sample in read if sample.key not in duplicates]
    name = shard_name(path)
    status_path = path[:-len(shards.SHARD_SUFFIX)] + ".parquet"
    fs, local = fsspec.core.url_to_fs(status_path)
    if fs.exists(local):
        table = pq.read_table(io.BytesIO(fs.cat_file(local)))
        if "status" in table.column_names and "key" in table.column_names:
            hit = pc.is_in(table.column("key"), value_set=pa.array(sorted(duplicates), pa.string()))
            status = pc.if_else(hit, pa.scalar("eval_duplicate"), table.column("status"))
            table = table.set_column(table.column_names.index("status"), "status", status)
        write_parquet_atomic(join(out, shards.shard_stem(name) + shards.STATUS_SUFFIX), table)
    write_bytes_atomic(join(out, name), shards.samples_tar(kept))
    return len(kept)


class AuditShardFn(beam.DoFn):
    def __init__(self, config: AuditConfig) -> None:
        self.config = config

    def setup(self) -> None:
        # one thread per SDK process: a machine runs one process per core, and OpenCV's and faiss's
        # thread pools on top of that only add switching (the rates in docs/dedup.md are per core)
        features.cv2.setNumThreads(1)
        faiss.omp_set_num_threads(1)

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
    accuracy = report.zero_shot(report.read_zero_shot_items(config.zero_shot_items), results) \
        if config.zero_shot_items else {}
    detector = {"min_inliers": config.detect.min_inliers, "hash_threshold": config.detect.hash_threshold,
                "spread": config.detect.spread}
    summary = report.summarize(results, indexes, detector, config.write_clean, accuracy)
    AuditFigures.check(summary, join(config.out, AuditFigures.FILE))  # the headline figures keep their names
    write_text_atomic(join(config.out, AuditFigures.FILE), json.dumps(summary, indent=2, default=str) + "\n")
    write_text_atomic(join(config.out, "report.html"), report.render_html(summary, results, indexes))
    if config.write_clean:
        sizes = {r["shard"]: r["clean"] for r in results}
        shard_sizes.write_sizes(config.write_clean, sizes)
        shard_sizes.write_success(config.write_clean)
    log.info("audit: %s", {name: s["contamination_pct"] for name, s in summary["eval_sets"].items()})
    return summary


class AuditShards(beam.PTransform):
    """Shards spread over the workers, each audited against the indexes (and written back
    without its duplicates under ``--write-clean``).

    PCollection[shard path] -> PCollection[shard result dict]; ``indexes``: a side input
    holding the loaded indexes"""

    def __init__(self, config: AuditConfig, indexes) -> None:
        super().__init__()
        self.config, self.indexes = config, indexes

    def expand(self, paths):
        return (paths
                | "SpreadShards" >> beam.Reshuffle()
                | "AuditShard" >> beam.ParDo(AuditShardFn(self.config), self.indexes))


def build_pipeline(pipeline, config: AuditConfig) -> None:
    paths = [path for path in shard_sizes.list_shards(config.shards) if shards.is_shard(path)]
    if not paths:
        raise ValueError(f"no .tar shards match {config.shards}")
    load_indexes(config.indexes)  # fail here, before any work, on a bad index
    side = beam.pvalue.AsSingleton(pipeline | "IndexPaths" >> beam.Create([config.indexes])
                                   | "LoadIndexes" >> beam.Map(load_indexes))
    (pipeline
     | "Shards" >> beam.Create(paths)
     | "AuditShards" >> AuditShards(config, side)
     | "CollectResults" >> beam.combiners.ToList()
     | "Finish" >> beam.Map(finish, side, config))


def run(argv: Sequence[str] | None = None) -> int:
    run_job(argv, prog="wit dedup audit", doc=__doc__, config=AuditConfig, build_pipeline=build_pipeline)
    return 0


if __name__ == "__main__":
    from core.beam import job_main

    job_main("dedup.audit")
