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

import csv
import io
import logging
from dataclasses import dataclass, field
from typing import Sequence

import apache_beam as beam
import fsspec

from core import shards
from core import config as config_flags
from core.beam import run_job
from core.config import group, opt, option
from dedup import features, samples, store

log = logging.getLogger(__name__)
LABEL_COLUMNS = ("label", "class_name", "class", "label_name")


@dataclass(frozen=True)
class SetSpec:
    name: str
    images: tuple[str, ...]
    labels: str | None = None


@dataclass
class IndexConfig:
    """The flags name the sets three ways (``--name``/``--images``, ``--set``, ``--sets``);
    ``sets`` and the index's ``name`` are settled from them in ``__post_init__``."""

    out: str = option(gcs=True, label="Index folder", help="index folder (local or gs://)")
    name: str | None = option(None, help="the index's name; with --images, its one set's name in reports")
    images: list[str] = option(default_factory=list, metavar="DIR_OR_GLOB", gcs=True,
                               help="image folder, glob or webdataset .tar shards of the --name set; repeatable")
    labels: str | None = option(None, metavar="TSV", help="labels: file column first, then a label")
    set_specs: list[str] = option(default_factory=list, flag="--set", metavar="NAME=SRC[,SRC...]",
                                  help="one more evaluation set in this index; repeatable")
    set_labels: list[str] = option(default_factory=list, metavar="NAME=TSV", help="labels of a --set; repeatable")
    sets_file: str | None = option(None, flag="--sets", metavar="FILE",
                                   help="YAML or JSON list of {name, images: [DIR_OR_GLOB, ...], labels: TSV}")
    features: features.FeatureConfig = group(
        features.FeatureConfig,
        eval_keypoints=opt("ORB keypoints kept per evaluation image (~38 bytes each in the index)"))
    sets: list[SetSpec] = field(default_factory=list)  # given directly, or settled from the flags

    def __post_init__(self) -> None:
        if self.features.eval_keypoints < 50:
            raise ValueError("--eval-keypoints below 50 leaves too little to verify a match")
        self.sets = list(self.sets) + settle_sets(self)
        if not self.sets:
            raise ValueError("no evaluation set: give --name and --images, --set NAME=SRC, or --sets FILE")
        names = [spec.name for spec in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"two sets share a name: {names}")
        self.name = self.name or (names[0] if len(names) == 1 else "eval-suite")


def add_arguments(parser) -> None:
    config_flags.add_arguments(parser, IndexConfig)


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


def settle_sets(config: IndexConfig) -> list[SetSpec]:
    """The sets named by the flags: ``--name``/``--images``, then ``--set``s, then ``--sets``."""
    sets = []
    if config.images:
        if not config.name:
            raise ValueError("--images needs --name (the set's name)")
        sets.append(SetSpec(config.name, tuple(config.images), config.labels))
    elif config.labels:
        raise ValueError("--labels goes with --images; give a --set's labels with --set-labels NAME=TSV")
    labels = dict(_pairs(config.set_labels, "--set-labels"))
    for name, sources in _pairs(config.set_specs, "--set"):
        sets.append(SetSpec(name, tuple(part for part in sources.split(",") if part), labels.pop(name, None)))
    if labels:
        raise ValueError(f"--set-labels for sets not given with --set: {sorted(labels)}")
    if config.sets_file:
        sets += read_sets_file(config.sets_file)
    return sets


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
        # a JPEG decoded straight at the smallest DCT scale that still covers the thumbnail
        # (a crawled 256 px image at half size): a third of the cost of a full decode and resize
        scale = side / max(image.size)
        image.draft("RGB", (max(1, int(image.width * scale)), max(1, int(image.height * scale))))
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
        if not source.lower().endswith(shards.SHARD_SUFFIX):
            try:
                with fsspec.open(source, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                data = b""
                log.warning("cannot read %s: %s", source, exc)
            yield describe(eval_id, data, source, self.label(eval_set, eval_id), self.config.features, eval_set)
            return
        for sample in shards.read_tar(source):
            if isinstance(sample, shards.TarSkipped):  # a link, a directory or an unsafe name: not an image
                beam.metrics.Metrics.counter("dedup_index", "skipped_tar_members").inc()
                log.warning("%s: tar member %r skipped: %s", source, sample.name, sample.reason)
                continue
            if isinstance(sample, shards.TarDamaged):
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


class DescribeImages(beam.PTransform):
    """Evaluation images spread over the workers and described (hashes, ORB, thumbnail).

    PCollection[(set, eval_id, source)] -> PCollection[index record dict] (a ``.tar`` source
    gives one record per sample)"""

    def __init__(self, config: IndexConfig, labels: dict[str, dict[str, str]]) -> None:
        super().__init__()
        self.config, self.labels = config, labels

    def expand(self, images):
        return (images
                | "Spread" >> beam.Reshuffle()
                | "Describe" >> beam.ParDo(DescribeFn(self.config, self.labels)))


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
     | "DescribeImages" >> DescribeImages(config, labels)
     | "Collect" >> beam.combiners.ToList()
     | "Write" >> beam.Map(write_index, config))


def run(argv: Sequence[str] | None = None) -> int:
    config = run_job(argv, prog="wit dedup index", doc=__doc__, config=IndexConfig, build_pipeline=build_pipeline)
    log.info("index written to %s", config.out)
    return 0


if __name__ == "__main__":
    from core.beam import job_main

    job_main("dedup.index")
