"""Candidate (image url, text) pairs from web crawls and url lists, read through fsspec.

Each reader yields :class:`Raw` records (``url`` and ``caption`` as found, before cleaning;
``page_url`` where the pair came from a page) and :class:`Bad` records for input it could not
read (a malformed WAT/WARC record, a bad gzip member, a non-UTF-8 line, a row without the url
column). Nothing is dropped silently: the job counts and writes every ``Bad`` to ``rejects/``.
A bad record costs that record only: the reader goes on with the next one (the next gzip member
of an archive, the next line of a text file, the next row group of a parquet file). Captions come
out as text (:func:`pipeline.captions.caption_text`), with the reason when they were not.

Columns (``--url-col``, ``--caption-col``) match exactly, else case-insensitively. A file without
the default ``url`` column is one ``missing_column`` record; one without the default ``caption``
column gives pairs without captions. A column named on the command line (anything but those
defaults) that a file lacks is an error (:class:`MissingColumn`), naming the columns it has.

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

import bisect
import csv
import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urljoin

import fsspec

from pipeline.captions import caption_text
from pipeline.clean import MAX_CAPTION_CHARS_LIMIT, MAX_URL_CHARS

FORMATS = ("wat", "warc", "parquet", "csv", "tsv", "jsonl", "wit")
DEFAULT_URL_COL, DEFAULT_CAPTION_COL = "url", "caption"
# The longest csv/tsv field read; above any caption cap (--max-caption-chars) a run may set, so a
# long caption reaches cleaning (caption_too_long, counted) instead of being lost by the reader.
MAX_FIELD_CHARS = max(MAX_CAPTION_CHARS_LIMIT, MAX_URL_CHARS)


@dataclass(frozen=True)
class Raw:
    url: object
    caption: str  # always text: see caption_issue
    source: str  # file name and position, for the rejects and the report
    page_url: str | None = None
    caption_issue: str | None = None  # why the caption found was not text (caption_not_text, ...)


def make_raw(url: object, caption: object, source: str, page_url: str | None = None) -> Raw:
    """A pair with its caption made text once, here, where it was read."""
    text, issue = caption_text(caption)
    return Raw(url, text, source, page_url, issue)


@dataclass(frozen=True)
class Bad:
    source: str
    reason: str  # bad_record, bad_gzip, bad_encoding, missing_column, unreadable_file
    detail: str


@dataclass(frozen=True)
class ReaderConfig:
    pool_format: str = "auto"
    url_col: str = DEFAULT_URL_COL
    caption_col: str = DEFAULT_CAPTION_COL


class MissingColumn(ValueError):
    """A column named on the command line is not in an input file: the run's configuration is
    wrong, so the job stops (a pool read with the wrong column would be dropped whole)."""


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


def image_pair(base: str, src: object, text: object, source: str, page_url: str) -> Raw | Bad:
    """One image link joined against the page's base; a link that does not parse
    (``http://[broken/x.jpg``) is a bad record of its own, not the end of the page."""
    if not isinstance(src, str):
        return Bad(source, "bad_record", f"image url is not text: {type(src).__name__}")
    try:
        url = urljoin(base, src.strip())
    except ValueError as exc:
        return Bad(source, "bad_record", f"image url {src[:200]!r} does not parse: {exc}")
    return make_raw(url, text, source, page_url)


def wat_pairs(record_json: dict, source: str) -> Iterator[Raw | Bad]:
    """The (img url, alt text) pairs of one WAT metadata record (the documented JSON layout)."""
    target, metadata = _html_metadata(record_json)
    if not isinstance(target, str) or not target or not isinstance(metadata, dict):
        return
    target = caption_text(target)[0]  # lone surrogates from JSON escapes would fail the parquet writer
    base = page_base(target, (metadata.get("Head") or {}).get("Base"))
    for link in metadata.get("Links") or []:
        if not isinstance(link, dict) or link.get("path") != "IMG@/src" or not link.get("url"):
            continue
        yield image_pair(base, link["url"], link.get("alt") or link.get("title"), source, target)


def html_pairs(page: bytes | str, target: str, source: str) -> Iterator[Raw | Bad]:
    """The (img url, alt text) pairs of one HTML page."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(page if isinstance(page, str) else page.decode("utf-8", errors="replace"))
    base_node = tree.css_first("base[href]")
    base = page_base(target, base_node.attributes.get("href") if base_node else None)
    for node in tree.css("img[src]"):
        src = (node.attributes.get("src") or "").strip()
        if src:
            yield image_pair(base, src, node.attributes.get("alt") or node.attributes.get("title"), source, target)


def _iter_warc(path: str, rec_type: str, start: int = 0) -> Iterator[tuple[object, bytes | Exception | None, int]]:
    """(record, payload or the error reading it, offset) for every record from byte ``start``;
    the payload is None for records of another type than ``rec_type`` (not read).

    The payload is read before the offset is asked for: warcio's ``get_record_offset`` reads
    the record to its end, which would leave the content stream empty."""
    from warcio.archiveiterator import ArchiveIterator

    with fsspec.open(path, "rb") as handle:
        handle.seek(start)
        iterator = ArchiveIterator(handle, arc2warc=True)
        for record in iterator:
            payload = _payload(record) if record.rec_type == rec_type else None
            yield record, payload, iterator.get_record_offset()


def _payload(record) -> bytes | Exception:
    try:
        stream = record.content_stream() if record.http_headers is not None else record.raw_stream
        return stream.read()
    except (OSError, zlib.error, ValueError) as exc:
        return exc


def gzip_members(path: str) -> tuple[list[int], tuple[int, str] | None]:
    """Start offsets of the intact members of a multi-member gzip file, and (offset, reason) of
    the first corrupt or truncated member, if any (reading stops there). warcio stops quietly at
    a truncated member, so a cut file would otherwise lose its tail (or yield half a page)
    without a word; the member starts are where reading resumes after an unparsable record."""
    members, member_start, consumed = [], 0, 0
    decompressor = zlib.decompressobj(31)
    with fsspec.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            data = chunk
            while data:
                try:
                    decompressor.decompress(data)
                except zlib.error as exc:
                    return members, (member_start, f"bad gzip data in the member at byte {member_start}: {exc}")
                if decompressor.eof:
                    members.append(member_start)
                    consumed += len(data) - len(decompressor.unused_data)
                    member_start, data = consumed, decompressor.unused_data
                    decompressor = zlib.decompressobj(31)
                else:
                    consumed += len(data)
                    data = b""
    if consumed > member_start:
        return members, (member_start, f"gzip member at byte {member_start} is truncated (file ends at {consumed})")
    return members, None


def _records(path: str, rec_type: str) -> Iterator[tuple[object, bytes | Exception, int] | Bad]:
    """Records of intact gzip members only, then a Bad for the damaged member, if any. A record
    warcio cannot parse is a Bad, and reading goes on at the next gzip member (in a plain WARC
    nothing marks where the next record starts: reading stops there, with a Bad that says so)."""
    members, damage = gzip_members(path) if path.endswith(".gz") else ([], None)
    limit = damage[0] if damage else None
    start: int | None = 0
    while start is not None:
        position = start  # the failing record, if any, starts at or after this
        try:
            for record, payload, offset in _iter_warc(path, rec_type, start):
                if limit is not None and offset >= limit:
                    break
                position = offset + 1
                if payload is not None:
                    yield record, payload, offset
            start = None
        except Exception as exc:
            start, bad = _resume_after(path, members, damage, position, exc)
            if bad is not None:
                yield bad
    if damage:
        yield Bad(f"{path}@{damage[0]}", "bad_gzip", damage[1])


def _resume_after(path: str, members: list[int], damage, position: int, exc: Exception) -> tuple[int | None, Bad | None]:
    """(where reading resumes, or None; the Bad for the record that failed) after warcio raised
    ``exc`` on the first record at or after byte ``position``."""
    index = bisect.bisect_left(members, position)
    if index == len(members) and damage is not None:
        return None, None  # warcio failing on the damaged member: the caller reports it
    if isinstance(exc, OSError):
        raise exc  # the file system failing, not a record
    reason = f"WARC record unreadable: {type(exc).__name__}: {exc}"[:500]
    if index == len(members):
        return None, Bad(f"{path}@{position}", "bad_record", f"{reason} (the records after it cannot be located)")
    following = members[index + 1] if index + 1 < len(members) else None
    return following, Bad(f"{path}@{members[index]}", "bad_record", reason)


def _read_archive(path: str, rec_type: str, pairs_of) -> Iterator[Raw | Bad]:
    """Records of one type through ``pairs_of(record, payload, source)``; damage becomes Bad."""
    for item in _records(path, rec_type):
        if isinstance(item, Bad):
            yield item
            continue
        record, payload, offset = item
        source = f"{path}@{offset}"
        if isinstance(payload, Exception):
            yield Bad(source, "bad_record", f"record payload unreadable: {payload}")
            continue
        yield from _guarded(pairs_of, record, payload, source)


def _guarded(pairs_of, record, payload: bytes, source: str) -> Iterator[Raw | Bad]:
    """One record's pairs; content no rule foresaw (a JSON field of the wrong type, a base url
    that does not parse) makes this record a Bad, and the file goes on."""
    try:
        yield from pairs_of(record, payload, source)
    except Exception as exc:
        yield Bad(source, "bad_record", f"{type(exc).__name__}: {exc}"[:500])


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
    folded = {name.lower(): name for name in names if isinstance(name, str)}
    return folded.get(wanted.lower())


def find_columns(names: list[str], url_col: str, caption_col: str, where: str) -> tuple[str | None, str | None]:
    """(url column, caption column) of a file with columns ``names``; None for a default
    column it lacks. A named (non-default) column it lacks raises :class:`MissingColumn`."""
    found = _resolve_column(names, url_col), _resolve_column(names, caption_col)
    for wanted, column, default in zip((url_col, caption_col), found, (DEFAULT_URL_COL, DEFAULT_CAPTION_COL)):
        if column is None and wanted != default:
            raise MissingColumn(f"{where}: no column {wanted!r} (columns: {list(names)})")
    return found


def read_parquet(path: str, config: ReaderConfig) -> Iterator[Raw | Bad]:
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        url_col, caption_col = find_columns(names, config.url_col, config.caption_col, path)
        if url_col is None:
            yield Bad(path, "missing_column", f"no url column {config.url_col!r} (columns: {names})")
            return
        columns = [url_col] + ([caption_col] if caption_col else [])
        row = 0
        for group in range(parquet.num_row_groups):
            first, size = row, parquet.metadata.row_group(group).num_rows
            try:
                for batch in parquet.iter_batches(batch_size=8192, row_groups=[group], columns=columns):
                    urls = batch.column(0).to_pylist()
                    captions = batch.column(1).to_pylist() if caption_col else [None] * len(urls)
                    for url, caption in zip(urls, captions):
                        yield make_raw(url, caption, f"{path}#{row}")
                        row += 1
            except Exception as exc:  # a damaged row group (bad page, bad compression): the next one is read
                yield Bad(f"{path}#{row}", "bad_record", f"row group {group}: rows {row}..{first + size - 1} "
                                                         f"unreadable: {type(exc).__name__}: {exc}"[:500])
                row = first + size


class _LineParser:
    """``parser(source, line)`` yields a line's records; ``finish()`` runs after the last line."""

    def __call__(self, source: str, line: str) -> Iterator[Raw | Bad]:
        raise NotImplementedError

    def finish(self) -> None:
        pass


def _per_line(path: str, parse: _LineParser) -> Iterator[Raw | Bad]:
    """``parse(source, line)`` over the UTF-8 lines of a (possibly compressed) text file; a Bad
    record for each line that is not UTF-8 or does not parse, and the next line is read.
    ``parse`` raises ``_Stop`` when the header makes the file unreadable."""
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
            except MissingColumn:
                raise
            except Exception as exc:  # csv.Error (a field over the limit), a JSON nested too deep, ...
                yield Bad(source, "bad_record", f"{type(exc).__name__}: {exc}"[:500])
    parse.finish()


class _Stop(Exception):
    """A file whose header makes the rest unreadable (no url column)."""


def _looks_like_url(text: str) -> bool:
    return text.strip().lower().startswith(("http://", "https://"))


def allow_long_csv_fields() -> None:
    """Raise the csv module's field limit (131,072 characters, process-wide) to
    ``MAX_FIELD_CHARS``; a longer field is a bad record of its own."""
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)


class _Delimited(_LineParser):
    """csv/tsv rows with a header, or CC3M's header-less ``caption<TAB>url``."""

    def __init__(self, path: str, config: ReaderConfig, delimiter: str) -> None:
        allow_long_csv_fields()
        self.path, self.config, self.delimiter = path, config, delimiter
        self.url_index: int | None = None
        self.caption_index: int | None = None

    def __call__(self, source: str, line: str) -> Iterator[Raw | Bad]:
        fields = next(csv.reader([line], delimiter=self.delimiter))
        if self.url_index is None:
            if self.delimiter == "\t" and len(fields) >= 2 and _looks_like_url(fields[1]) and not _looks_like_url(fields[0]):
                self.caption_index, self.url_index = 0, 1  # CC3M: caption<TAB>url, no header
            else:
                url_name, caption_name = find_columns(fields, self.config.url_col, self.config.caption_col, self.path)
                if url_name is None:
                    raise _Stop(f"no url column {self.config.url_col!r} (header: {fields})")
                self.url_index = fields.index(url_name)
                self.caption_index = fields.index(caption_name) if caption_name else None
                return
        if self.url_index >= len(fields):
            yield Bad(source, "bad_record", f"{len(fields)} fields, url expected in field {self.url_index + 1}")
            return
        index = self.caption_index
        yield make_raw(fields[self.url_index], fields[index] if index is not None and index < len(fields) else None,
                       source)


class _Jsonl(_LineParser):
    """One JSON object per line; keys matched per record. A named (non-default) column that no
    record of the file has is an error at the end of the file."""

    def __init__(self, path: str, config: ReaderConfig) -> None:
        self.path, self.config = path, config
        self.keys: dict[str, None] = {}  # keys of the records in order, to name in that error (a hundred or so)
        self.found: set[str] = set()  # the configured column names some record had

    def __call__(self, source: str, line: str) -> Iterator[Raw | Bad]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield Bad(source, "bad_record", f"JSON does not parse: {type(exc).__name__}: {exc}"[:500])
            return
        if not isinstance(record, dict):
            yield Bad(source, "bad_record", "a JSON line that is not an object")
            return
        url_key = _resolve_column(list(record), self.config.url_col)
        caption_key = _resolve_column(list(record), self.config.caption_col)
        self.found.update(name for name, key in ((self.config.url_col, url_key), (self.config.caption_col, caption_key))
                          if key is not None)
        if len(self.keys) < 100:
            self.keys.update(dict.fromkeys(record))
        yield make_raw(record.get(url_key) if url_key else None, record.get(caption_key) if caption_key else None,
                       source)

    def finish(self) -> None:
        if self.keys:  # records were read
            find_columns(list(self.keys) + sorted(self.found - self.keys.keys()), self.config.url_col,
                         self.config.caption_col, self.path)


WIT_CAPTIONS = ("caption_reference_description", "caption_alt_text_description")


class _Wit(_LineParser):
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
                yield make_raw(row.get("image_url"), row[column], f"{source}:{column}", row.get("page_url"))


def read_delimited(path: str, config: ReaderConfig, delimiter: str) -> Iterator[Raw | Bad]:
    return _per_line(path, _Delimited(path, config, delimiter))


def read_jsonl(path: str, config: ReaderConfig) -> Iterator[Raw | Bad]:
    return _per_line(path, _Jsonl(path, config))


def read_wit(path: str) -> Iterator[Raw | Bad]:
    return _per_line(path, _Wit())


# -- url lists for the crawl ---------------------------------------------------------------------
def url_list_rows(path: str) -> Iterator[dict]:
    """The rows of a csv, tsv (``.tsv``, ``.txt``) or jsonl (``.jsonl``, ``.json``) url list, as
    dicts of the values found: one per csv record, one per non-blank jsonl line (the crawl's
    shard keys count them). A record that does not parse keeps its place with no values (its
    url is then missing) and the rest of the file is read. Bytes that are not UTF-8 arrive as
    surrogates, which :func:`pipeline.captions.caption_text` and :func:`url_value` deal with."""
    name = path.rsplit("/", 1)[-1].lower()
    delimiter = None if ".jsonl" in name or ".json" in name else "\t" if ".tsv" in name or ".txt" in name else ","
    with fsspec.open(path, "rt", compression="infer", encoding="utf-8", errors="surrogateescape",
                     newline="") as handle:
        yield from (_csv_rows(handle, delimiter) if delimiter else _jsonl_rows(handle))


def _csv_rows(handle, delimiter: str) -> Iterator[dict]:
    allow_long_csv_fields()
    reader = csv.reader(handle, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:  # a field over the limit: this record only
            fields = None
        if header is None:
            header = fields or []
        elif fields is None:
            yield dict.fromkeys(header)
        elif fields:  # blank lines are no rows
            yield {name: value for name, value in zip(header, fields)} | dict.fromkeys(header[len(fields):])


def _jsonl_rows(handle) -> Iterator[dict]:
    for line in handle:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        yield record if isinstance(record, dict) else {}


def url_value(value: object) -> str | None:
    """A url as text, or None when it is not text: bytes must be UTF-8 and a str must hold no
    lone surrogates (undecodable bytes); a url is never repaired into another one."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    text, issue = caption_text(value)
    return text if issue is None else None


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
    except MissingColumn:
        raise
    except Exception as exc:  # pyarrow errors: the file is recorded, the job goes on
        if isinstance(exc, ValueError) and "--pool-format" in str(exc):
            raise
        yield Bad(path, "unreadable_file", f"{type(exc).__name__}: {exc}"[:500])


__all__ = ["Raw", "Bad", "ReaderConfig", "MissingColumn", "read", "detect_format", "wat_pairs", "html_pairs",
           "find_columns", "url_list_rows", "url_value", "make_raw", "FORMATS"]
