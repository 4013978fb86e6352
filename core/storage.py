"""Writing outputs to any fsspec path (local or ``gs://``) without leaving partial files.

Beam runners retry failed bundles (Dataflow up to 4 times), so every file a job writes goes to
a deterministic temporary name beside its target and is renamed into place: a retry rewrites
the same bytes, and a reader never sees half a file. Object stores (``gs://``, ``s3://``) need
no rename: an object becomes visible only when its upload completes, whole (and gcsfs's rename
is a copy plus a delete, or a 30 s retry loop on servers without the move API).
"""

from __future__ import annotations

import fsspec


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/")] + [name.strip("/") for name in names])


def is_object_store(fs) -> bool:
    """Whether a filesystem (or the one a path names) is an object store: no rename, no append."""
    if isinstance(fs, str):
        fs = fsspec.core.url_to_fs(fs)[0]
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("gs", "gcs", "s3", "s3a", "az", "abfs", "memory") for p in protocols)


def write_bytes_atomic(path: str, data: bytes) -> None:
    fs, target = fsspec.core.url_to_fs(path)
    if is_object_store(fs):
        with fs.open(target, "wb") as handle:
            handle.write(data)
        return
    parent = target.rsplit("/", 1)[0] if "/" in target else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    temporary = f"{parent}/.{target.rsplit('/', 1)[-1]}.tmp" if parent else f".{target}.tmp"
    with fs.open(temporary, "wb") as handle:
        handle.write(data)
    fs.mv(temporary, target)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def expand_globs(patterns: list[str]) -> list[str]:
    """Expand local or remote globs to a sorted list of full paths; a pattern matching nothing fails."""
    paths: list[str] = []
    for pattern in patterns:
        files = fsspec.open_files(pattern)
        if not files:
            raise FileNotFoundError(f"no input matches {pattern!r}")
        paths.extend(f.full_name for f in files)
    return sorted(dict.fromkeys(paths))


def parquet_bytes(table, **options) -> bytes:
    """A pyarrow table as parquet bytes, zstd-compressed unless ``options`` say otherwise."""
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, **{"compression": "zstd", **options})
    return buffer.getvalue()


def write_parquet_atomic(path: str, table, **options) -> None:
    """Every table a job writes goes through here: whole or not at all, as any other output."""
    write_bytes_atomic(path, parquet_bytes(table, **options))
