"""The evaluation-set index: what it holds and how it sits on disk (local or ``gs://``).

``INDEX_DIR/``:

* ``index.json``: format, name, :class:`dedup.features.FeatureConfig`, the versions of every
  library whose code made the codes (imagededup, OpenCV, faiss, NumPy, Pillow, wit), counts.
* ``items.parquet``: one row per evaluation image: ``eval_id`` (its path or member name),
  ``label``, ``width``, ``height``, ``status`` (``ok`` or ``unreadable``), ``error``, ``source``
  (where to read it again) and a small JPEG ``thumbnail`` for the audit report.
* ``hashes.npy`` (n, 8) uint8 PHash codes and ``hash_items.npy`` (n,) int32 item rows.
* ``descriptors.npy`` (m, 32) uint8 ORB descriptors, ``keypoints.npy`` (m, 2) float32 and
  ``groups.npy`` (m,) int32 = item row * 6 + view (:data:`dedup.features.ORB_VIEWS`).
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.features import FeatureConfig
from wit.storage import join, write_bytes_atomic, write_text_atomic

FORMAT = "wit-dedup-index/1"
ALGORITHM = "imagededup-phash-views+orb-affine-ransac"
ARRAYS = ("hashes", "hash_items", "descriptors", "keypoints", "groups")
ITEM_SCHEMA = pa.schema([
    ("eval_id", pa.string()), ("label", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("status", pa.string()), ("error", pa.string()), ("source", pa.string()), ("thumbnail", pa.binary()),
])


class IndexError_(ValueError):
    """An index that is missing, empty, damaged or not comparable with another; says which."""


def library_versions() -> dict[str, str]:
    import cv2
    import faiss
    import imagededup
    import PIL

    from wit import __version__

    return {"wit": __version__, "imagededup": imagededup.__version__, "opencv": cv2.__version__,
            "faiss": faiss.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "python": platform.python_version()}


@dataclass
class EvalIndex:
    name: str
    config: FeatureConfig
    items: list[dict]
    hashes: np.ndarray
    hash_items: np.ndarray
    descriptors: np.ndarray
    keypoints: np.ndarray
    groups: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def readable(self) -> int:
        return sum(item["status"] == "ok" for item in self.items)

    def summary(self) -> dict:
        return {"format": FORMAT, "name": self.name, "algorithm": ALGORITHM, "config": self.config.to_dict(),
                "versions": self.meta.get("versions") or library_versions(),
                "counts": {"items": len(self.items), "readable": self.readable,
                           "unreadable": len(self.items) - self.readable, "hashes": int(len(self.hashes)),
                           "descriptors": int(len(self.descriptors))},
                "labelled": any(item.get("label") is not None for item in self.items)}


def assemble(name: str, config: FeatureConfig, described: list[dict]) -> EvalIndex:
    """An index from per-image records (see :func:`dedup.index.describe`), in ``eval_id`` order."""
    described = sorted(described, key=lambda record: record["eval_id"])
    hashes, hash_items, descriptors, keypoints, groups = [], [], [], [], []
    for row, record in enumerate(described):
        if record["status"] != "ok":
            continue
        hashes.append(record["hashes"])
        hash_items.append(np.full(len(record["hashes"]), row, np.int32))
        for view, (points, codes) in enumerate(record["orb"]):
            descriptors.append(codes)
            keypoints.append(points)
            groups.append(np.full(len(codes), row * 6 + view, np.int32))

    def cat(parts, shape, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)

    items = [{key: record.get(key) for key in ITEM_SCHEMA.names} for record in described]
    return EvalIndex(name, config, items, cat(hashes, (0, 8), np.uint8), cat(hash_items, (0,), np.int32),
                     cat(descriptors, (0, 32), np.uint8), cat(keypoints, (0, 2), np.float32),
                     cat(groups, (0,), np.int32), {"versions": library_versions()})


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def save(index: EvalIndex, out: str) -> dict:
    for name in ARRAYS:
        write_bytes_atomic(join(out, f"{name}.npy"), _npy(getattr(index, name)))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(index.items, schema=ITEM_SCHEMA), buffer, compression="zstd")
    write_bytes_atomic(join(out, "items.parquet"), buffer.getvalue())
    summary = index.summary()
    write_text_atomic(join(out, "index.json"), json.dumps(summary, indent=2) + "\n")  # last: the index is whole
    return summary


def load(path: str) -> EvalIndex:
    fs, root = fsspec.core.url_to_fs(path)
    meta_path = join(root, "index.json")
    if not fs.exists(meta_path):
        raise IndexError_(f"{path}: no index.json: not a dedup index (build one with `wit dedup index`)")
    meta = json.loads(fs.cat_file(meta_path))
    if meta.get("format") != FORMAT:
        raise IndexError_(f"{path}: index format {meta.get('format')!r}, this wit reads {FORMAT!r}: rebuild it")
    arrays = {}
    for name in ARRAYS:
        try:
            arrays[name] = np.load(io.BytesIO(fs.cat_file(join(root, f"{name}.npy"))), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise IndexError_(f"{path}: {name}.npy is missing or damaged ({exc}): rebuild the index") from None
    items = pq.read_table(io.BytesIO(fs.cat_file(join(root, "items.parquet")))).to_pylist()
    index = EvalIndex(meta["name"], FeatureConfig.from_dict(meta["config"]), items, meta=meta, **arrays)
    if len(items) != meta["counts"]["items"] or len(index.descriptors) != meta["counts"]["descriptors"]:
        raise IndexError_(f"{path}: files disagree with index.json counts {meta['counts']}: rebuild the index")
    if index.readable == 0:
        raise IndexError_(f"{path}: index {index.name!r} holds no readable image ({len(items)} listed)")
    return index


def load_indexes(paths: list[str]) -> list[EvalIndex]:
    """Indexes searched together, loaded and checked against each other."""
    indexes = [load(path) for path in paths]
    check_compatible(indexes)
    return indexes


def check_compatible(indexes: list[EvalIndex]) -> None:
    """Indexes searched together must be built alike and named apart."""
    if not indexes:
        raise IndexError_("no index given (--index INDEX_DIR, repeatable)")
    first = indexes[0]
    names = [index.name for index in indexes]
    if len(set(names)) != len(names):
        raise IndexError_(f"two indexes share a name: {names}; rebuild one with another --name")
    for other in indexes[1:]:
        if other.config != first.config:
            raise IndexError_(f"index {other.name!r} was built with {other.config.to_dict()}, index {first.name!r} "
                              f"with {first.config.to_dict()}: rebuild them with the same wit")
        mine, theirs = first.meta.get("versions", {}), other.meta.get("versions", {})
        for library in ("imagededup", "opencv"):
            if mine.get(library) != theirs.get(library):
                raise IndexError_(f"index {other.name!r} was made with {library} {theirs.get(library)}, index "
                                  f"{first.name!r} with {mine.get(library)}: codes differ between versions")
