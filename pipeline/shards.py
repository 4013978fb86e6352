"""Writing one crawl shard: webdataset tar, img2dataset-style status parquet, stats.

For shard ``n`` under the output folder: ``{n:05d}.tar`` (``{key}.jpg``, ``{key}.txt``,
``{key}.json`` per sample, in key order, fixed tar metadata so equal inputs give equal bytes),
``{n:05d}.parquet`` (one row per input url, whatever became of it) and ``{n:05d}_stats.json``,
written last: a shard whose stats file exists is finished, and a re-run skips it.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.captions import caption_text
from core.storage import join, write_bytes_atomic, write_text_atomic

STATUSES = ("success", "failed_to_download", "failed_to_resize", "filtered", "duplicate", "opted_out", "blocked",
            "eval_duplicate")

STATUS_SCHEMA = pa.schema([
    ("key", pa.string()), ("url", pa.string()), ("caption", pa.string()), ("status", pa.string()),
    ("error_message", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("original_width", pa.int32()), ("original_height", pa.int32()), ("sha256", pa.string()),
    ("phash", pa.string()), ("uid", pa.string()), ("entry_ids", pa.list_(pa.int32())),
    ("final_url", pa.string()), ("attempts", pa.int32()),
])


@dataclass
class Sample:
    key: str
    url: str
    caption: str | None
    status: str
    error_message: str = ""
    image: bytes = b""
    width: int | None = None
    height: int | None = None
    original_width: int | None = None
    original_height: int | None = None
    sha256: str | None = None
    phash: str | None = None
    uid: str | None = None
    entry_ids: list[int] | None = None
    final_url: str | None = None
    attempts: int = 0
    extra: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        return {"key": self.key, "uid": self.uid, "url": self.url, "caption": self.caption, "status": self.status,
                "width": self.width, "height": self.height, "original_width": self.original_width,
                "original_height": self.original_height, "sha256": self.sha256, "phash": self.phash,
                "entry_ids": self.entry_ids}


def shard_names(out: str, shard: int) -> dict[str, str]:
    return {kind: join(out, f"{shard:05d}{suffix}")
            for kind, suffix in (("tar", ".tar"), ("parquet", ".parquet"), ("stats", "_stats.json"))}


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "wit", "wit"
    tar.addfile(info, io.BytesIO(data))


def writable(sample: Sample) -> Sample:
    """The sample with fields the tar, JSON and parquet writers take whatever a url list held:
    text fields as valid text (a number, bytes, a lone surrogate made text), ``uid`` text or
    None, ``entry_ids`` a list of ints or None. One odd row never fails its shard."""
    return replace(sample, url=_text(sample.url) or "", caption=_text(sample.caption),
                   error_message=_text(sample.error_message) or "", uid=_text(sample.uid),
                   final_url=_text(sample.final_url), entry_ids=_ids(sample.entry_ids))


def _text(value: object) -> str | None:
    return None if value is None else caption_text(value)[0]


def _ids(value: object) -> list[int] | None:
    if not isinstance(value, (list, tuple)):
        return None
    try:
        ids = [int(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        return None
    return ids if all(-2**31 <= v < 2**31 for v in ids) else None  # the status table's int32


def build_tar(samples: list[Sample], encode_format: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in sorted(samples, key=lambda s: s.key):
            if sample.status != "success":
                continue
            add_member(tar, f"{sample.key}.{encode_format}", sample.image)
            add_member(tar, f"{sample.key}.txt", (sample.caption or "").encode("utf-8"))
            add_member(tar, f"{sample.key}.json", json.dumps(sample.metadata(), ensure_ascii=False, sort_keys=True).encode())
    return buffer.getvalue()


def build_status_table(samples: list[Sample]) -> bytes:
    rows = [{"key": s.key, "url": s.url, "caption": s.caption, "status": s.status, "error_message": s.error_message,
             "width": s.width, "height": s.height, "original_width": s.original_width,
             "original_height": s.original_height, "sha256": s.sha256, "phash": s.phash, "uid": s.uid,
             "entry_ids": s.entry_ids, "final_url": s.final_url, "attempts": s.attempts}
            for s in sorted(samples, key=lambda s: s.key)]
    return status_parquet(rows)


def read_status(out: str, shard: int, columns: list[str] | None = None) -> dict[str, list]:
    """A written shard's status parquet, column name -> values (one per input url, key order)."""
    import fsspec

    with fsspec.open(shard_names(out, shard)["parquet"], "rb") as handle:
        return pq.read_table(handle, columns=columns).to_pydict()


def status_parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=STATUS_SCHEMA), buffer, compression="zstd")
    return buffer.getvalue()


def shard_stats(shard: int, samples: list[Sample], tar_bytes: int) -> dict:
    return stats_of(shard, [(s.status, s.error_message) for s in samples], tar_bytes,
                    sum(len(s.image) for s in samples if s.status == "success"))


def stats_of(shard: int, outcomes: list[tuple[str, str]], tar_bytes: int, image_bytes: int) -> dict:
    """A shard's ``_stats.json`` from the (status, error message) of each of its urls."""
    counts = {status: 0 for status in STATUSES}
    reasons: dict[str, int] = {}
    for status, message in outcomes:
        counts[status] += 1
        if status != "success":
            reason = f"{status}: {(message or '').split(':')[0][:80]}"
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"shard": shard, "count": len(outcomes), "successes": counts["success"], "status": counts,
            "reasons": dict(sorted(reasons.items())), "tar_bytes": tar_bytes, "image_bytes": image_bytes}


def write_shard(out: str, shard: int, samples: list[Sample], encode_format: str) -> dict:
    names = shard_names(out, shard)
    samples = [writable(sample) for sample in samples]
    tar = build_tar(samples, encode_format)
    write_bytes_atomic(names["tar"], tar)
    write_bytes_atomic(names["parquet"], build_status_table(samples))
    stats = shard_stats(shard, samples, len(tar))
    write_text_atomic(names["stats"], json.dumps(stats, indent=2, sort_keys=True) + "\n")  # last: the shard is done
    return stats


# -- shards read back: which tar members may be kept -------------------------------------------------
_NOT_KEPT = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.DIRTYPE: "directory",
             tarfile.CHRTYPE: "device", tarfile.BLKTYPE: "device", tarfile.FIFOTYPE: "fifo"}
USTAR_NAME_BYTES = 100  # the longest name a ustar header holds in its name field alone


def member_problem(info: tarfile.TarInfo) -> str:
    """Why a member of a tar read back as a shard is dropped, or "" when it is kept.

    Kept: regular files whose names are plain relative paths (no empty or ``..`` part, no
    leading ``/``, no backslash, no NUL or other control character) short enough for a ustar
    header. Links, directories and devices are dropped: a cleaned shard must not carry what a
    later ``tar x`` could turn into a write outside its folder. Every reader and rewriter of
    shards asks this one function."""
    if not info.isreg():
        return _NOT_KEPT.get(info.type, f"not a regular file (type {info.type!r})")
    name = info.name
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "absolute name"
    if "\\" in name:
        return "backslash in name"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "control character in name"
    parts = name.split("/")
    if ".." in parts or "" in parts or parts[-1] == ".":  # "./key.jpg", as `tar -C dir -cf x.tar .` writes, is fine
        return "not a plain relative name"
    if len(name.encode("utf-8", "surrogateescape")) > USTAR_NAME_BYTES:
        return "name too long"
    return ""
