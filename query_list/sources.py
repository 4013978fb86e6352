"""Reading Wikipedia inputs through fsspec: XML dumps, multistream dumps, WikiExtractor output.

Every input becomes a list of :class:`WorkItem` (a file, or a byte range of a multistream
dump) and each work item yields :class:`~query_list.wikitext.Page` records. Multistream dumps
(``...-multistream.xml.bz2`` with their ``...-multistream-index.txt.bz2``) are split on their
stream offsets, so one big file spreads over many workers; other files are one item each.

Bad input never passes silently: a corrupt or truncated bz2 stream, broken XML or a malformed
JSON line raises :class:`BadInputError` naming the file and the byte offset (of the compressed
file) where reading stopped, unless ``skip_bad`` is set, in which case a :class:`BadInput`
record is yielded instead and the job counts it.
"""

from __future__ import annotations

import bz2
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterator

import fsspec

from query_list.wikitext import Page

STREAMS_PER_ITEM = 50  # multistream: ~100 pages per stream, so ~5,000 pages per work item
PLAIN_LINES_PER_PAGE = 2000


class BadInputError(ValueError):
    """An input file that cannot be read; the message names the file and the offset."""


@dataclass(frozen=True)
class WorkItem:
    path: str
    kind: str  # "xml", "multistream", "jsonl", "text"
    start: int = 0
    end: int = -1  # exclusive byte offset for "multistream" ranges


@dataclass(frozen=True)
class BadInput:
    path: str
    offset: int
    reason: str


def index_path_for(path: str) -> str | None:
    """The multistream index beside a multistream dump, when the name says it is one."""
    if "multistream" not in path.rsplit("/", 1)[-1] or "-index" in path:
        return None
    return path.replace("-multistream", "-multistream-index").replace(".xml", ".txt")


def detect_kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    if ".xml" in name:
        return "xml"
    if name.endswith((".json", ".jsonl", ".json.bz2", ".jsonl.bz2", ".json.gz", ".jsonl.gz")):
        return "jsonl"
    with fsspec.open(path, "rt", compression="infer", encoding="utf-8", errors="replace") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith("<mediawiki") or head.startswith("<?xml"):
        return "xml"
    if head.startswith("{"):
        return "jsonl"
    return "text"


def read_index_offsets(index_path: str) -> list[int]:
    """Distinct stream offsets from a multistream index (lines ``offset:page_id:title``)."""
    offsets: set[int] = set()
    with fsspec.open(index_path, "rt", compression="infer", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            head = line.split(":", 1)[0]
            if not head.strip():
                continue
            if not head.isdigit():
                raise BadInputError(f"{index_path}: line {number} is not 'offset:page_id:title': {line[:80]!r}")
            offsets.add(int(head))
    return sorted(offsets)


def plan(path: str) -> list[WorkItem]:
    """The work items of one input file."""
    kind = detect_kind(path)
    index = index_path_for(path) if kind == "xml" else None
    if index is not None:
        fs, _ = fsspec.core.url_to_fs(index)
        if fs.exists(index):
            offsets = read_index_offsets(index)
            size = fsspec.core.url_to_fs(path)[0].size(path)
            bounds = offsets[::STREAMS_PER_ITEM] + [size]
            return [WorkItem(path, "multistream", start, end) for start, end in zip(bounds, bounds[1:])]
    return [WorkItem(path, kind)]


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying (compressed) file, for error offsets."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _page_from_element(element) -> Page:
    fields = {"title": "", "ns": "0", "id": "0", "text": ""}
    redirect = False
    for child in element:
        name = _local(child.tag)
        if name in ("title", "ns", "id"):
            fields[name] = child.text or ""
        elif name == "redirect":
            redirect = True
        elif name == "revision":
            for sub in child:
                if _local(sub.tag) == "text":
                    fields["text"] = sub.text or ""
    return Page(title=fields["title"], ns=int(fields["ns"] or 0), page_id=int(fields["id"] or 0),
                text=fields["text"], redirect=redirect)


def _iter_xml_pages(stream) -> Iterator[Page]:
    context = ET.iterparse(stream, events=("start", "end"))
    root = None
    for event, element in context:
        if root is None and event == "start":
            root = element
        if event == "end" and _local(element.tag) == "page":
            yield _page_from_element(element)
            if root is not None:
                root.clear()  # drop finished pages: memory stays flat over a 90 GB dump


def _read_xml(item: WorkItem) -> Iterator[Page]:
    with fsspec.open(item.path, "rb") as raw:
        counter = _CountingReader(raw)
        buffered = io.BufferedReader(counter, 1 << 20)
        stream = bz2.BZ2File(buffered) if item.path.endswith(".bz2") else buffered
        try:
            yield from _iter_xml_pages(stream)
        except (OSError, EOFError, ET.ParseError) as exc:
            where = f" (XML line {exc.position[0]})" if isinstance(exc, ET.ParseError) else ""
            raise BadInputError(f"{item.path}: {exc}{where} at compressed byte offset {counter.position}") from exc


def _decompress_streams(data: bytes, path: str, start: int) -> bytes:
    """Decompress the concatenated bz2 streams of a multistream byte range."""
    out = []
    offset = 0
    while offset < len(data):
        decompressor = bz2.BZ2Decompressor()
        try:
            out.append(decompressor.decompress(data[offset:]))
        except OSError as exc:
            raise BadInputError(f"{path}: {exc} at compressed byte offset {start + offset}") from exc
        if not decompressor.eof:
            raise BadInputError(f"{path}: bz2 stream truncated at compressed byte offset {start + len(data)}")
        offset = len(data) - len(decompressor.unused_data)
    return b"".join(out)


def _read_multistream(item: WorkItem) -> Iterator[Page]:
    with fsspec.open(item.path, "rb") as raw:
        raw.seek(item.start)
        data = raw.read(item.end - item.start)
    xml = _decompress_streams(data, item.path, item.start)
    # A range holds bare <page> elements (the last stream may close </mediawiki>).
    xml = re.sub(rb"</mediawiki>\s*$", b"", xml)
    try:
        yield from _iter_xml_pages(io.BytesIO(b"<pages>" + xml + b"</pages>"))
    except ET.ParseError as exc:
        raise BadInputError(f"{item.path}: {exc} in the streams from compressed byte offset {item.start}") from exc


def _read_jsonl(item: WorkItem) -> Iterator[Page]:
    with fsspec.open(item.path, "rb", compression="infer") as handle:
        offset = 0
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                    yield Page(title=str(record.get("title", "")), ns=0, page_id=int(record.get("id") or 0),
                               text=str(record["text"]), plain=True)
                except (ValueError, KeyError, TypeError) as exc:
                    raise BadInputError(f"{item.path}: line {number} is not a WikiExtractor JSON record ({exc}) "
                                        f"at byte offset {offset}") from exc
            offset += len(line)


_DOC_OPEN = re.compile(r"<doc\b[^>]*>")
_DOC_TITLE = re.compile(r'\btitle="([^"]*)"')


def _read_text(item: WorkItem) -> Iterator[Page]:
    """WikiExtractor's ``<doc ...>`` text output, or any plain text (chunks of lines)."""
    with fsspec.open(item.path, "rt", compression="infer", encoding="utf-8") as handle:
        title, lines, in_doc, docs = "", [], False, 0
        try:
            for line in handle:
                stripped = line.strip()
                opened = _DOC_OPEN.match(stripped)
                if opened:
                    named = _DOC_TITLE.search(opened.group(0))
                    title, lines, in_doc = (named.group(1) if named else ""), [], True
                    continue
                if stripped == "</doc>":
                    docs += 1
                    yield Page(title=title, ns=0, page_id=docs, text="\n".join(lines[1:] if lines[:1] == [title] else lines), plain=True)
                    lines, in_doc = [], False
                    continue
                lines.append(line.rstrip("\n"))
                if not in_doc and len(lines) >= PLAIN_LINES_PER_PAGE:
                    docs += 1
                    yield Page(title="", ns=0, page_id=docs, text="\n".join(lines), plain=True)
                    lines = []
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{item.path}: not UTF-8 text ({exc})") from exc
        if lines:
            yield Page(title=title, ns=0, page_id=docs + 1, text="\n".join(lines), plain=True)


READERS = {"xml": _read_xml, "multistream": _read_multistream, "jsonl": _read_jsonl, "text": _read_text}


def read(item: WorkItem, skip_bad: bool = False) -> Iterator[Page | BadInput]:
    """Pages of one work item; with ``skip_bad`` a bad file ends in a :class:`BadInput` record."""
    try:
        yield from READERS[item.kind](item)
    except BadInputError as exc:
        if not skip_bad:
            raise
        match = re.search(r"offset (\d+)", str(exc))
        yield BadInput(item.path, int(match.group(1)) if match else item.start, str(exc))
