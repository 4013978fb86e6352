"""Evaluation-set readers, one interface: ``open_split(reader, path, split) -> EvalSplit``.

Readers (local paths or any fsspec url such as ``gs://``):

- ``wds``: CLIP_benchmark's webdataset layout, ``{split}/{0..n-1}.tar`` with ``{split}/nshards.txt``,
  ``classnames.txt``, ``zeroshot_classification_templates.txt`` and ``dataset_type.txt``
  (classification: ``.cls``; multilabel: ``.npy``; retrieval: ``.txt``, one caption a line).
- ``folder``: a torchvision image folder, ``{split}/{class}/{image}`` (or ``{class}/{image}``).
- ``labels_tsv``: our folder of images with ``labels.tsv`` (``file``, ``label`` = name or index).
- ``captions``: retrieval from a captions TSV (``file``, ``caption``; a row per caption) or a COCO
  captions JSON (``images`` + ``annotations``) beside or above the images.

An :class:`EvalSplit` streams :class:`Sample` s (key, encoded image, target) so an encoding pass
holds one batch of decoded images at a time.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import fsspec
import numpy as np

IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")
KINDS = ("classification", "multilabel", "retrieval")


@dataclass
class Sample:
    key: str
    image: bytes
    target: Any  # int (classification), 0/1 array (multilabel), list of captions (retrieval)


@dataclass
class EvalSplit:
    source: str
    split: str
    kind: str
    samples: Callable[[], Iterator[Sample]] = field(repr=False)
    classnames: list[str] | None = None
    templates: list[str] | None = None
    fingerprint: str = ""  # changes when the data does: part of the feature cache's key


def open_split(reader: str, path: str, split: str = "test", **options) -> EvalSplit:
    readers = {"wds": read_wds, "folder": read_folder, "labels_tsv": read_labels_tsv, "captions": read_captions}
    if reader not in readers:
        raise ValueError(f"unknown reader {reader!r} for {path}: use one of {', '.join(readers)}")
    return readers[reader](path.rstrip("/"), split, **options)


def _read_text(path: str) -> str | None:
    fs, target = fsspec.core.url_to_fs(path)
    if not fs.exists(target):
        return None
    with fs.open(target, "r", encoding="utf-8") as handle:
        return handle.read()


def _lines(text: str | None) -> list[str] | None:
    return None if text is None else [line.strip() for line in text.splitlines() if line.strip()]


def _fingerprint(paths: list[str]) -> str:
    fs = fsspec.core.url_to_fs(paths[0])[0] if paths else None
    parts = []
    for path in paths:
        info = fs.info(fsspec.core.url_to_fs(path)[1])
        parts.append(f"{path}:{info.get('size')}:{info.get('mtime', info.get('updated', ''))}")
    return "|".join(parts)


# -- webdataset (CLIP_benchmark's layout) -----------------------------------------------------------
def read_wds(root: str, split: str) -> EvalSplit:
    nshards_text = _read_text(f"{root}/{split}/nshards.txt")
    if nshards_text is None:
        raise FileNotFoundError(f"{root}/{split}/nshards.txt: missing (not a CLIP_benchmark webdataset split)")
    try:
        nshards = int(nshards_text.strip())
    except ValueError:
        raise ValueError(f"{root}/{split}/nshards.txt: not a number: {nshards_text[:40]!r}") from None
    kind = (_read_text(f"{root}/dataset_type.txt") or "classification").strip().lower()
    if kind not in KINDS:
        raise ValueError(f"{root}/dataset_type.txt: unknown type {kind!r} (one of {', '.join(KINDS)})")
    shards = [f"{root}/{split}/{n}.tar" for n in range(nshards)]
    missing = [s for s in shards if not _exists(s)]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: missing ({len(missing)} of {nshards} shards named by nshards.txt)")
    return EvalSplit(root, split, kind, lambda: _iter_shards(shards, kind),
                     classnames=_lines(_read_text(f"{root}/classnames.txt")),
                     templates=_lines(_read_text(f"{root}/zeroshot_classification_templates.txt")),
                     fingerprint=_fingerprint(shards))


def _exists(path: str) -> bool:
    fs, target = fsspec.core.url_to_fs(path)
    return fs.exists(target)


def _iter_shards(shards: list[str], kind: str) -> Iterator[Sample]:
    for shard in shards:
        yield from _iter_tar(shard, kind)


def _iter_tar(shard: str, kind: str) -> Iterator[Sample]:
    """Members grouped by key (the name up to the first dot of its base name), in tar order."""
    group: dict[str, bytes] = {}
    key = None
    try:
        with fsspec.open(shard, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                directory, _, base = member.name.rpartition("/")
                stem, _, extension = base.partition(".")
                member_key = f"{directory}/{stem}" if directory else stem
                if member_key != key and group:
                    yield _sample(shard, key, group, kind)
                    group = {}
                key = member_key
                group[extension.lower()] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{shard}: damaged tar after key {key!r}: {exc}") from exc
    if group:
        yield _sample(shard, key, group, kind)


def _sample(shard: str, key: str, group: dict[str, bytes], kind: str) -> Sample:
    image = next((group[e] for e in IMAGE_EXTENSIONS if e in group), None)
    if image is None:
        raise ValueError(f"{shard}: sample {key!r} has no image ({', '.join(IMAGE_EXTENSIONS)}); has {sorted(group)}")
    wanted = {"classification": "cls", "multilabel": "npy", "retrieval": "txt"}[kind]
    if wanted not in group:
        raise ValueError(f"{shard}: sample {key!r} has no .{wanted} target for a {kind} set; has {sorted(group)}")
    raw = group[wanted]
    if kind == "classification":
        try:
            target = int(raw.decode().strip())
        except ValueError:
            raise ValueError(f"{shard}: sample {key!r}: .cls is not an integer: {raw[:20]!r}") from None
    elif kind == "multilabel":
        target = np.load(io.BytesIO(raw)).astype(np.int64)
    else:
        target = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
    return Sample(key, image, target)


# -- folders ----------------------------------------------------------------------------------------
def _read_bytes(path: str) -> bytes:
    with fsspec.open(path, "rb") as handle:
        return handle.read()


def _files(items: list[tuple[str, str, Any]]) -> Callable[[], Iterator[Sample]]:
    return lambda: (Sample(key, _read_bytes(path), target) for key, path, target in items)


def read_folder(root: str, split: str) -> EvalSplit:
    """torchvision's ImageFolder: classes are the sorted sub-folders (under ``split`` if it exists)."""
    fs, base = fsspec.core.url_to_fs(root)
    protocol = root[: root.index("://") + 3] if "://" in root else ""
    if fs.isdir(f"{base}/{split}"):
        base = f"{base}/{split}"
    classes = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False) if fs.isdir(p))
    if not classes:
        raise ValueError(f"{root}: no class sub-folders (an image folder is {{class}}/{{image}})")
    items = []
    for index, name in enumerate(classes):
        for path in sorted(fs.ls(f"{base}/{name}", detail=False)):
            if path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                items.append((f"{name}/{path.rsplit('/', 1)[-1]}", protocol + path, index))
    return EvalSplit(root, split, "classification", _files(items), classnames=[c.replace("_", " ") for c in classes],
                     fingerprint=_fingerprint([protocol + base]) + f":{len(items)}")


def read_labels_tsv(root: str, split: str, labels: str = "labels.tsv",
                    classnames: list[str] | None = None) -> EvalSplit:
    """Our image folder + ``labels.tsv``: ``label`` is a class name or index; without class names,
    ``label_index`` (if present) orders the classes, else the sorted distinct labels do."""
    path = labels if "/" in labels else f"{root}/{labels}"
    text = _read_text(path)
    if text is None:
        raise FileNotFoundError(f"{path}: missing labels file")
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: needs a header with the columns 'file' and 'label'")
    if classnames is None:
        if "label_index" in rows[0]:
            by_index = {int(r["label_index"]): r["label"] for r in rows}
            classnames = [by_index[i] for i in range(max(by_index) + 1)]
        else:
            classnames = sorted({r["label"] for r in rows})
    index = {name: i for i, name in enumerate(classnames)}
    items = []
    for r in rows:
        label = r["label"]
        if label in index:
            target = index[label]
        elif label.isdigit() and int(label) < len(classnames):
            target = int(label)
        else:
            raise ValueError(f"{path}: label {label!r} of {r['file']} is neither a class name nor an index")
        items.append((r["file"], f"{root}/{r['file']}", target))
    return EvalSplit(root, split, "classification", _files(items), classnames=list(classnames),
                     fingerprint=_fingerprint([path]))


def read_captions(root: str, split: str, captions: str = "captions.tsv") -> EvalSplit:
    """Retrieval from a captions TSV (``file``, ``caption``) or a COCO captions JSON."""
    path = captions if "/" in captions else f"{root}/{captions}"
    text = _read_text(path)
    if text is None:
        raise FileNotFoundError(f"{path}: missing captions file")
    by_file: dict[str, list[str]] = {}
    if path.endswith(".json"):
        data = json.loads(text)
        names = {image["id"]: image["file_name"] for image in data.get("images", [])}
        for note in data.get("annotations", []):
            if note["image_id"] not in names:
                raise ValueError(f"{path}: caption for unknown image id {note['image_id']}")
            by_file.setdefault(names[note["image_id"]], []).append(note["caption"].strip())
    else:
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
        if not rows or not {"file", "caption"} <= set(rows[0]):
            raise ValueError(f"{path}: needs a header with the columns 'file' and 'caption'")
        for r in rows:
            by_file.setdefault(r["file"], []).append(r["caption"].strip())
    items = [(name, f"{root}/{name}", by_file[name]) for name in sorted(by_file)]
    return EvalSplit(root, split, "retrieval", _files(items), fingerprint=_fingerprint([path]))
