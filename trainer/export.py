"""Interoperability with OpenCLIP: our state dict <-> OpenCLIP's, and its model config.

Parameter names are shared except the text tower, which OpenCLIP keeps at the top level
(``token_embedding``, ``positional_embedding``, ``transformer``, ``ln_final``,
``text_projection``) where we keep it under ``text.``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.config import CLIPConfig
from trainer.models import CLIP


def to_openclip_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    return {(key[len("text."):] if key.startswith("text.") else key): value.detach().clone()
            for key, value in model.state_dict().items()}


def from_openclip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {}
    for key, value in state.items():
        if key == "attn_mask":
            continue
        top = key.split(".", 1)[0]
        if top in ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection"):
            key = f"text.{key}"
        ours[key] = value
    return ours


def export_openclip(model: CLIP, folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``{name}.json`` (an OpenCLIP model config) and ``{name}.pt`` (its state dict)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = folder / f"{name}.json", folder / f"{name}.pt"
    config_path.write_text(json.dumps(model.config.to_json(), indent=2) + "\n")
    torch.save(to_openclip_state_dict(model), weights_path)
    return config_path, weights_path


def load_openclip_export(config_path: str | Path, weights_path: str | Path) -> CLIP:
    model = CLIP(CLIPConfig.load(config_path))
    model.load_state_dict(from_openclip_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True)))
    return model
