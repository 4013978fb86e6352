"""Model folders: what evaluation loads and export writes.

A model folder holds ``config.json`` (the model configuration, OpenCLIP's layout), ``model.pt``
(our state dict) and ``tokenizer/`` (:class:`trainer.tokenizer.Tokenizer`). Training
checkpoints (optimizer, schedule, data position) build on this layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

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


def load_model(folder: str | Path) -> tuple[CLIP, Tokenizer]:
    folder = Path(folder)
    missing = [name for name in ("config.json", "model.pt", "tokenizer") if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a model folder: missing {', '.join(missing)}")
    model = CLIP(CLIPConfig.load(folder / "config.json"))
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), Tokenizer.load(folder / "tokenizer")
