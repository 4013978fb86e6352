"""Reading images for dedup: folders, globs and webdataset shards, through fsspec.

A webdataset sample is the run of tar members sharing a key (the name up to the first dot of
its last path part); members are kept byte for byte so a cleaned shard can be rewritten with the
exact bytes it came with. Members a shard must not hold (links, directories, devices, names that
are absolute or climb out with ``..``: :func:`pipeline.shards.member_problem`) are not read; each
yields a ``TarSkipped`` record. A tar that breaks part-way yields what it read, then one
``TarDamaged`` record. Either way the caller counts the loss instead of losing it.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from typing import Iterator

import fsspec

from pipeline.shards import member_problem

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
SHARD_SUFFIX = ".tar"


@dataclass
class TarSample:
    key: str
    members: list[tuple[str, bytes]] = field(default_factory=list)  # (member name, bytes), in tar order

    def image(self) -> tuple[str, bytes] | None:
        for name, data in self.members:
            if name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                return name, data
        return None

    def get(self, extension: str) -> bytes | None:
        for name, data in self.members:
            if name.lower().endswith("." + extension):
                return data
        return None


@dataclass
class TarDamaged:
    error: str


@dataclass
class TarSkipped:
    name: str  # the member's name, cut to 200 characters
    reason: str


def sample_key(member: str) -> str:
    directory, _, base = member.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{directory}/{stem}" if directory else stem


def read_tar(path: str) -> Iterator[TarSample | TarSkipped | TarDamaged]:
    """Samples of a webdataset tar in order, a :class:`TarSkipped` for each member not read; a
    damaged tar ends with a :class:`TarDamaged`."""
    current: TarSample | None = None
    try:
        with fsspec.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
            for info in tar:
                problem = member_problem(info)
                if problem:
                    yield TarSkipped(info.name[:200], problem)
                    continue
                key = sample_key(info.name)
                data = tar.extractfile(info).read()
                if current is not None and current.key != key:
                    yield current
                    current = None
                if current is None:
                    current = TarSample(key)
                current.members.append((info.name, data))
    except (tarfile.TarError, OSError, EOFError) as exc:
        if current is not None:
            yield current
        yield TarDamaged(f"{type(exc).__name__}: {exc}")
        return
    if current is not None:
        yield current


def list_images(spec: str) -> list[tuple[str, str]]:
    """(eval_id, source) for a folder (recursive), a glob, or one file. Webdataset tars are listed
    like image files; the caller reads their samples."""
    fs, root = fsspec.core.url_to_fs(spec)
    protocol = spec.split("://", 1)[0] + "://" if "://" in spec else ""
    if fs.isdir(root):
        found = [path for path in fs.find(root) if _wanted(path)]
        base = root.rstrip("/") + "/"
        return sorted((path[len(base):], protocol + path) for path in found)
    if any(char in spec for char in "*?["):
        matched = sorted(fs.glob(root))
        if not matched:
            raise FileNotFoundError(f"no image matches {spec!r}")
        return [(path.rsplit("/", 1)[-1], protocol + path) for path in matched if _wanted(path)]
    if not fs.exists(root):
        raise FileNotFoundError(f"{spec}: no such file or folder")
    return [(root.rsplit("/", 1)[-1], spec)]


def _wanted(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name.endswith(SHARD_SUFFIX) or name.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS
