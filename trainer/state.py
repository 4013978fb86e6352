"""Training checkpoints: everything needed to continue a run exactly where it stopped.

``OUT/checkpoints/step_{step:08d}.pt`` holds the model, optimizer and grad-scaler states, the
step and epoch, each rank's data position (batches done in the epoch and, per DataLoader worker,
raw samples consumed: :mod:`trainer.data`), each rank's RNG states, the world size and the run's
arguments. A file is written under a temporary name and renamed (an object store writes it whole
or not at all), so a writer killed half-way leaves the previous checkpoint as the latest; the
last ``keep`` are kept. ``OUT/model/`` (a model folder for ``wit eval``) is written at the end.

Anyone who can write to the run's folder can plant a file there, and ``--resume latest`` reads
the newest one on every node: checkpoints hold tensors and plain Python values only (RNG states
included) and are read with ``torch.load(..., weights_only=True)``, which builds those and
nothing else. A file that needs anything more is refused with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import random
import re
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import torch

from core.storage import is_object_store, join, write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)
NAME = re.compile(r"step_(\d{8})\.pt$")


# /1 kept numpy's RNG state as a numpy array, which a weights-only load refuses; /2 kept each rank's
# data position as an untyped dict (still read); /3 keeps trainer.data.StreamState's state dict.
FORMAT = "wit-train/3"


class UnsafeCheckpointError(ValueError):
    """A checkpoint that a weights-only load refuses: reading it could run code, so it is not read."""


class ResumeError(ValueError):
    """A checkpoint this run cannot continue exactly (another world size or worker count)."""


def rng_state() -> dict:
    """This process's RNG states as a tensor, lists and numbers (what a weights-only load accepts)."""
    version, internal, gauss_next = random.getstate()
    legacy = np.random.get_state(legacy=False)  # numpy's global RandomState (MT19937)
    return {"torch": torch.get_rng_state(),
            "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
            "numpy": {"bit_generator": legacy["bit_generator"], "key": legacy["state"]["key"].tolist(),
                      "pos": int(legacy["state"]["pos"]), "has_gauss": int(legacy["has_gauss"]),
                      "gauss": float(legacy["gauss"])}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["bit_generator"], np.asarray(numpy["key"], dtype=np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))


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
    """The checkpoint at ``path``, read with a weights-only load (never an unrestricted unpickle)."""
    with fsspec.open(path, "rb") as handle:
        data = handle.read()
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's weights-only unpickler met something it does not build
        raise UnsafeCheckpointError(refusal(path, data)) from None


def refusal(path: str, data: bytes) -> str:
    """Why ``path`` was refused, naming what its pickle asks for (read statically, nothing is run)."""
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not a torch.save zip file: a bare pickle or something else
        wanted = []
    message = (f"{path} is not a safe checkpoint: a weights-only load refused it"
               + (f" (it asks for {', '.join(wanted)})" if wanted else "")
               + "; it was not loaded and nothing in it ran.")
    if wanted and all(name.startswith("numpy") for name in wanted):
        return message + (" It looks like a checkpoint of the previous format (wit-train/1, numpy RNG state), "
                          f"which cannot be read safely: this trainer writes {FORMAT}. Resume from a newer "
                          "checkpoint or start the run again in another --out.")
    return message + " Only files written by `wit train` belong in OUT/checkpoints/: find out who wrote this one."


def resolve_resume(out: str, resume: str | None) -> str | None:
    """``latest`` -> the newest checkpoint that loads (or None: a fresh start); a path -> itself.
    A damaged file falls back to the one before; an unsafe one (planted, or of the previous format)
    stops the run: skipping it would hide it."""
    if not resume:
        return None
    if resume != "latest":
        return resume
    for step, path in reversed(list_checkpoints(out)):
        try:
            load_checkpoint(path)
            return path
        except UnsafeCheckpointError:
            raise
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


def save_tokenizer(out: str, tokenizer) -> str:
    """``OUT/tokenizer/`` once, so a checkpoint of the run is a model by itself (``wit eval``)."""
    target = join(out, "tokenizer")
    fs, remote = fsspec.core.url_to_fs(target)
    if fs.exists(f"{remote}/tokenizer_config.json"):  # written last by Tokenizer.save
        return target
    if not is_object_store(fs):
        tokenizer.save(Path(remote))
        return target
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(Path(tmp))
        upload_folder(tmp, target)
    return target
