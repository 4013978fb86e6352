"""Models wherever a model is asked for: model folders, training checkpoints, run folders.

A model folder holds ``config.json`` (the model configuration, OpenCLIP's layout), ``model.pt``
(our state dict) and ``tokenizer/`` (:class:`trainer.tokenizer.Tokenizer`). :func:`load_model`
takes any of

- a model folder (``wit train``'s ``OUT/model``, ``wit import``'s output);
- a training checkpoint file (``OUT/checkpoints/step_N.pt``: its model and model config; the
  tokenizer from the run's ``tokenizer/`` folder, else the one the run was given);
- a run folder (``OUT``): its newest checkpoint that loads, else its ``model/``, so a run stopped
  by ``--max-minutes`` or SIGTERM is evaluable as it stands;

local or on an object store (``gs://``; a remote folder is copied to a temporary one first).
Every file is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import fsspec
import torch

from core.storage import is_object_store, join, write_bytes_atomic
from trainer.config import CLIPConfig
from trainer.models import CLIP
from trainer.tokenizer import Tokenizer


def save_model(folder: str | Path, model: CLIP, tokenizer: Tokenizer) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_json(), indent=2) + "\n")
    temporary = folder / ".model.pt.tmp"
    torch.save(model.state_dict(), temporary)
    temporary.replace(folder / "model.pt")
    tokenizer.save(folder / "tokenizer")
    return folder


def export_model(out: str, model, tokenizer) -> str:
    """``OUT/model/``: config.json, model.pt, tokenizer/ (local or remote)."""
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


def load_model_folder(folder: str | Path) -> tuple[CLIP, Tokenizer]:
    folder = Path(folder)
    missing = [name for name in ("config.json", "model.pt", "tokenizer") if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a model folder: missing {', '.join(missing)}")
    model = CLIP(CLIPConfig.load(folder / "config.json"))
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), Tokenizer.load(folder / "tokenizer")


def load_model(spec: str | Path) -> tuple[CLIP, Tokenizer]:
    """The model (eval mode, on the CPU) and tokenizer a model folder, a training checkpoint file or
    a run folder holds, local or remote (see the module's docstring)."""
    spec = str(spec)
    fs, path = fsspec.core.url_to_fs(spec)
    if fs.isfile(path):
        return load_from_checkpoint(spec)
    if not fs.isdir(path):
        raise FileNotFoundError(f"{spec}: no such model folder, checkpoint file or run folder")
    if fs.exists(f"{path}/config.json") and fs.exists(f"{path}/model.pt"):
        return _local(spec, load_model_folder)
    from trainer import state

    latest = state.resolve_resume(spec, "latest")
    if latest is not None:
        return load_from_checkpoint(latest)
    if fs.exists(f"{path}/model/config.json"):
        return _local(join(spec, "model"), load_model_folder)
    raise FileNotFoundError(f"{spec} holds no model: a model folder has config.json, model.pt and tokenizer/; "
                            "a run folder has checkpoints/step_N.pt or model/")


def load_from_checkpoint(path: str) -> tuple[CLIP, Tokenizer]:
    """A training checkpoint's model; its tokenizer from the run folder (two levels up)."""
    from trainer import state

    payload = state.load_checkpoint(path)
    if not isinstance(payload, dict) or "model" not in payload or "model_config" not in payload:
        raise ValueError(f"{path} is not a wit training checkpoint (no model and model_config in it)")
    model = CLIP(CLIPConfig.from_json(payload["model_config"]))
    model.load_state_dict(payload["model"])
    run = path.rsplit("/", 2)[0] if path.count("/") >= 2 else "."
    fs, run_path = fsspec.core.url_to_fs(run)
    if fs.exists(f"{run_path}/tokenizer"):
        tokenizer = _local(join(run, "tokenizer"), Tokenizer.load)
    else:
        from trainer.steps import load_tokenizer

        tokenizer = load_tokenizer((payload.get("config") or {}).get("tokenizer"))
    return model.eval(), tokenizer


def _local(spec: str, load):
    """``load(folder)`` on a local copy of ``spec`` (itself when it is local)."""
    fs, path = fsspec.core.url_to_fs(spec)
    if not is_object_store(fs):
        return load(path)
    with tempfile.TemporaryDirectory() as tmp:
        fs.get(f"{path}/", f"{tmp}/copy/", recursive=True)
        return load(f"{tmp}/copy")
