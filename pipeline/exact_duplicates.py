"""Exact duplicates across the whole crawl: the same downloaded bytes (sha256) at several keys.

A shard marks the repeats among its own urls while it is written (:func:`mark_in_shard`); this
stage of the crawl job finds those that lie in different shards. Every success's
``(sha256, key)`` is grouped by hash; in a group the smallest key keeps its image (the rule
within a shard too, so what is kept does not depend on how the urls fall into shards) and each
other key becomes ``duplicate`` with the reason ``same sha256: kept at key K``. Its shard is then
rewritten (:func:`drop_repeats`): the stats file is removed first (a shard without one is
unfinished, so a job killed in the middle crawls that shard again on its re-run), then the tar
without the repeats, the status parquet, and the recomputed stats, last. A re-run of a finished
crawl finds no repeats left and changes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator

import fsspec

from core import shards
from core.storage import write_bytes_atomic, write_text_atomic


def reason(keeper: str) -> str:
    return f"same sha256: kept at key {keeper}"


def mark_in_shard(samples: list[shards.Sample]) -> None:
    """Repeats among one shard's successes: the smallest key keeps the image, the others lose it."""
    keeper: dict[str, str] = {}
    for sample in sorted(samples, key=lambda s: s.key):
        if sample.status == "success":
            if sample.sha256 in keeper:
                sample.status, sample.error_message, sample.image = "duplicate", reason(keeper[sample.sha256]), b""
            else:
                keeper[sample.sha256] = sample.key


def success_hashes(samples: Iterable[shards.Sample]) -> Iterator[tuple[str, str]]:
    for sample in samples:
        if sample.status == "success" and sample.sha256:
            yield sample.sha256, sample.key


def written_hashes(out: str, shard: int) -> Iterator[tuple[str, str]]:
    """``(sha256, key)`` of the successes of a shard written earlier (read from its parquet)."""
    table = shards.read_status(out, shard, ["key", "status", "sha256"])
    for key, status, digest in zip(table["key"], table["status"], table["sha256"]):
        if status == "success" and digest:
            yield digest, key


def key_order(key: str) -> tuple[int, str]:
    """Keys are ``{shard:05d}{row:04d}``: from shard 100000 on they are longer, and later."""
    return len(key), key


def repeats_of(group: tuple[str, Iterable[str]]) -> Iterator[tuple[int, tuple[str, str]]]:
    """``(shard, (key, keeper))`` for every key of a hash group but the smallest."""
    _, keys = group
    keeper, *others = sorted(keys, key=key_order)
    for key in others:
        yield int(key[:-4]), (key, keeper)


def filter_tar(data: bytes, drop: set[str]) -> tuple[bytes, int, int]:
    """The tar without the members of the keys in ``drop`` (member names are ``{key}.{ext}``), the
    bytes of the images left, and how many members :func:`shards.member_problem` dropped (links,
    directories, unsafe names: a shard written by the crawl has none)."""
    kept: list[shards.TarSample] = []
    dropped = 0
    for item in shards.read_tar(io.BytesIO(data), name="crawl shard"):
        if isinstance(item, shards.TarDamaged):  # the crawl wrote this tar itself: damage is storage failing
            raise shards.ShardError(f"crawl shard damaged: {item.error}")
        if isinstance(item, shards.TarSkipped):
            dropped += 1
        elif item.key not in drop:
            kept.append(item)
    image_bytes = sum(len(content) for sample in kept for name, content in sample.members
                      if shards.split_member(name)[1] not in shards.TEXT_EXTENSIONS)
    return shards.samples_tar(kept), image_bytes, dropped


def drop_repeats(out: str, shard: int, repeats: dict[str, str]) -> dict:
    """Mark ``repeats`` (key -> the key that keeps the image) ``duplicate`` in a written shard and
    remove their samples from its tar; returns the new stats. Idempotent."""
    names = shards.shard_names(out, shard)
    fs, stats_path = fsspec.core.url_to_fs(names["stats"])
    if fs.exists(stats_path):
        fs.rm(stats_path)  # unfinished from here until the new stats are written
    table = shards.read_status(out, shard)
    rows = [dict(zip(table, values)) for values in zip(*table.values())]
    for row in rows:
        if row["key"] in repeats and row["status"] == "success":
            row["status"], row["error_message"] = "duplicate", reason(repeats[row["key"]])
    with fsspec.open(names["tar"], "rb") as handle:
        tar, image_bytes, dropped = filter_tar(handle.read(), set(repeats))
    write_bytes_atomic(names["tar"], tar)
    write_bytes_atomic(names["parquet"], shards.status_parquet(rows))
    stats = shards.stats_of(shard, [(row["status"], row["error_message"]) for row in rows], len(tar), image_bytes)
    if dropped:
        stats["dropped_members"] = dropped
    write_text_atomic(names["stats"], json.dumps(stats, indent=2, sort_keys=True) + "\n")  # last
    return stats


def settle_shard(item: tuple[int, dict], out: str) -> dict:
    """CoGroupByKey result ``(shard, {"stats": [stats], "repeats": [(key, keeper), ...]})`` ->
    the shard's final stats."""
    shard, grouped = item
    (stats,) = grouped["stats"]
    repeats = dict(grouped["repeats"])
    if not repeats:
        return stats
    return {**drop_repeats(out, shard, repeats), "resumed": stats.get("resumed", False),
            "seconds": stats.get("seconds", 0.0), "cross_shard_duplicates": len(repeats)}
