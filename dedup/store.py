"""The evaluation index: what it holds and how it sits on disk (local or ``gs://``).

One index holds one or more evaluation sets (``eval_set`` per item). ``INDEX_DIR/``:

* ``index.json``: format, name, the sets with their counts, :class:`dedup.features.FeatureConfig`,
  the versions of every library whose code made the codes (imagededup, OpenCV, faiss, NumPy,
  Pillow, wit), counts, and the size of every array file. Written last: its presence means the
  index is whole.
* ``items.parquet``: one row per evaluation image, in (``eval_set``, ``eval_id``) order:
  ``eval_set``, ``eval_id`` (its path or member name), ``label``, ``width``, ``height``,
  ``status`` (``ok`` or ``unreadable``), ``error``, ``source`` (where to read it again) and a small
  JPEG ``thumbnail`` for the report. Audit workers read only the first two columns.
* ``.npy`` arrays, memory-mapped at audit time (never copied into a worker, shared through the
  page cache by every process of a machine):
  ``descriptors`` (m, 32) uint8 ORB descriptors, item-major; ``keypoints`` (m, 2) uint8 their
  positions in the 256 px image; ``item_descriptors`` (items + 1) int64 where each item's start;
  ``hashes`` (n, 8) uint8 PHash codes of the hash views, item-major, ``item_hashes`` (items + 1);
  ``hash_order`` and ``hash_starts``: the multi-index hash tables (:mod:`dedup.hashindex`);
  ``vocab`` the vocabulary tree, ``postings`` (m,) int32 item rows by word and ``word_starts``
  (:mod:`dedup.vocab`); ``aspect`` (items,) float32 width / height.

An index on ``gs://`` (or any remote fsspec path) is copied once per machine into a local cache
(``$WIT_DEDUP_CACHE``, default ``~/.cache/wit/dedup``) and mapped from there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedup import hashindex, vocab
from dedup.features import FeatureConfig
from core.storage import join, write_bytes_atomic, write_parquet_atomic, write_text_atomic

FORMAT = "wit-dedup-index/2"
ALGORITHM = "imagededup-phash-views+orb-vocabulary-tree+affine-ransac"
ARRAYS = ("descriptors", "keypoints", "item_descriptors", "hashes", "item_hashes", "hash_order", "hash_starts",
          "vocab", "postings", "word_starts", "aspect")
ITEM_SCHEMA = pa.schema([
    ("eval_set", pa.string()), ("eval_id", pa.string()), ("label", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("status", pa.string()), ("error", pa.string()), ("source", pa.string()),
    ("thumbnail", pa.binary()),
])
KEY_COLUMNS = ["eval_set", "eval_id"]  # what a worker reads of items.parquet


class IndexError_(ValueError):
    """An index that is missing, empty, damaged or not comparable with another; says which."""


def library_versions() -> dict[str, str]:
    import cv2
    import faiss
    import imagededup
    import PIL

    from core import __version__

    return {"wit": __version__, "imagededup": imagededup.__version__, "opencv": cv2.__version__,
            "faiss": faiss.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "python": platform.python_version()}


@dataclass
class EvalSet:
    """One evaluation set of an index, as the report reads it (every column, thumbnails too)."""

    name: str
    items: list[dict]
    index: "EvalIndex"

    @property
    def readable(self) -> int:
        return sum(item["status"] == "ok" for item in self.items)

    def summary(self) -> dict:
        return {**self.index.summary(), "eval_set": self.name}


@dataclass
class EvalIndex:
    """An index: its arrays (memory-mapped when loaded from a folder) and its item keys.

    Pickles as its path when it has one (a Beam side input carries a few bytes, and each worker
    maps the files itself); an index built in memory pickles whole."""

    name: str
    config: FeatureConfig
    arrays: dict[str, np.ndarray]
    keys: pa.Table  # eval_set, eval_id per item row
    meta: dict = field(default_factory=dict)
    path: str | None = None
    _items: list[dict] | None = None

    def __reduce__(self):
        if self.path is not None:
            return load, (self.path,)
        return EvalIndex, (self.name, self.config, {k: np.asarray(v) for k, v in self.arrays.items()}, self.keys,
                           self.meta, None, self.items)

    def __getattr__(self, name: str):
        arrays = self.__dict__.get("arrays") or {}
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def __len__(self) -> int:
        return self.keys.num_rows

    @property
    def items(self) -> list[dict]:
        """Every column of every item (thumbnails included): for reports, not for workers."""
        if self._items is None:
            self._items = _read_items(self.path)
        return self._items

    @property
    def sets(self) -> list[str]:
        return list(dict.fromkeys(self.keys.column("eval_set").to_pylist()))

    @property
    def readable(self) -> int:
        return int(np.count_nonzero(np.diff(self.arrays["item_hashes"])))

    def key(self, row: int) -> tuple[str, str]:
        return self.keys.column("eval_set")[row].as_py(), self.keys.column("eval_id")[row].as_py()

    def eval_sets(self) -> list[EvalSet]:
        grouped: dict[str, list[dict]] = {name: [] for name in self.sets}
        for item in self.items:
            grouped[item["eval_set"]].append(item)
        return [EvalSet(name, items, self) for name, items in grouped.items()]

    def nbytes(self) -> int:
        """Bytes of the arrays a worker maps (what the index costs per machine in memory)."""
        return sum(array.nbytes for array in self.arrays.values()) + self.keys.nbytes

    def summary(self) -> dict:
        sets = {}
        for name, ok in zip(self.keys.column("eval_set").to_pylist(), np.diff(self.arrays["item_hashes"]) > 0):
            entry = sets.setdefault(name, {"items": 0, "readable": 0})
            entry["items"] += 1
            entry["readable"] += bool(ok)
        return {"format": FORMAT, "name": self.name, "algorithm": ALGORITHM, "config": self.config.to_dict(),
                "versions": self.meta.get("versions") or library_versions(), "sets": sets,
                "counts": {"items": len(self), "readable": self.readable, "unreadable": len(self) - self.readable,
                           "hashes": int(len(self.arrays["hashes"])),
                           "descriptors": int(len(self.arrays["descriptors"])),
                           "words": int(len(self.arrays["word_starts"]) - 1)},
                "bytes": {name: int(array.nbytes) for name, array in self.arrays.items()},
                "labelled": self.meta.get("labelled", False)}


# -- building ----------------------------------------------------------------------------------------
def assemble(name: str, config: FeatureConfig, described: list[dict], seed: int = 0) -> EvalIndex:
    """An index from per-image records (see :func:`dedup.index.describe`; ``eval_set`` defaults
    to ``name``), in (``eval_set``, ``eval_id``) order, its search structures built here."""
    described = sorted(described, key=lambda record: (record.get("eval_set") or name, record["eval_id"]))
    hashes, descriptors, points, hash_counts, descriptor_counts, aspect = [], [], [], [], [], []
    for record in described:
        ok = record["status"] == "ok"
        codes = record["hashes"] if ok else np.zeros((0, 8), np.uint8)
        found, described_codes = record["orb"] if ok else (np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
        hashes.append(codes)
        descriptors.append(described_codes)
        points.append(np.clip(np.floor(found), 0, 255).astype(np.uint8))
        hash_counts.append(len(codes))
        descriptor_counts.append(len(described_codes))
        aspect.append(record["width"] / record["height"] if ok else 1.0)
    descriptors = np.concatenate(descriptors) if descriptors else np.zeros((0, 32), np.uint8)
    hashes = np.concatenate(hashes) if hashes else np.zeros((0, 8), np.uint8)
    item_descriptors = np.concatenate([[0], np.cumsum(descriptor_counts)]).astype(np.int64)
    item_of = np.repeat(np.arange(len(described), dtype=np.int32), descriptor_counts)
    levels = vocab.levels_for(len(descriptors), config.vocab_branching, config.vocab_per_word)
    nodes = vocab.train(descriptors, config.vocab_branching, levels, seed)
    words = np.concatenate([vocab.assign(nodes, descriptors[start:start + 100_000])[:, 0]
                            for start in range(0, len(descriptors), 100_000)] or [np.zeros(0, np.int64)])
    postings, word_starts = vocab.postings(words, item_of, vocab.word_count(nodes))
    order, starts = hashindex.build(hashes)
    arrays = {"descriptors": descriptors, "keypoints": np.concatenate(points) if points else np.zeros((0, 2), np.uint8),
              "item_descriptors": item_descriptors,
              "hashes": hashes, "item_hashes": np.concatenate([[0], np.cumsum(hash_counts)]).astype(np.int64),
              "hash_order": order, "hash_starts": starts, "vocab": nodes, "postings": postings,
              "word_starts": word_starts, "aspect": np.array(aspect, np.float32)}
    items = [{key: (record.get(key) or name) if key == "eval_set" else record.get(key) for key in ITEM_SCHEMA.names}
             for record in described]
    keys = pa.Table.from_pylist([{k: item[k] for k in KEY_COLUMNS} for item in items],
                                schema=pa.schema([ITEM_SCHEMA.field(k) for k in KEY_COLUMNS]))
    labelled = any(item.get("label") is not None for item in items)
    return EvalIndex(name, config, arrays, keys, {"versions": library_versions(), "labelled": labelled},
                     _items=items)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save(index: EvalIndex, out: str) -> dict:
    for name in ARRAYS:
        write_bytes_atomic(join(out, f"{name}.npy"), _npy(index.arrays[name]))
    write_parquet_atomic(join(out, "items.parquet"), pa.Table.from_pylist(index.items, schema=ITEM_SCHEMA),
                         row_group_size=8192)
    summary = index.summary()
    write_text_atomic(join(out, "index.json"), json.dumps(summary, indent=2) + "\n")  # last: the index is whole
    return summary


# -- loading -----------------------------------------------------------------------------------------
def rebuild_hint(path: str, meta: dict) -> str:
    name = meta.get("name", "NAME")
    return (f"rebuild it with this wit: `wit dedup index --name {name} --images SOURCES --out {path}` "
            f"(one --set NAME=SOURCES per evaluation set; the old items.parquet lists each image's source)")


def _local_copy(path: str) -> Path:
    """A local folder holding the index at ``path``: itself when local, else a copy in the cache
    (made once per machine and index version: the name hashes the path and its index.json)."""
    fs, root = fsspec.core.url_to_fs(path)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return Path(root)
    meta_path = join(root, "index.json")
    if not fs.exists(meta_path):
        raise IndexError_(f"{path}: no index.json: not a dedup index (build one with `wit dedup index`)")
    meta_bytes = fs.cat_file(meta_path)
    cache = Path(os.environ.get("WIT_DEDUP_CACHE") or Path.home() / ".cache" / "wit" / "dedup")
    folder = cache / hashlib.sha256(path.encode() + b"\0" + meta_bytes).hexdigest()[:24]
    if (folder / "index.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"{array}.npy" for array in ARRAYS] + ["items.parquet"]:
        if fs.exists(join(root, name)):
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            os.close(handle)
            fs.get_file(join(root, name), temporary)
            os.replace(temporary, folder / name)
    temporary = folder / ".index.json.partial"
    temporary.write_bytes(meta_bytes)
    os.replace(temporary, folder / "index.json")  # last: the copy is whole
    return folder


def load(path: str) -> EvalIndex:
    """The index at ``path`` with its arrays memory-mapped (read-only); :class:`IndexError_` when
    it is not one, is damaged, or was built by another format (with the command to rebuild it)."""
    folder = _local_copy(path)
    meta_path = folder / "index.json"
    if not meta_path.exists():
        raise IndexError_(f"{path}: no index.json: not a dedup index (build one with `wit dedup index`)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise IndexError_(f"{path}: index format {meta.get('format')!r}, this wit reads {FORMAT!r}: "
                          + rebuild_hint(path, meta))
    arrays = {}
    for name in ARRAYS:
        try:
            # a plain ndarray view of the mapping: np.memmap's own slicing costs ~10 us a call
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise IndexError_(f"{path}: {name}.npy is missing or damaged ({exc}): " + rebuild_hint(path, meta)) from None
    try:
        keys = pq.read_table(folder / "items.parquet", columns=KEY_COLUMNS)
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise IndexError_(f"{path}: items.parquet is missing or damaged ({exc}): " + rebuild_hint(path, meta)) from None
    index = EvalIndex(meta["name"], FeatureConfig.from_dict(meta["config"]), arrays, keys, meta=meta, path=path)
    counts = meta["counts"]
    if (len(index) != counts["items"] or len(arrays["descriptors"]) != counts["descriptors"]
            or len(arrays["item_descriptors"]) != len(index) + 1 or len(arrays["hashes"]) != counts["hashes"]
            or int(arrays["item_hashes"][-1]) != counts["hashes"] or len(arrays["postings"]) != counts["descriptors"]):
        raise IndexError_(f"{path}: files disagree with index.json counts {counts}: " + rebuild_hint(path, meta))
    if index.readable == 0:
        raise IndexError_(f"{path}: index {index.name!r} holds no readable image ({len(index)} listed)")
    return index


def _read_items(path: str | None) -> list[dict]:
    if path is None:
        return []
    return pq.read_table(_local_copy(path) / "items.parquet").to_pylist()


def load_indexes(paths: list[str]) -> list[EvalIndex]:
    """Indexes searched together, loaded and checked against each other."""
    indexes = [load(path) for path in paths]
    check_compatible(indexes)
    return indexes


def eval_sets(indexes: list[EvalIndex]) -> list[EvalSet]:
    """Every evaluation set of the indexes, in order: what the report tabulates."""
    return [found for index in indexes for found in index.eval_sets()]


def check_compatible(indexes: list[EvalIndex]) -> None:
    """Indexes searched together must be built alike, and their sets named apart."""
    if not indexes:
        raise IndexError_("no index given (--index INDEX_DIR, repeatable)")
    first = indexes[0]
    names = [name for index in indexes for name in index.sets]
    if len(set(names)) != len(names):
        raise IndexError_(f"two indexes hold a set of the same name: {names}; rebuild one with another --name")
    for other in indexes[1:]:
        if other.config != first.config:
            raise IndexError_(f"index {other.name!r} was built with {other.config.to_dict()}, index {first.name!r} "
                              f"with {first.config.to_dict()}: rebuild them with the same wit")
        mine, theirs = first.meta.get("versions", {}), other.meta.get("versions", {})
        for library in ("imagededup", "opencv"):
            if mine.get(library) != theirs.get(library):
                raise IndexError_(f"index {other.name!r} was made with {library} {theirs.get(library)}, index "
                                  f"{first.name!r} with {mine.get(library)}: codes differ between versions")
