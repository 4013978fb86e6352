"""The shard contract: the one owner of how a webdataset shard set lies on disk.

Every stage that writes or reads shards (the crawl, its exact-duplicate pass, the dedup audit
and its clean copies, the trainer's stream, the sample counts in :mod:`core.sizes`) goes through
this module, so the rules below hold everywhere:

- **Names**: shard ``n`` of a crawl is ``{n:05d}.tar`` with ``{n:05d}.parquet`` (one status row
  per input url) and ``{n:05d}_stats.json`` beside it (img2dataset's layout).
- **Sample key** (webdataset's ``base_plus_ext``): a member ``dir/abc.def.jpg`` belongs to sample
  ``dir/abc`` with extension ``def.jpg``: the key is the path up to the first dot of the last path
  part. Consecutive members with one key form a sample.
- **Members kept**: regular files with plain relative names (:func:`member_problem`); links,
  directories, devices and names that climb out are dropped and reported, never read.
- **Writing**: ustar tars with fixed member metadata, so equal samples give equal bytes.
- **Status table**: :data:`STATUS_SCHEMA`, one row per url, ``status`` one of :data:`STATUSES`.
- **Errors**: a reader never loses a member or a damaged tail silently. It hands a
  :class:`TarSkipped` or :class:`TarDamaged` record to its ``handler`` (webdataset's error-policy
  argument): :func:`report_problems`, the default, yields them to the caller, who counts them;
  :func:`raise_problems` raises :class:`ShardError` naming the file.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from core.storage import join, parquet_bytes

SHARD_SUFFIX = ".tar"
STATUS_SUFFIX = ".parquet"
STATS_SUFFIX = "_stats.json"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
TEXT_EXTENSIONS = ("txt", "json")

STATUSES = ("success", "failed_to_download", "failed_to_resize", "filtered", "duplicate", "opted_out", "blocked",
            "eval_duplicate")

STATUS_SCHEMA = pa.schema([
    ("key", pa.string()), ("url", pa.string()), ("caption", pa.string()), ("status", pa.string()),
    ("error_message", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("original_width", pa.int32()), ("original_height", pa.int32()), ("sha256", pa.string()),
    ("phash", pa.string()), ("uid", pa.string()), ("entry_ids", pa.list_(pa.int32())),
    ("final_url", pa.string()), ("attempts", pa.int32()),
])


# -- names ---------------------------------------------------------------------------------------
def shard_names(out: str, shard: int) -> dict[str, str]:
    """The three files of crawl shard ``shard`` under ``out``: ``tar``, ``parquet``, ``stats``."""
    stem = join(out, f"{shard:05d}")
    return {"tar": stem + SHARD_SUFFIX, "parquet": stem + STATUS_SUFFIX, "stats": stem + STATS_SUFFIX}


def shard_stem(path: str) -> str:
    """``gs://b/x/00003.tar`` -> ``gs://b/x/00003``: where the shard's sibling files start."""
    return path[:-len(SHARD_SUFFIX)] if path.endswith(SHARD_SUFFIX) else path


def is_shard(path: str) -> bool:
    return path.lower().endswith(SHARD_SUFFIX)



# -- the sample-key rule -------------------------------------------------------------------------
def split_member(name: str) -> tuple[str, str]:
    """``dir/abc.def.jpg`` -> (``dir/abc``, ``def.jpg``): the sample key and the extension."""
    directory, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), extension


def sample_key(name: str) -> str:
    return split_member(name)[0]


# -- which members a shard may hold --------------------------------------------------------------
_NOT_KEPT = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.DIRTYPE: "directory",
             tarfile.CHRTYPE: "device", tarfile.BLKTYPE: "device", tarfile.FIFOTYPE: "fifo"}
USTAR_NAME_BYTES = 100  # the longest name a ustar header holds in its name field alone


def member_problem(info: tarfile.TarInfo) -> str:
    """Why a member of a tar read back as a shard is dropped, or "" when it is kept.

    Kept: regular files whose names are plain relative paths (no empty or ``..`` part, no
    leading ``/``, no backslash, no NUL or other control character) short enough for a ustar
    header. Links, directories and devices are dropped: a cleaned shard must not carry what a
    later ``tar x`` could turn into a write outside its folder."""
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


# -- records a reader yields ---------------------------------------------------------------------
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

    def by_extension(self) -> dict[str, bytes]:
        """``{extension (lower case): bytes}``, the first member of each extension."""
        found: dict[str, bytes] = {}
        for name, data in self.members:
            found.setdefault(split_member(name)[1].lower(), data)
        return found


@dataclass
class TarSkipped:
    name: str  # the member's name, cut to 200 characters
    reason: str


@dataclass
class TarDamaged:
    error: str


Problem = TarSkipped | TarDamaged


class ShardError(ValueError):
    """A shard a strict reader (:func:`raise_problems`) could not read whole."""


def report_problems(problem: Problem, source: str) -> Problem:
    """The default policy: the problem goes to the caller as a record, to be counted."""
    return problem


def raise_problems(problem: Problem, source: str) -> Problem:
    """The strict policy: any dropped member or damaged tail stops the read."""
    if isinstance(problem, TarDamaged):
        raise ShardError(f"{source}: damaged tar: {problem.error}")
    raise ShardError(f"{source}: member {problem.name!r} not readable as a shard member: {problem.reason}")


Handler = Callable[[Problem, str], Problem]
READ_ERRORS = (tarfile.TarError, OSError, EOFError)


def read_tar(source: str | BinaryIO, handler: Handler = report_problems, name: str | None = None
             ) -> Iterator[TarSample | TarSkipped | TarDamaged]:
    """Samples of a webdataset tar in order, streamed. ``source`` is a path or url (opened with
    fsspec) or an open binary file. Each member not kept and a damaged tail (after the samples
    read before it) go through ``handler``."""
    label = name or (source if isinstance(source, str) else getattr(source, "name", "<stream>"))
    if isinstance(source, str):
        import fsspec

        try:
            with fsspec.open(source, "rb") as handle:
                yield from _read(handle, handler, str(label))
        except READ_ERRORS as exc:  # opening failed: nothing was read
            yield handler(TarDamaged(f"{type(exc).__name__}: {exc}"), str(label))
        return
    yield from _read(source, handler, str(label))


def _read(handle: BinaryIO, handler: Handler, label: str) -> Iterator[TarSample | TarSkipped | TarDamaged]:
    current: TarSample | None = None
    try:
        with tarfile.open(fileobj=handle, mode="r|*") as tar:
            for info in tar:
                problem = member_problem(info)
                if problem:
                    yield handler(TarSkipped(info.name[:200], problem), label)
                    continue
                key = sample_key(info.name)
                data = tar.extractfile(info).read()
                if current is not None and current.key != key:
                    yield current
                    current = None
                if current is None:
                    current = TarSample(key)
                current.members.append((info.name, data))
    except READ_ERRORS as exc:
        if current is not None:
            yield current
        yield handler(TarDamaged(f"{type(exc).__name__}: {exc}"), label)
        return
    if current is not None:
        yield current


# -- writing -------------------------------------------------------------------------------------
def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "wit", "wit"
    tar.addfile(info, io.BytesIO(data))


def write_tar(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A ustar tar of ``(name, bytes)`` members in the order given, fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            add_member(tar, name, data)
    return buffer.getvalue()


def samples_tar(samples: Iterable[TarSample]) -> bytes:
    return write_tar(member for sample in samples for member in sample.members)


# -- the status table and the per-shard stats ----------------------------------------------------
def status_parquet(rows: list[dict]) -> bytes:
    return parquet_bytes(pa.Table.from_pylist(rows, schema=STATUS_SCHEMA))


def read_status(out: str, shard: int, columns: list[str] | None = None) -> dict[str, list]:
    """A written shard's status parquet, column name -> values (one per input url, key order)."""
    import fsspec

    with fsspec.open(shard_names(out, shard)["parquet"], "rb") as handle:
        return pq.read_table(handle, columns=columns).to_pydict()


def stats_of(shard: int, outcomes: list[tuple[str, str]], tar_bytes: int, image_bytes: int) -> dict:
    """A shard's ``_stats.json`` from the (status, error message) of each of its urls; its
    ``successes`` is the shard's sample count, as in img2dataset's stats files."""
    counts = {status: 0 for status in STATUSES}
    reasons: dict[str, int] = {}
    for status, message in outcomes:
        counts[status] += 1
        if status != "success":
            reason = f"{status}: {(message or '').split(':')[0][:80]}"
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"shard": shard, "count": len(outcomes), "successes": counts["success"], "status": counts,
            "reasons": dict(sorted(reasons.items())), "tar_bytes": tar_bytes, "image_bytes": image_bytes}
