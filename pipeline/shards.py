"""Writing one crawl shard: webdataset tar, img2dataset-style status parquet, stats (the layout
and its rules are :mod:`core.shards`; this module turns the crawl's samples into them).

For shard ``n`` under the output folder: ``{n:05d}.tar`` (``{key}.jpg``, ``{key}.txt``,
``{key}.json`` per sample, in key order, fixed tar metadata so equal inputs give equal bytes),
``{n:05d}.parquet`` (one row per input url, whatever became of it) and ``{n:05d}_stats.json``,
written last: a shard whose stats file exists is finished, and a re-run skips it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from core.shards import shard_names, stats_of, status_parquet, write_tar
from core.storage import write_bytes_atomic, write_text_atomic
from pipeline.captions import caption_text


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
    return write_tar(member for sample in sorted(samples, key=lambda s: s.key) if sample.status == "success"
                     for member in ((f"{sample.key}.{encode_format}", sample.image),
                                    (f"{sample.key}.txt", (sample.caption or "").encode("utf-8")),
                                    (f"{sample.key}.json", json.dumps(sample.metadata(), ensure_ascii=False,
                                                                      sort_keys=True).encode())))


def build_status_table(samples: list[Sample]) -> bytes:
    rows = [{"key": s.key, "url": s.url, "caption": s.caption, "status": s.status, "error_message": s.error_message,
             "width": s.width, "height": s.height, "original_width": s.original_width,
             "original_height": s.original_height, "sha256": s.sha256, "phash": s.phash, "uid": s.uid,
             "entry_ids": s.entry_ids, "final_url": s.final_url, "attempts": s.attempts}
            for s in sorted(samples, key=lambda s: s.key)]
    return status_parquet(rows)


def shard_stats(shard: int, samples: list[Sample], tar_bytes: int) -> dict:
    return stats_of(shard, [(s.status, s.error_message) for s in samples], tar_bytes,
                    sum(len(s.image) for s in samples if s.status == "success"))


def write_shard(out: str, shard: int, samples: list[Sample], encode_format: str) -> dict:
    names = shard_names(out, shard)
    samples = [writable(sample) for sample in samples]
    tar = build_tar(samples, encode_format)
    write_bytes_atomic(names["tar"], tar)
    write_bytes_atomic(names["parquet"], build_status_table(samples))
    stats = shard_stats(shard, samples, len(tar))
    write_text_atomic(names["stats"], json.dumps(stats, indent=2, sort_keys=True) + "\n")  # last: the shard is done
    return stats
