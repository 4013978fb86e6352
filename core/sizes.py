"""Sample counts of a shard set, and the success marker: one owner for both.

A trainer needs to know how many samples an epoch holds before it reads one. Four sources
answer that, tried in this order for each shard:

1. ``sizes.json`` beside the shards (the crawl's and the audit's manifest, OpenCLIP's layout:
   ``{"00000.tar": 9871, ..., "__total__": N}``; keys starting with ``__`` are not shards);
2. img2dataset's ``{shard}_stats.json`` (its ``successes``: the samples written to the tar; our
   crawl writes the same file);
3. for a local tar, its own headers: the distinct sample keys (webdataset's rule, the path up to
   the first dot of the file name), counted in milliseconds without reading any member's bytes
   and cached in ``.wit-sample-counts.json`` beside the shards when that folder is writable (keyed
   by the tar's size and modification time, so a rewritten tar is counted again);
4. nothing: a remote tar without a manifest or stats file is not downloaded to be counted;
   :func:`missing_counts_message` names the three ways to give the counts.

``_SUCCESS``, written last by a job that produced a complete shard set, is written and read here.

    python -m core.sizes 'shards/{00000..00007}.tar'   # print each shard's count and its source
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tarfile

import fsspec

from core import shards
from core.storage import join, write_text_atomic

log = logging.getLogger(__name__)

SIZES = "sizes.json"
SUCCESS = "_SUCCESS"
TOTAL = "__total__"
CACHE = ".wit-sample-counts.json"
STATS_SUFFIX = shards.STATS_SUFFIX


def sample_key(member: str) -> str | None:
    """The sample a tar member belongs to (:func:`core.shards.split_member`, webdataset's rule:
    ``a/b/000123.jpg`` -> ``a/b/000123``); None for a name without an extension (webdataset
    skips those)."""
    key, extension = shards.split_member(member)
    return key if key and extension else None


# -- sizes.json and the success marker -------------------------------------------------------------
def write_sizes(folder: str, counts: dict[str, int]) -> str:
    """``folder/sizes.json``: shard file name -> sample count, plus the total."""
    path = join(folder, SIZES)
    ordered = {name: int(counts[name]) for name in sorted(counts)}
    write_text_atomic(path, json.dumps({**ordered, TOTAL: sum(ordered.values())}, indent=2) + "\n")
    return path


def read_sizes(folder: str) -> dict[str, int]:
    """The shard counts of ``folder/sizes.json`` ({} when there is none)."""
    fs, path = fsspec.core.url_to_fs(join(folder, SIZES))
    if not fs.exists(path):
        return {}
    try:
        data = json.loads(fs.cat_file(path))
        return {name: int(count) for name, count in data.items() if not name.startswith("__")}
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{join(folder, SIZES)} is not a sizes manifest ({{shard: count}}): {exc}") from None


def list_shards(patterns: list[str]) -> list[str]:
    """The shard paths a user names, in order, local or remote, in every form the tools around
    write them: brace lists (``shards/{00000..00007}.tar``, webdataset's and OpenCLIP's), globs,
    a folder (its ``*.tar``: img2dataset's or our crawl's output folder), or a ``sizes.json``
    manifest (the shards it lists). A pattern naming nothing is an error."""
    import braceexpand

    paths: list[str] = []
    for pattern in patterns:
        if pattern.endswith(SIZES):
            folder = pattern[:-len(SIZES)].rstrip("/")
            counts = read_sizes(folder)
            if not counts:
                raise FileNotFoundError(f"{pattern}: no such manifest, or it lists no shard")
            paths += [f"{folder}/{name}" for name in sorted(counts)]
            continue
        for expanded in braceexpand.braceexpand(pattern):
            fs, root = fsspec.core.url_to_fs(expanded)
            protocol = expanded.split("://", 1)[0] + "://" if "://" in expanded else ""
            if any(char in expanded for char in "*?["):
                found = sorted(fs.glob(root))
                if not found:
                    raise FileNotFoundError(f"no shard matches {expanded!r}")
                paths += [protocol + path for path in found]
            elif fs.isdir(root):
                found = sorted(path for path in fs.ls(root, detail=False) if shards.is_shard(path))
                if not found:
                    raise FileNotFoundError(f"{expanded}: a folder without .tar shards")
                paths += [protocol + path for path in found]
            else:
                paths.append(expanded)
    if not paths:
        raise FileNotFoundError(f"no shards in {patterns}")
    return list(dict.fromkeys(paths))


def write_success(folder: str) -> str:
    """The marker a complete output gets last: its readers may trust every other file."""
    path = join(folder, SUCCESS)
    write_text_atomic(path, "")
    return path


def is_complete(folder: str) -> bool:
    fs, path = fsspec.core.url_to_fs(join(folder, SUCCESS))
    return fs.exists(path)


# -- other tools' counts ----------------------------------------------------------------------------
def stats_path(shard: str) -> str:
    """img2dataset's per-shard stats file: ``00012.tar`` -> ``00012_stats.json``."""
    return shards.shard_stem(shard) + STATS_SUFFIX


def read_stats_count(shard: str, fs=None, local_path: str | None = None) -> int | None:
    """``successes`` of the shard's ``_stats.json``, or None when it has none."""
    if fs is None:
        fs, local_path = fsspec.core.url_to_fs(stats_path(shard))
    if not fs.exists(local_path):
        return None
    try:
        return int(json.loads(fs.cat_file(local_path))["successes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{stats_path(shard)}: no sample count (`successes`) in it: {exc}") from None


def count_tar(path: str) -> int:
    """Distinct sample keys in a local tar, from its headers only: each 512-byte ustar header is
    read and the member's data seeked over (4x faster than ``tarfile``, which builds a
    ``TarInfo`` per member); a tar with GNU or pax extended headers goes through ``tarfile``."""
    keys: set[str] = set()
    with open(path, "rb") as handle:
        while True:
            header = handle.read(512)
            if len(header) < 512 and handle.tell() == len(header):
                return _count_with_tarfile(path)  # shorter than one header: compressed, or not a tar
            if len(header) < 512 or header == bytes(512):
                return len(keys)  # the end-of-archive blocks (or a truncated tail)
            kind = header[156:157]
            size = _octal(header[124:136])
            if kind not in REGULAR + OTHER or size is None or _octal(header[148:156]) != _checksum(header):
                return _count_with_tarfile(path)  # GNU long names, pax headers, not a plain tar: tarfile
            if kind in REGULAR:
                name = header[:100].split(b"\0", 1)[0]
                if header[257:262] == b"ustar" and header[345]:
                    name = header[345:500].split(b"\0", 1)[0] + b"/" + name
                key = sample_key(name.decode("utf-8", "surrogateescape"))
                if key is not None:
                    keys.add(key)
            handle.seek((size + 511) // 512 * 512, os.SEEK_CUR)


REGULAR = (b"0", b"\0", b"7")  # what tarfile's isreg() accepts
OTHER = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, fifos: no sample


def _checksum(header: bytes) -> int:
    return sum(header[:148]) + 8 * 32 + sum(header[156:])  # the checksum field counted as spaces


def _octal(field: bytes) -> int | None:
    if field[:1] and field[0] & 0x80:  # base-256 (members over 8 GiB): rare, leave it to tarfile
        return None
    digits = field.split(b"\0", 1)[0].strip()
    try:
        return int(digits or b"0", 8)
    except ValueError:
        return None


def _count_with_tarfile(path: str) -> int:
    keys = set()
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for info in tar:
                key = sample_key(info.name) if info.isreg() else None
                if key is not None:
                    keys.add(key)
    except (tarfile.TarError, EOFError) as exc:  # truncated: count what is there, as training reads it
        log.warning("%s is damaged; counted the %d samples before the damage: %s", path, len(keys), exc)
    return len(keys)


# -- the count of every shard ------------------------------------------------------------------------
def _is_local(path: str) -> bool:
    return "file" in fsspec.core.url_to_fs(path)[0].protocol


def _cached_counts(folder: str, names: list[str]) -> dict[str, int]:
    """Counts of local tars from their headers, through the folder's cache file."""
    cache_path = os.path.join(folder, CACHE)
    try:
        with open(cache_path) as handle:
            cache = json.load(handle)
    except (OSError, ValueError):
        cache = {}
    counts, changed = {}, False
    for name in names:
        if not os.path.isfile(os.path.join(folder, name)):
            continue  # a missing shard is the caller's to report
        stat = os.stat(os.path.join(folder, name))
        entry = cache.get(name)
        if not (isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime):
            entry = {"size": stat.st_size, "mtime": stat.st_mtime, "samples": count_tar(os.path.join(folder, name))}
            cache[name], changed = entry, True
        counts[name] = int(entry["samples"])
    if changed and os.access(folder, os.W_OK):
        note = "sample counts of these tars from their headers (wit, core.sizes); safe to delete"
        write_text_atomic(cache_path, json.dumps({"__note__": note, **{k: v for k, v in cache.items()
                                                                      if not k.startswith("__")}}, indent=1))
    return counts


def folder_counts(folder: str, names: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Counts for the shards ``names`` of one folder, and where each came from."""
    counts, sources = {}, {}
    manifest = read_sizes(folder)
    for name in names:
        if name in manifest:
            counts[name], sources[name] = manifest[name], SIZES
    rest = [name for name in names if name not in counts]
    if rest:
        fs, root = fsspec.core.url_to_fs(folder)
        for name in rest:
            found = read_stats_count(join(folder, name), fs, stats_path(f"{root.rstrip('/')}/{name}"))
            if found is not None:
                counts[name], sources[name] = found, STATS_SUFFIX
    rest = [name for name in names if name not in counts]
    if rest and _is_local(folder):
        local = fsspec.core.url_to_fs(folder)[1]
        for name, count in _cached_counts(local, rest).items():
            counts[name], sources[name] = count, "tar headers"
    return counts, sources


def shard_counts(paths: list[str]) -> tuple[dict[str, int | None], dict[str, str]]:
    """Each shard's sample count (None when no source knows it) and the source of it."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder, []).append(name)
    counts: dict[str, int | None] = {}
    sources: dict[str, str] = {}
    for folder, names in by_folder.items():
        found, where = folder_counts(folder, names)
        for name in names:
            counts[f"{folder}/{name}"] = found.get(name)
            if name in where:
                sources[f"{folder}/{name}"] = where[name]
    return counts, sources


def missing_counts_message(paths: list[str]) -> str:
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return (f"sample counts unknown for {len(paths)} shard(s) ({shown}): remote tars are not downloaded to be "
            f"counted. Give the counts in one of three ways: a {SIZES} beside the shards ({{\"00000.tar\": N, ...}}, "
            f"as the crawl writes), img2dataset's per-shard {{shard}}{STATS_SUFFIX} files beside them, or "
            "--train-num-samples N")


def main(argv: list[str] | None = None) -> int:
    import braceexpand

    patterns = sys.argv[1:] if argv is None else argv
    paths = [path for pattern in patterns for path in braceexpand.braceexpand(pattern)]
    counts, sources = shard_counts(paths)
    for path in paths:
        print(f"{path}\t{counts[path] if counts[path] is not None else '?'}\t{sources.get(path, 'unknown')}")
    known = [count for count in counts.values() if count is not None]
    print(f"total\t{sum(known)}\t{len(known)} of {len(paths)} shards counted")
    return 0 if len(known) == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
