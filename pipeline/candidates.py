"""Candidate (image url, text) pairs from web crawls and url lists, read through fsspec.

Each reader yields :class:`Raw` records (``url`` and ``caption`` as found, before cleaning;
``page_url`` where the pair came from a page) and :class:`Bad` records for input it could not
read (a malformed WAT/WARC record, a bad gzip member, a non-UTF-8 line, a row without the url
column). Nothing is dropped silently: the job counts and writes every ``Bad`` to ``rejects/``.

Formats (``--pool-format``; ``auto`` goes by the file name):

- ``wat``: Common Crawl WAT metadata records; ``IMG@/src`` links with their ``alt`` (else
  ``title``) text from ``Envelope.Payload-Metadata.HTTP-Response-Metadata.HTML-Metadata``;
  relative urls joined against the page's ``<base href>`` (itself joined against the record's
  ``WARC-Target-URI``).
- ``warc``: HTML responses parsed with a real HTML parser (selectolax/lexbor) for
  ``<img src alt title>`` and ``<base href>``.
- ``parquet``, ``csv``, ``tsv``, ``jsonl``: url lists as img2dataset reads them (``--url-col``,
  ``--caption-col``); a ``tsv`` whose first row holds a url in its second field is read as
  CC3M's header-less ``caption<TAB>url``.
- ``wit``: the WIT dataset's TSV (``image_url`` with its reference and alt-text descriptions).
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urljoin

import fsspec

FORMATS = ("wat", "warc", "parquet", "csv", "tsv", "jsonl", "wit")


@dataclass(frozen=True)
class Raw:
    url: object
    caption: object
    source: str  # file name and position, for the rejects and the report
    page_url: str | None = None


@dataclass(frozen=True)
class Bad:
    source: str
    reason: str  # bad_record, bad_gzip, bad_encoding, missing_column, unreadable_file
    detail: str


@dataclass(frozen=True)
class ReaderConfig:
    pool_format: str = "auto"
    url_col: str = "url"
    caption_col: str = "caption"


def detect_format(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".bz2", ".zst"):
        if name.endswith(suffix) and not name.endswith((".warc.gz", ".wat.gz")):
            name = name[: -len(suffix)]
    if name.endswith(".wat.gz") or name.endswith(".wat"):
        return "wat"
    if name.endswith(".warc.gz") or name.endswith(".warc"):
        return "warc"
    for fmt, suffixes in (("parquet", (".parquet",)), ("csv", (".csv",)), ("jsonl", (".jsonl", ".json")),
                          ("tsv", (".tsv", ".txt"))):
        if name.endswith(suffixes):
            return "wit" if fmt == "tsv" and name.startswith("wit_") else fmt
    raise ValueError(f"cannot tell the format of {path!r}; pass --pool-format ({', '.join(FORMATS)})")


# -- Common Crawl -------------------------------------------------------------------------------
def _html_metadata(record_json: dict) -> tuple[str | None, dict | None]:
    envelope = record_json.get("Envelope", {})
    target = envelope.get("WARC-Header-Metadata", {}).get("WARC-Target-URI")
    response = envelope.get("Payload-Metadata", {}).get("HTTP-Response-Metadata", {})
    return target, response.get("HTML-Metadata")


def page_base(target: str, base_href: str | None) -> str:
    return urljoin(target, base_href) if base_href else target


def wat_pairs(record_json: dict, source: str) -> Iterator[Raw]:
    """The (img url, alt text) pairs of one WAT metadata record (the documented JSON layout)."""
    target, metadata = _html_metadata(record_json)
    if not target or not metadata:
        return
    base = page_base(target, (metadata.get("Head") or {}).get("Base"))
    for link in metadata.get("Links") or []:
        if link.get("path") != "IMG@/src" or not link.get("url"):
            continue
        text = link.get("alt") or link.get("title") or None
        yield Raw(urljoin(base, link["url"].strip()), text, source, target)


def html_pairs(page: bytes | str, target: str, source: str) -> Iterator[Raw]:
    """The (img url, alt text) pairs of one HTML page."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(page if isinstance(page, str) else page.decode("utf-8", errors="replace"))
    base_node = tree.css_first("base[href]")
    base = page_base(target, base_node.attributes.get("href") if base_node else None)
    for node in tree.css("img[src]"):
        src = (node.attributes.get("src") or "").strip()
        if not src:
            continue
        text = node.attributes.get("alt") or node.attributes.get("title") or None
        yield Raw(urljoin(base, src), text, source, target)


def _iter_warc(path: str, rec_type: str) -> Iterator[tuple[object, bytes | Exception, int]]:
    """(record, payload or the error reading it, offset) for records of ``rec_type``.

    The payload is read before the offset is asked for: warcio's ``get_record_offset`` reads
    the record to its end, which would leave the content stream empty."""
    from warcio.archiveiterator import ArchiveIterator

    with fsspec.open(path, "rb") as handle:
        iterator = ArchiveIterator(handle, arc2warc=True)
        for record in iterator:
            if record.rec_type != rec_type:
                continue
            try:
                stream = record.content_stream() if record.http_headers is not None else record.raw_stream
                payload: bytes | Exception = stream.read()
            except (OSError, zlib.error, ValueError) as exc:
                payload = exc
            yield record, payload, iterator.get_record_offset()


def gzip_damage(path: str) -> tuple[int, str] | None:
    """(offset of the damaged member, reason) when a multi-member gzip file is corrupt or
    truncated, else None. warcio stops quietly at a truncated member, so a cut file would
    otherwise lose its tail (or yield half a page) without a word."""
    member_start = consumed = 0
    decompressor = zlib.decompressobj(31)
    with fsspec.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            data = chunk
            while data:
                try:
                    decompressor.decompress(data)
                except zlib.error as exc:
                    return member_start, f"bad gzip data in the member at byte {member_start}: {exc}"
                if decompressor.eof:
                    consumed += len(data) - len(decompressor.unused_data)
                    member_start, data = consumed, decompressor.unused_data
                    decompressor = zlib.decompressobj(31)
                else:
                    consumed += len(data)
                    data = b""
    if consumed > member_start:
        return member_start, f"gzip member at byte {member_start} is truncated (file ends at {consumed})"
    return None


def _records(path: str, rec_type: str) -> Iterator[tuple[object, bytes | Exception, int] | Bad]:
    """Records of intact gzip members only, then a Bad for the damaged member, if any."""
    damage = gzip_damage(path) if path.endswith(".gz") else None
    limit = damage[0] if damage else None
    try:
        for record, payload, offset in _iter_warc(path, rec_type):
            if limit is not None and offset >= limit:
                break
            yield record, payload, offset
    except Exception:  # warcio failing on the damaged member found above: reported below
        if damage is None:
            raise
    if damage:
        yield Bad(f"{path}@{damage[0]}", "bad_gzip", damage[1])


def _read_archive(path: str, rec_type: str, pairs_of) -> Iterator[Raw | Bad]:
    """Records of one type through ``pairs_of(record, payload, source)``; damage becomes Bad."""
    try:
        for item in _records(path, rec_type):
            if isinstance(item, Bad):
                yield item
                continue
            record, payload, offset = item
            source = f"{path}@{offset}"
            if isinstance(payload, Exception):
                yield Bad(source, "bad_record", f"record payload unreadable: {payload}")
                continue
            yield from pairs_of(record, payload, source)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        yield Bad(path, "bad_gzip", f"reading stopped: {exc}")


def _wat_record_pairs(record, payload: bytes, source: str) -> Iterator[Raw | Bad]:
    if "json" not in (record.rec_headers.get_header("Content-Type") or ""):
        return
    try:
        parsed = json.loads(payload)
    except ValueError as exc:
        yield Bad(source, "bad_record", f"WAT JSON unreadable: {exc}")
        return
    yield from wat_pairs(parsed, source)


def _warc_record_pairs(record, payload: bytes, source: str) -> Iterator[Raw | Bad]:
    if record.http_headers is None or "html" not in (record.http_headers.get_header("Content-Type") or "").lower():
        return
    yield from html_pairs(payload, record.rec_headers.get_header("WARC-Target-URI"), source)


def read_wat(path: str) -> Iterator[Raw | Bad]:
    return _read_archive(path, "metadata", _wat_record_pairs)


def read_warc(path: str) -> Iterator[Raw | Bad]:
    return _read_archive(path, "response", _warc_record_pairs)


# -- url lists ----------------------------------------------------------------------------------
def _resolve_column(names: list[str], wanted: str) -> str | None:
    if wanted in names:
        return wanted
    folded = {name.lower(): name for name in names}
    return folded.get(wanted.lower())


def read_parquet(path: str, config: ReaderConfig) -> Iterator[Raw | Bad]:
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        url_col = _resolve_column(names, config.url_col)
        caption_col = _resolve_column(names, config.caption_col)
        if url_col is None:
            yield Bad(path, "missing_column", f"no url column {config.url_col!r} (columns: {names})")
            return
        columns = [url_col] + ([caption_col] if caption_col else [])
        row = 0
        for batch in parquet.iter_batches(batch_size=8192, columns=columns):
            urls = batch.column(0).to_pylist()
            captions = batch.column(1).to_pylist() if caption_col else [None] * len(urls)
            for url, caption in zip(urls, captions):
                yield Raw(url, caption, f"{path}#{row}")
                row += 1


def _per_line(path: str, parse: Callable[[str, str], Iterator[Raw | Bad]]) -> Iterator[Raw | Bad]:
    """``parse(source, line)`` over the UTF-8 lines of a (possibly compressed) text file; a Bad
    record for each line that is not UTF-8. ``parse`` raises ``_Stop`` when the header makes the file unreadable."""
    with fsspec.open(path, "rb", compression="infer") as handle:
        for number, raw in enumerate(handle, 1):
            source = f"{path}:{number}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield Bad(source, "bad_encoding", f"not UTF-8: {raw[:80]!r}")
                continue
            if not line.strip():
                continue
            try:
                yield from parse(source, line)
            except _Stop as stop:
                yield Bad(path, "missing_column", str(stop))
                return


class _Stop(Exception):
    """A file whose header makes the rest unreadable (no url column)."""


def _looks_like_url(text: str) -> bool:
    return text.strip().lower().startswith(("http://", "https://"))


class _Delimited:
    """csv/tsv rows with a header, or CC3M's header-less ``caption<TAB>url``."""

    def __init__(self, path: str, config: ReaderConfig, delimiter: str) -> None:
        self.path, self.config, self.delimiter = path, config, delimiter
        self.url_index: int | None = None
        self.caption_index: int | None = None

    def __call__(self, source: str, line: str) -> Iterator[Raw | Bad]:
        fields = next(csv.reader([line], delimiter=self.delimiter))
        if self.url_index is None:
            if self.delimiter == "\t" and len(fields) >= 2 and _looks_like_url(fields[1]) and not _looks_like_url(fields[0]):
                self.caption_index, self.url_index = 0, 1  # CC3M: caption<TAB>url, no header
            else:
                url_name = _resolve_column(fields, self.config.url_col)
                caption_name = _resolve_column(fields, self.config.caption_col)
                if url_name is None:
                    raise _Stop(f"no url column {self.config.url_col!r} (header: {fields})")
                self.url_index = fields.index(url_name)
                self.caption_index = fields.index(caption_name) if caption_name else None
                return
        if self.url_index >= len(fields):
            yield Bad(source, "bad_record", f"{len(fields)} fields, url expected in field {self.url_index + 1}")
            return
        index = self.caption_index
        yield Raw(fields[self.url_index], fields[index] if index is not None and index < len(fields) else None, source)


def _jsonl(config: ReaderConfig, path: str):
    def parse(source: str, line: str) -> Iterator[Raw | Bad]:
        try:
            record = json.loads(line)
        except ValueError as exc:
            yield Bad(source, "bad_record", f"JSON does not parse: {exc}")
            return
        if not isinstance(record, dict):
            yield Bad(source, "bad_record", "a JSON line that is not an object")
            return
        url_key = _resolve_column(list(record), config.url_col)
        caption_key = _resolve_column(list(record), config.caption_col)
        yield Raw(record.get(url_key) if url_key else None, record.get(caption_key) if caption_key else None, source)

    return parse


WIT_CAPTIONS = ("caption_reference_description", "caption_alt_text_description")


class _Wit:
    """WIT TSV: one pair per non-empty reference or alt-text description of an image."""

    def __init__(self) -> None:
        self.header: list[str] | None = None

    def __call__(self, source: str, line: str) -> Iterator[Raw | Bad]:
        fields = line.split("\t")
        if self.header is None:
            if "image_url" not in fields:
                raise _Stop(f"not a WIT TSV: no image_url column (header: {fields[:8]})")
            self.header = fields
            return
        row = dict(zip(self.header, fields))
        for column in WIT_CAPTIONS:
            if row.get(column, "").strip():
                yield Raw(row.get("image_url"), row[column], f"{source}:{column}", row.get("page_url"))


def read_delimited(path: str, config: ReaderConfig, delimiter: str) -> Iterator[Raw | Bad]:
    return _per_line(path, _Delimited(path, config, delimiter))


def read_jsonl(path: str, config: ReaderConfig) -> Iterator[Raw | Bad]:
    return _per_line(path, _jsonl(config, path))


def read_wit(path: str) -> Iterator[Raw | Bad]:
    return _per_line(path, _Wit())


def read(path: str, config: ReaderConfig) -> Iterator[Raw | Bad]:
    fmt = detect_format(path) if config.pool_format == "auto" else config.pool_format
    try:
        if fmt == "wat":
            yield from read_wat(path)
        elif fmt == "warc":
            yield from read_warc(path)
        elif fmt == "parquet":
            yield from read_parquet(path, config)
        elif fmt == "csv":
            yield from read_delimited(path, config, ",")
        elif fmt == "tsv":
            yield from read_delimited(path, config, "\t")
        elif fmt == "jsonl":
            yield from read_jsonl(path, config)
        elif fmt == "wit":
            yield from read_wit(path)
        else:
            raise ValueError(f"unknown --pool-format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield Bad(path, "unreadable_file", str(exc))
    except Exception as exc:  # pyarrow and csv errors: the file is recorded, the job goes on
        if isinstance(exc, ValueError) and "--pool-format" in str(exc):
            raise
        yield Bad(path, "unreadable_file", f"{type(exc).__name__}: {exc}"[:500])


__all__ = ["Raw", "Bad", "ReaderConfig", "read", "detect_format", "wat_pairs", "html_pairs", "FORMATS"]
