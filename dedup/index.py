"""Index evaluation sets for near-duplicate search (a Beam job): one index, many sets.

Input per set: image folders (recursive), globs or webdataset shards (``.tar``), with an optional
labels TSV (a header; the first column names the file, the label comes from ``label``,
``class_name`` or ``class``, else the second column). Sets are given as ``--name N --images
SRC`` (one set), ``--set NAME=SRC[,SRC...]`` and ``--set-labels NAME=TSV`` (repeatable), or
``--sets FILE`` (YAML or JSON: a list of ``{name, images, labels}``). Every image gets its hash
views and ORB descriptors (:mod:`dedup.features`) and a thumbnail; an unreadable image is kept in
the index as ``unreadable`` with the reason, counted and shown in audit reports, never dropped.
The search structures (vocabulary tree, inverted file, hash tables) are built here, once, so
that an audit worker only maps the files. The output folder is described in :mod:`dedup.store`.

Local:

    wit dedup index --name cifar10 --images ../shared/data/images/eval/cifar10_test_jpg \\
        --labels ../shared/data/images/eval/cifar10_test_jpg/labels.tsv --out out/dedup/cifar10
    wit dedup index --name suite --set cifar10=../shared/data/images/eval/cifar10_test_jpg \\
        --set-labels cifar10=../shared/data/images/eval/cifar10_test_jpg/labels.tsv \\
        --set imagenet-val=../shared/data/images/eval/imagenet_val_metaclip --out out/dedup/suite

Dataflow:

    python -m dedup.index --name imagenet-val --images 'gs://BUCKET/eval/imagenet/val/*.JPEG' \\
        --out gs://BUCKET/dedup/imagenet-val --runner DataflowRunner --project PROJECT \\
        --region us-central1 --temp_location gs://BUCKET/tmp --setup_file ./setup.py
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from dataclasses import dataclass, field
from typing import Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions

from dedup import features, samples, store
from core.beam import TolerantParser, run_job

log = logging.getLogger(__name__)
LABEL_COLUMNS = ("label", "class_name", "class", "label_name")


@dataclass(frozen=True)
class SetSpec:
    name: str
    images: tuple[str, ...]
    labels: str | None = None


@dataclass
class IndexConfig:
    name: str
    sets: list[SetSpec]
    out: str
    features: features.FeatureConfig = field(default_factory=features.FeatureConfig)


def add_arguments(parser) -> None:
    parser.add_argument("--name", default=None, help="the index's name; with --images, its one set's name in reports")
    parser.add_argument("--images", action="append", default=None, metavar="DIR_OR_GLOB",
                        help="image folder, glob or webdataset .tar shards of the --name set; repeatable")
    parser.add_argument("--labels", default=None, metavar="TSV", help="labels: file column first, then a label")
    parser.add_argument("--set", dest="set_specs", action="append", default=None, metavar="NAME=SRC[,SRC...]",
                        help="one more evaluation set in this index; repeatable")
    parser.add_argument("--set-labels", action="append", default=None, metavar="NAME=TSV",
                        help="labels of a --set; repeatable")
    parser.add_argument("--sets", default=None, metavar="FILE",
                        help="YAML or JSON list of {name, images: [DIR_OR_GLOB, ...], labels: TSV}")
    parser.add_argument("--out", default=None, help="index folder (local or gs://)")
    parser.add_argument("--eval-keypoints", type=int, default=features.FeatureConfig.eval_keypoints,
                        help="ORB keypoints kept per evaluation image (~38 bytes each in the index)")


class DedupIndexOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        add_arguments(TolerantParser(parser))


def _pairs(values: list[str] | None, flag: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise ValueError(f"{flag} {value!r}: expected NAME=VALUE")
        pairs.append((name.strip(), rest.strip()))
    return pairs


def read_sets_file(path: str) -> list[SetSpec]:
    """Sets from a YAML or JSON file: a list (or ``{sets: [...]}``) of ``{name, images, labels}``."""
    import yaml  # JSON is YAML too

    with fsspec.open(path, "rt", encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    entries = data.get("sets") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a list of {{name, images, labels}} (or a 'sets' key holding one)")
    specs = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("images"):
            raise ValueError(f"{path}: every set needs a name and images: {entry!r}")
        images = entry["images"] if isinstance(entry["images"], list) else [entry["images"]]
        specs.append(SetSpec(str(entry["name"]), tuple(map(str, images)), entry.get("labels")))
    return specs


def config_from_args(args: argparse.Namespace) -> IndexConfig:
    if args.eval_keypoints < 50:
        raise ValueError("--eval-keypoints below 50 leaves too little to verify a match")
    sets = []
    if args.images:
        if not args.name:
            raise ValueError("--images needs --name (the set's name)")
        sets.append(SetSpec(args.name, tuple(args.images), args.labels))
    elif args.labels:
        raise ValueError("--labels goes with --images; give a --set's labels with --set-labels NAME=TSV")
    labels = dict(_pairs(args.set_labels, "--set-labels"))
    for name, sources in _pairs(args.set_specs, "--set"):
        sets.append(SetSpec(name, tuple(part for part in sources.split(",") if part), labels.pop(name, None)))
    if labels:
        raise ValueError(f"--set-labels for sets not given with --set: {sorted(labels)}")
    if args.sets:
        sets += read_sets_file(args.sets)
    if not sets:
        raise ValueError("no evaluation set: give --name and --images, --set NAME=SRC, or --sets FILE")
    names = [spec.name for spec in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"two sets share a name: {names}")
    return IndexConfig(name=args.name or (names[0] if len(names) == 1 else "eval-suite"), sets=sets, out=args.out, features=features.FeatureConfig(eval_keypoints=args.eval_keypoints))


def read_labels(path: str) -> dict[str, str]:
    with fsspec.open(path, "rt", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if not header or len(header) < 2:
            raise ValueError(f"{path}: a labels TSV needs a header and at least two columns (file, label)")
        lowered = [name.strip().lower() for name in header]
        column = next((lowered.index(name) for name in LABEL_COLUMNS if name in lowered), 1)
        return {row[0]: row[column] for row in reader if len(row) > column}


def thumbnail(data: bytes, side: int = 128) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (side, side))
        image = image.convert("RGB")
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        return buffer.getvalue()


def describe(eval_id: str, data: bytes, source: str, label: str | None, config: features.FeatureConfig,
             eval_set: str | None = None) -> dict:
    """Everything the index keeps about one evaluation image (pure)."""
    record = {"eval_set": eval_set, "eval_id": eval_id, "source": source, "label": label, "width": None,
              "height": None, "status": "ok", "error": None, "thumbnail": None, "hashes": None, "orb": None}
    try:
        full = features.decode(data)
        record["height"], record["width"] = full.shape
        grey = features.scaled(full, config.side)
        record["thumbnail"] = thumbnail(data)
    except features.UnreadableImage as exc:
        record.update(status="unreadable", error=str(exc)[:300])
        return record
    except Exception as exc:  # noqa: BLE001 - OpenCV read it, Pillow's thumbnail did not (hostile data)
        record.update(status="unreadable", error=f"no thumbnail: {type(exc).__name__}: {exc}"[:300])
        return record
    record["hashes"] = features.eval_hashes(grey, config)
    record["orb"] = features.eval_orb(grey, config)
    return record


class DescribeFn(beam.DoFn):
    """(set, eval_id, source) -> records; a ``.tar`` source yields one record per sample."""

    def __init__(self, config: IndexConfig, labels: dict[str, dict[str, str]]) -> None:
        self.config, self.labels = config, labels

    def setup(self) -> None:
        features.cv2.setNumThreads(1)

    def label(self, eval_set: str, eval_id: str) -> str | None:
        labels = self.labels.get(eval_set, {})
        return labels.get(eval_id, labels.get(eval_id.rsplit("/", 1)[-1]))

    def process(self, element: tuple[str, str, str]):
        eval_set, eval_id, source = element
        if not source.lower().endswith(samples.SHARD_SUFFIX):
            try:
                with fsspec.open(source, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                data = b""
                log.warning("cannot read %s: %s", source, exc)
            yield describe(eval_id, data, source, self.label(eval_set, eval_id), self.config.features, eval_set)
            return
        for sample in samples.read_tar(source):
            if isinstance(sample, samples.TarSkipped):  # a link, a directory or an unsafe name: not an image
                beam.metrics.Metrics.counter("dedup_index", "skipped_tar_members").inc()
                log.warning("%s: tar member %r skipped: %s", source, sample.name, sample.reason)
                continue
            if isinstance(sample, samples.TarDamaged):
                yield {"eval_set": eval_set, "eval_id": f"{eval_id}#damaged", "source": source, "label": None,
                       "width": None, "height": None, "status": "unreadable",
                       "error": f"damaged tar: {sample.error}", "thumbnail": None}
                continue
            found = sample.image()
            member_id = f"{eval_id}/{sample.key}"
            text = (sample.get("cls") or sample.get("txt") or b"").decode("utf-8", "replace").strip()
            label = self.label(eval_set, sample.key) or text or None
            yield describe(member_id, found[1] if found else b"", f"{source}#{found[0] if found else sample.key}",
                           label, self.config.features, eval_set)


def write_index(records: list[dict], config: IndexConfig) -> dict:
    unreadable = [record["eval_id"] for record in records if record["status"] != "ok"]
    if len(unreadable) == len(records):
        raise store.IndexError_(f"index {config.name!r}: none of {len(records)} images could be read")
    if unreadable:
        log.warning("%d unreadable images listed in the index, e.g. %s", len(unreadable), unreadable[:3])
    index = store.assemble(config.name, config.features, records)
    summary = store.save(index, config.out)
    log.info("index %s: %s", config.name, summary["counts"])
    return summary


def build_pipeline(pipeline, config: IndexConfig) -> None:
    listed = []
    for spec in config.sets:
        found = [(spec.name, *entry) for source in spec.images for entry in samples.list_images(source)]
        if not found:
            raise ValueError(f"set {spec.name!r}: no images under {list(spec.images)}")
        listed += found
    labels = {spec.name: read_labels(spec.labels) for spec in config.sets if spec.labels}
    (pipeline
     | "Images" >> beam.Create(listed)
     | "Spread" >> beam.Reshuffle()
     | "Describe" >> beam.ParDo(DescribeFn(config, labels))
     | "Collect" >> beam.combiners.ToList()
     | "Write" >> beam.Map(write_index, config))


def run(argv: Sequence[str] | None = None) -> int:
    config = run_job(argv, prog="wit dedup index", doc=__doc__, add_arguments=add_arguments,
                     required=["out"], config_from_args=config_from_args,
                     build_pipeline=build_pipeline)
    log.info("index written to %s", config.out)
    return 0


if __name__ == "__main__":
    import importlib

    from core.logs import setup_logging

    setup_logging()
    sys.exit(importlib.import_module("dedup.index").run())
