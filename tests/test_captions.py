"""Captions that are not text: made text once where url lists are read, never a crash downstream.

The property test throws arbitrary values at :func:`pipeline.captions.caption_text`; the shard
writer takes samples whose fields hold numbers, bytes and surrogates; the crawl runs on url
lists (jsonl, csv) whose captions are numbers, nulls and bytes that are not UTF-8, against the
loopback web.
"""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import crawl, shards
from pipeline.candidates import MissingColumn
from pipeline.captions import NOT_TEXT, NOT_UTF8, caption_text

FAST = ["--timeout", "3", "--retries", "0", "--threads-per-worker", "4", "--allow-private-addresses"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**4000, max_value=10**5000),
                    st.floats(allow_nan=True, allow_infinity=True), st.decimals(), st.fractions(), st.complex_numbers(),
                    st.text(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.binary(),
                    st.binary().map(bytearray))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner),
                                                      st.tuples(inner, inner)), max_leaves=10)


@settings(max_examples=400, deadline=None)
@given(values)
def test_any_value_becomes_writable_text(value):
    text, reason = caption_text(value)
    assert type(text) is str and reason in (None, NOT_TEXT, NOT_UTF8)
    text.encode("utf-8")  # what every writer downstream does
    if isinstance(value, str) and reason is None:
        assert text == value  # valid text passes untouched


def test_caption_text_rules():
    assert caption_text("a dog") == ("a dog", None)
    assert caption_text(None) == ("", None)
    assert caption_text(b"caf\xc3\xa9") == ("café", None)
    assert caption_text(b"caf\xe9") == ("caf\ufffd", NOT_UTF8)
    assert caption_text("caf\udce9") == ("caf\ufffd", NOT_UTF8)  # surrogateescape'd byte
    assert caption_text(42) == ("42", NOT_TEXT) and caption_text(1.5) == ("1.5", NOT_TEXT)
    assert caption_text(float("nan")) == ("", NOT_TEXT) and caption_text(True) == ("true", NOT_TEXT)
    assert caption_text({"en": "dog"}) == ("", NOT_TEXT) and caption_text(["dog"]) == ("", NOT_TEXT)


def test_shard_writer_takes_fields_that_are_not_text(tmp_path):
    odd = [shards.Sample(key="000000000", url="https://x.org/\ud800", caption=42, status="success", image=b"jpg",
                         uid=7, entry_ids=["3", 4]),
           shards.Sample(key="000000001", url=b"https://x.org/b", caption=b"caf\xe9", status="success", image=b"jpg",
                         entry_ids="not a list"),
           shards.Sample(key="000000002", url="https://x.org/c", caption="half \ud800", status="failed_to_download",
                         error_message=b"\xff bytes", final_url=5, entry_ids=[2**40])]
    stats = shards.write_shard(str(tmp_path), 0, odd, "jpg")
    assert stats["count"] == 3 and stats["successes"] == 2
    with tarfile.open(tmp_path / "00000.tar") as tar:
        texts = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if not m.name.endswith(".jpg")}
    assert texts["000000000.txt"] == "42" and texts["000000001.txt"] == "caf\ufffd"
    assert json.loads(texts["000000000.json"])["entry_ids"] == [3, 4]
    status = pq.read_table(tmp_path / "00000.parquet").to_pylist()
    assert [row["caption"] for row in status] == ["42", "caf\ufffd", "half \ufffd"]
    assert [row["entry_ids"] for row in status] == [[3, 4], None, None] and status[0]["uid"] == "7"


# -- the crawl -------------------------------------------------------------------------------------
def jpeg(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def crawled(out) -> dict[str, dict]:
    rows = pq.read_table(out / "00000.parquet").to_pylist()
    return {row["url"]: row for row in rows}


def test_crawl_url_lists_with_captions_that_are_not_text(fake_web, tmp_path):
    urls = [fake_web.add(f"/img/{i}.jpg", jpeg(i), "image/jpeg") for i in range(6)]
    lines = [{"url": urls[0], "caption": "a red car"}, {"url": urls[1], "caption": 1234},
             {"url": urls[2], "caption": None}, {"url": urls[3], "caption": {"nested": ["x"]}}]
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    assert crawl.run(["--urls", str(jsonl), "--out", str(tmp_path / "a"), *FAST]) == 0
    rows = crawled(tmp_path / "a")
    assert [rows[u]["caption"] for u in urls[:4]] == ["a red car", "1234", "", ""]
    assert all(rows[u]["status"] == "success" for u in urls[:4])
    assert rows[""]["error_message"] == "missing url"  # the broken line kept its place
    with tarfile.open(tmp_path / "a" / "00000.tar") as tar:
        assert tar.extractfile("000000001.txt").read() == b"1234"

    csv = tmp_path / "list.csv"  # Latin-1 bytes in a caption; a ragged row in the middle
    csv.write_bytes(f"url,caption\n{urls[4]},caf\xe9 au lait\n{urls[0]},a,b,c\n{urls[5]},plain\n".encode("latin-1"))
    assert crawl.run(["--urls", str(csv), "--out", str(tmp_path / "b"), *FAST]) == 0
    rows = crawled(tmp_path / "b")
    assert rows[urls[4]]["caption"] == "caf\ufffd au lait" and rows[urls[4]]["status"] == "success"
    assert rows[urls[0]]["caption"] == "a" and rows[urls[5]]["caption"] == "plain"


def test_crawl_caption_column_named_but_absent_is_an_error(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("url,caption\nhttps://x.org/1.jpg,a dog\n")
    task = crawl.ShardTask(0, str(path), 0, 1)
    with pytest.raises(MissingColumn, match=r"no column 'TEXT' \(columns: \['url', 'caption'\]\)"):
        crawl.shard_rows(task, crawl.CrawlConfig(urls=[str(path)], out=str(tmp_path), caption_col="TEXT"))
    rows = crawl.shard_rows(task, crawl.CrawlConfig(urls=[str(path)], out=str(tmp_path)))
    assert rows == [{"url": "https://x.org/1.jpg", "caption": "a dog", "uid": None, "entry_ids": None}]
