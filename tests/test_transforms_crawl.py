"""The crawl job's composite transforms after the downloads: SettleRepeats and TopHosts on shards
written to a temporary folder (beam.Create + assert_that)."""

from __future__ import annotations

import hashlib
import io

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from core import shards as shard_format
from core.beam import make_pipeline
from pipeline import shards
from pipeline.crawl import SettleRepeats, TopHosts


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def sample(key: str, url: str, data: bytes) -> shards.Sample:
    return shards.Sample(key=key, url=url, caption="a photo", status="success", image=data, width=8, height=8,
                         sha256=hashlib.sha256(data).hexdigest())


def test_settle_repeats_keeps_an_image_at_its_smallest_key_and_top_hosts_counts_urls(beam_options, tmp_path):
    red, blue = jpeg((200, 0, 0)), jpeg((0, 0, 200))
    out = str(tmp_path)
    written = [shards.write_shard(out, 0, [sample("000000000", "https://a.example/1.jpg", red),
                                           sample("000000001", "https://b.example/2.jpg", blue)], "jpg"),
               shards.write_shard(out, 1, [sample("000010000", "https://a.example/3.jpg", red)], "jpg")]
    hashes = [(hashlib.sha256(red).hexdigest(), "000000000"), (hashlib.sha256(blue).hexdigest(), "000000001"),
              (hashlib.sha256(red).hexdigest(), "000010000")]
    with make_pipeline(beam_options) as pipeline:
        crawled = {"stats": pipeline | "Stats" >> beam.Create(written),
                   "hashes": pipeline | "Hashes" >> beam.Create(hashes)}
        settled = crawled | SettleRepeats(out)
        assert_that(settled | beam.Map(lambda s: (s["shard"], s["successes"], s.get("cross_shard_duplicates", 0))),
                    equal_to([(0, 2, 0), (1, 0, 1)]), label="settled")
        assert_that(settled | TopHosts(out),
                    equal_to([[("a.example", (2, 1)), ("b.example", (1, 1))]]), label="hosts")
    status = shard_format.read_status(out, 1)
    assert list(zip(status["key"], status["status"])) == [("000010000", "duplicate")]
