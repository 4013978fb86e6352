"""Listing the images of an evaluation set for dedup: folders, globs and webdataset shards,
through fsspec. Shards are read with :func:`core.shards.read_tar` (members kept byte for byte, so
a cleaned shard can be rewritten with the exact bytes it came with; dropped members and damaged
tails come back as records the caller counts).
"""

from __future__ import annotations

import fsspec

from core.shards import IMAGE_EXTENSIONS, SHARD_SUFFIX


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
