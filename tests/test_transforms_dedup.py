"""The dedup jobs' composite transforms (DescribeImages, AuditShards) on small inputs
(beam.Create + assert_that), real photos from the shared data."""

from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from core.beam import make_pipeline
from core.config import parse_config
from dedup import quality, store
from dedup.audit import AuditConfig, AuditShards
from dedup.index import DescribeImages, IndexConfig
from dedup.store import load_indexes
from pipeline import shards
from tests.conftest import require_shared_data


def photos(count: int):
    return sorted((require_shared_data() / "images/photos/imagenet_sample").glob("*.JPEG"))[:count]


def test_describe_images_describes_each_image_and_keeps_unreadable_ones(beam_options, tmp_path):
    first, second = photos(2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    config = IndexConfig(out=str(tmp_path / "ix"), name="s", images=[str(first.parent)])
    labels = {"s": {first.name: "tench"}}
    with make_pipeline(beam_options) as pipeline:
        records = (pipeline
                   | beam.Create([("s", first.name, str(first)), ("s", second.name, str(second)),
                                  ("s", "broken.jpg", str(broken))])
                   | DescribeImages(config, labels))
        assert_that(records | beam.Map(lambda r: (r["eval_id"], r["status"], r["label"], r["hashes"] is not None)),
                    equal_to([(first.name, "ok", "tench", True), (second.name, "ok", None, True),
                              ("broken.jpg", "unreadable", None, False)]))


def test_audit_shards_finds_the_evaluation_image_in_a_shard(beam_options, tmp_path):
    evaluation, other = photos(2)
    store.save(quality.index_photos("eval", [evaluation]), str(tmp_path / "index"))
    data = [evaluation.read_bytes(), other.read_bytes()]
    shards.write_shard(str(tmp_path / "shards"), 0, [
        shards.Sample(key=f"00000000{i}", url=f"https://x.example/{i}.jpg", caption="c", status="success",
                      image=image, sha256=hashlib.sha256(image).hexdigest()) for i, image in enumerate(data)], "jpg")
    config = parse_config(AuditConfig, ["--shards", str(tmp_path / "shards/*.tar"), "--index", str(tmp_path / "index"),
                                        "--out", str(tmp_path / "audit")])
    with make_pipeline(beam_options) as pipeline:
        indexes = beam.pvalue.AsSingleton(pipeline | "Paths" >> beam.Create([config.indexes])
                                          | "Load" >> beam.Map(load_indexes))
        results = (pipeline | "Shards" >> beam.Create([str(tmp_path / "shards/00000.tar")])
                   | AuditShards(config, indexes))
        assert_that(results | beam.Map(lambda r: (r["shard"], r["samples"], r["duplicates"],
                                                  sorted(r["hits"].get("eval", ())))),
                    equal_to([("00000.tar", 2, 1, [evaluation.name])]))
