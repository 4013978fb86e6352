"""Candidate readers against hostile input: a bad record costs that record, never the rest of its file.

Each format gets a file with a bad record in the middle (a link that does not parse, a record
warcio cannot read, a damaged parquet row group, a field over the csv limit, a JSON line nested
too deep); the records after it must be read. Named columns a file lacks are errors that name
the columns it has.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import candidates
from pipeline.candidates import Bad, MissingColumn, Raw, ReaderConfig


def read_all(path: Path, config: ReaderConfig | None = None) -> tuple[list[Raw], list[Bad]]:
    records = list(candidates.read(str(path), config or ReaderConfig()))
    return [r for r in records if isinstance(r, Raw)], [r for r in records if isinstance(r, Bad)]


def pairs(raws: list[Raw]) -> list[tuple[str, str]]:
    return [(r.url, r.caption) for r in raws]


# -- archives ----------------------------------------------------------------------------------------
def wat_payload(target: str, links: object) -> bytes:
    return json.dumps({"Envelope": {
        "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": target},
        "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Head": {}, "Links": links}}}}}).encode()


def warc_member(kind: str, uri: str, payload: bytes) -> bytes:
    """One gzip member holding one WARC record (``metadata`` JSON or an HTML ``response``)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    if kind == "response":
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        record = writer.create_warc_record(uri, "response", payload=io.BytesIO(payload), http_headers=headers)
    else:
        record = writer.create_warc_record(uri, "metadata", payload=io.BytesIO(payload),
                                           warc_content_type="application/json")
    writer.write_record(record)
    return buffer.getvalue()


def garbage_member() -> bytes:
    """A gzip member that decompresses fine but holds no WARC record."""
    return gzip.compress(b"XXXX/1.0\r\nWARC-Type: metadata\r\nContent-Length: 4\r\n\r\nnope\r\n\r\n")


def link(url: str, alt: object = None) -> dict:
    return {"path": "IMG@/src", "url": url, **({"alt": alt} if alt is not None else {})}


def test_wat_bad_link_costs_the_link_only(tmp_path):
    members = [
        warc_member("metadata", "https://e.org/0", wat_payload("https://a.org/p/", [link("1.jpg", "first")])),
        warc_member("metadata", "https://e.org/1", wat_payload("https://b.org/p/", [
            link("http://[broken/x.jpg", "broken"), link("2.jpg", "second on the page")])),
        warc_member("metadata", "https://e.org/2", wat_payload("https://c.org/", 5)),  # Links of the wrong type
        garbage_member(),
        warc_member("metadata", "https://e.org/3", wat_payload("https://d.org/", [link("/3.jpg", "after")])),
    ]
    path = tmp_path / "hostile.wat.gz"
    path.write_bytes(b"".join(members))
    raws, bads = read_all(path)
    assert pairs(raws) == [("https://a.org/p/1.jpg", "first"), ("https://b.org/p/2.jpg", "second on the page"),
                           ("https://d.org/3.jpg", "after")]
    assert [b.reason for b in bads] == ["bad_record"] * 3  # the link, the record, the unparsable member
    assert "http://[broken/x.jpg" in bads[0].detail and "does not parse" in bads[0].detail
    assert bads[2].source == f"{path}@{sum(map(len, members[:3]))}"  # the member that failed, by offset


def test_warc_bad_page_costs_the_page_only(tmp_path):
    pages = [
        b'<html><img src="a.jpg" alt="before"></html>',
        b'<html><base href="http://[broken/"><img src="b.jpg" alt="lost with its base"></html>',
        b'<html><img src="http://[bad/c.jpg" alt="bad link"><img src="/d.jpg" alt="beside it"></html>',
    ]
    members = [warc_member("response", f"https://s{i}.org/x/", page) for i, page in enumerate(pages)]
    members.insert(2, garbage_member())
    members.append(warc_member("response", "https://s9.org/", b'<img src="e.jpg" title="the last">'))
    path = tmp_path / "hostile.warc.gz"
    path.write_bytes(b"".join(members))
    raws, bads = read_all(path)
    assert pairs(raws) == [("https://s0.org/x/a.jpg", "before"), ("https://s2.org/d.jpg", "beside it"),
                           ("https://s9.org/e.jpg", "the last")]
    assert [b.reason for b in bads] == ["bad_record"] * 3


# -- url lists -------------------------------------------------------------------------------------
def test_csv_long_fields_and_bad_rows(tmp_path):
    long_caption = "a dog " * 40_000  # 240,000 characters: over the csv module's 131,072 default
    over_limit = "x" * (candidates.MAX_FIELD_CHARS + 1)
    lines = ["url,caption", "https://x.org/1.jpg,first", f"https://x.org/2.jpg,{long_caption}",
             "https://x.org/3.jpg,broken\rrow", f"https://x.org/4.jpg,{over_limit}", "https://x.org/5.jpg,after"]
    path = tmp_path / "list.csv"
    path.write_text("\n".join(lines) + "\n")
    raws, bads = read_all(path)
    assert pairs(raws) == [("https://x.org/1.jpg", "first"), ("https://x.org/2.jpg", long_caption),
                           ("https://x.org/5.jpg", "after")]
    assert [(b.source, b.reason) for b in bads] == [(f"{path}:4", "bad_record"), (f"{path}:5", "bad_record")]
    assert "field larger than field limit" in bads[1].detail


def test_tsv_bad_row_in_the_middle(tmp_path):
    lines = ["url\tcaption", "https://x.org/1.jpg\tfirst", "https://x.org/2.jpg\tcarriage\rreturn",
             "https://x.org/3.jpg\t" + "long " * 30_000, "https://x.org/4.jpg\tafter"]
    path = tmp_path / "list.tsv"
    path.write_text("\n".join(lines) + "\n")
    raws, bads = read_all(path)
    assert [r.url for r in raws] == ["https://x.org/1.jpg", "https://x.org/3.jpg", "https://x.org/4.jpg"]
    assert [(b.source, b.reason) for b in bads] == [(f"{path}:3", "bad_record")]


def test_jsonl_bad_lines_and_captions_that_are_not_text(tmp_path):
    lines = ['{"url": "https://x.org/1.jpg", "caption": "first"}', "[" * 100_000 + "]" * 100_000,
             '{"url": "https://x.org/2.jpg", "caption": 42}', '{"url": "https://x.org/3.jpg", "caption": null}',
             '{"url": "https://x.org/4.jpg", "caption": "half \\ud800 surrogate"}',
             '{"url": "https://x.org/5.jpg", "caption": {"en": "nested"}}', '{"url": "https://x.org/6.jpg", "caption": "after"}']
    path = tmp_path / "list.jsonl"
    path.write_text("\n".join(lines) + "\n")
    raws, bads = read_all(path)
    assert [(r.url, r.caption, r.caption_issue) for r in raws] == [
        ("https://x.org/1.jpg", "first", None), ("https://x.org/2.jpg", "42", "caption_not_text"),
        ("https://x.org/3.jpg", "", None), ("https://x.org/4.jpg", "half \ufffd surrogate", "caption_not_utf8"),
        ("https://x.org/5.jpg", "", "caption_not_text"), ("https://x.org/6.jpg", "after", None)]
    assert [(b.source, b.reason) for b in bads] == [(f"{path}:2", "bad_record")]
    assert "RecursionError" in bads[0].detail


def write_parquet_with_damaged_row_group(path: Path, rows: int = 30, per_group: int = 10) -> None:
    table = pa.table({"url": [f"https://x.org/{i}.jpg" for i in range(rows)],
                      "caption": [f"caption number {i} " * 4 for i in range(rows)]})
    pq.write_table(table, path, row_group_size=per_group, compression="snappy")
    column = pq.ParquetFile(path).metadata.row_group(1).column(1)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    for index in range(start, start + column.total_compressed_size):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))


def test_parquet_damaged_row_group_costs_that_group(tmp_path):
    path = tmp_path / "list.parquet"
    write_parquet_with_damaged_row_group(path)
    raws, bads = read_all(path)
    assert [r.url for r in raws] == [f"https://x.org/{i}.jpg" for i in list(range(10)) + list(range(20, 30))]
    assert [r.source for r in raws][-10:] == [f"{path}#{i}" for i in range(20, 30)]  # positions stay true
    assert len(bads) == 1 and bads[0].reason == "bad_record" and "rows 10..19" in bads[0].detail


def test_parquet_binary_captions_are_decoded(tmp_path):
    path = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"url": ["https://x.org/1.jpg", "https://x.org/2.jpg"],
                             "caption": pa.array([b"caf\xc3\xa9", b"caf\xe9"], pa.binary())}), path)
    raws, bads = read_all(path)
    assert [(r.caption, r.caption_issue) for r in raws] == [("café", None), ("caf\ufffd", "caption_not_utf8")]
    assert bads == []


# -- columns -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [
    ("list.csv", "url,caption\nhttps://x.org/1.jpg,a dog\n"),
    ("list.tsv", "url\tcaption\nhttps://x.org/1.jpg\ta dog\n"),
    ("list.jsonl", '{"url": "https://x.org/1.jpg", "caption": "a dog"}\n'),
    ("list.parquet", None),
])
def test_a_named_column_the_file_lacks_is_an_error_naming_its_columns(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"url": ["https://x.org/1.jpg"], "caption": ["a dog"]}), path)
    else:
        path.write_text(content)
    with pytest.raises(MissingColumn, match=r"no column 'strict' \(columns: \[.*'url', 'caption'"):
        list(candidates.read(str(path), ReaderConfig(caption_col="strict")))
    with pytest.raises(MissingColumn, match="no column 'link'"):
        list(candidates.read(str(path), ReaderConfig(url_col="link")))
    # the defaults, and names that differ only in case, still read as before
    assert pairs(read_all(path, ReaderConfig(caption_col="CAPTION"))[0]) == [("https://x.org/1.jpg", "a dog")]


def test_default_caption_column_may_be_absent(tmp_path):
    path = tmp_path / "urls.csv"
    path.write_text("url,text\nhttps://x.org/1.jpg,a dog\n")
    raws, bads = read_all(path)
    assert [(r.url, r.caption) for r in raws] == [("https://x.org/1.jpg", "")] and bads == []
