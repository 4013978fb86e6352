"""Write an evaluation set in CLIP_benchmark's webdataset layout (what ``readers.read_wds`` and
CLIP_benchmark's ``wds/`` datasets read): ``{split}/{n}.tar`` + ``{split}/nshards.txt``,
``classnames.txt``, ``zeroshot_classification_templates.txt``, ``dataset_type.txt``.

    from trainer.evaluation.export_wds import write_split
    write_split("wds_cifar10", "test", [(key, jpeg_bytes, label), ...], classnames=[...], templates=[...])

Targets: an int (classification), a 0/1 numpy array (multilabel), a list of captions (retrieval).
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(time.time())
    tar.addfile(info, io.BytesIO(data))


def write_split(root: str | Path, split: str, samples: Iterable[tuple[str, bytes, object]],
                kind: str = "classification", classnames: Sequence[str] | None = None,
                templates: Sequence[str] | None = None, per_shard: int = 1000, extension: str = "jpg") -> int:
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    if classnames is not None:
        (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    if templates is not None:
        (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    if kind != "classification":
        (root / "dataset_type.txt").write_text(kind + "\n")
    shard, count, tar = 0, 0, None
    for key, image, target in samples:
        if count % per_shard == 0:
            if tar is not None:
                tar.close()
                shard += 1
            tar = tarfile.open(root / split / f"{shard}.tar", "w")
        _add(tar, f"{key}.{extension}", image)
        if kind == "classification":
            _add(tar, f"{key}.cls", str(int(target)).encode())
        elif kind == "multilabel":
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(target))
            _add(tar, f"{key}.npy", buffer.getvalue())
        else:
            _add(tar, f"{key}.txt", "\n".join(target).encode("utf-8"))
        count += 1
    if tar is not None:
        tar.close()
    (root / split / "nshards.txt").write_text(f"{shard + 1 if count else 0}\n")
    return count
