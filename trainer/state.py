"""Training checkpoints: everything needed to continue a run exactly where it stopped.

``OUT/checkpoints/step_{step:08d}.pt`` holds the model, optimizer and grad-scaler states, the
step and epoch, each rank's data position (batches done in the epoch and, per DataLoader worker,
raw samples consumed: :mod:`trainer.data`), each rank's RNG states, the world size and the run's
arguments. A file is written under a temporary name and renamed (an object store writes it whole
or not at all), so a writer killed half-way leaves the previous checkpoint as the latest; the
last ``keep`` are kept. ``OUT/model/`` (a model folder for ``wit eval``) is written at the end.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import torch

from wit.storage import is_object_store, join, write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)
NAME = re.compile(r"step_(\d{8})\.pt$")


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def checkpoint_dir(out: str) -> str:
    return join(out, "checkpoints")


def list_checkpoints(out: str) -> list[tuple[int, str]]:
    """(step, path) of every complete checkpoint, oldest first (temporary files are ignored)."""
    fs, folder = fsspec.core.url_to_fs(checkpoint_dir(out))
    if not fs.exists(folder):
        return []
    found = []
    for path in fs.ls(folder, detail=False):
        match = NAME.search(path)
        if match:
            found.append((int(match.group(1)), join(checkpoint_dir(out), path.rsplit("/", 1)[-1])))
    return sorted(found)


def save_checkpoint(out: str, step: int, payload: dict, keep: int) -> str:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = join(checkpoint_dir(out), f"step_{step:08d}.pt")
    write_bytes_atomic(path, buffer.getvalue())
    for _, old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        fs, local = fsspec.core.url_to_fs(old)
        fs.rm(local)
    return path


def load_checkpoint(path: str) -> dict:
    with fsspec.open(path, "rb") as handle:
        return torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=False)


def resolve_resume(out: str, resume: str | None) -> str | None:
    """``latest`` -> the newest checkpoint that loads (or None: a fresh start); a path -> itself."""
    if not resume:
        return None
    if resume != "latest":
        return resume
    for step, path in reversed(list_checkpoints(out)):
        try:
            load_checkpoint(path)
            return path
        except Exception as exc:  # noqa: BLE001 - a damaged file: fall back to the one before
            log.warning("checkpoint %s (step %d) does not load, trying the previous one: %s", path, step, exc)
    return None


def upload_folder(local: str, remote: str) -> None:
    """Copy a local folder's files to ``remote`` (an object store prefix), overwriting."""
    fs, prefix = fsspec.core.url_to_fs(remote)
    for path in sorted(Path(local).rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(local).as_posix()}")


def trim_metrics(out: str, step: int) -> list[str]:
    """Keep the lines of ``OUT/metrics.jsonl`` up to ``step`` (a resumed run redoes the steps
    after its checkpoint; a fresh one starts an empty file) and return them."""
    path = join(out, "metrics.jsonl")
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.exists(local):
        return []
    with fs.open(local, "rt") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return kept


def export_model(out: str, model, tokenizer) -> str:
    """``OUT/model/``: config.json, model.pt, tokenizer/ (local or remote)."""
    from trainer.checkpoint import save_model

    target = join(out, "model")
    fs, remote = fsspec.core.url_to_fs(target)
    if not is_object_store(fs):
        save_model(Path(remote), model, tokenizer)
        return target
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp), model, tokenizer)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                write_bytes_atomic(join(target, str(path.relative_to(tmp))), path.read_bytes())
    return target
