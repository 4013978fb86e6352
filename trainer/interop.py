"""Models in and out: OpenCLIP checkpoints and OpenAI's released CLIP weights <-> wit model folders.

    wit export --format open_clip MODEL OUT [--name NAME]
        MODEL: a model folder, a training checkpoint (checkpoints/step_N.pt) or a run folder, local
        or gs:// (:func:`trainer.checkpoint.load_model`). Writes OUT/NAME.json (an OpenCLIP model
        config) and OUT/NAME.pt (its state dict); then in Python:
            open_clip.add_model_config("OUT/NAME.json")
            model, _, preprocess = open_clip.create_model_and_transforms("NAME", pretrained="OUT/NAME.pt")
    wit import --from open_clip|openai FILE OUT [--config JSON | --model NAME] [--quick-gelu] [--tokenizer T]
        FILE: an OpenCLIP checkpoint (a state dict, or a training checkpoint holding one under
        ``state_dict``, ``module.`` prefixes allowed) or OpenAI's state dict (openai/CLIP's
        ``model.py`` layout, the one ``build_model(state_dict)`` reads). OUT: a model folder
        (config.json, model.pt, tokenizer/) that `wit eval`, `wit export` and `wit train --init` take.

Parameter names are shared with OpenCLIP's ``CLIP`` (which keeps OpenAI's layout) except the text
tower, which both keep at the top level (``token_embedding``, ``positional_embedding``,
``transformer``, ``ln_final``, ``text_projection``) where we keep it under ``text.``. The
architecture is read from the tensors' shapes, as OpenAI's ``build_model`` does; only the MLP's
activation is not in the shapes: OpenAI's models use QuickGELU (``--from openai`` sets it), an
OpenCLIP checkpoint says so through ``--config`` / ``--model NAME-quickgelu`` / ``--quick-gelu``.
Files are read with ``torch.load(..., weights_only=True)``; a TorchScript archive (how OpenAI
ships its ``.pt`` files) is refused with the one-line conversion that extracts its state dict.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import fsspec
import torch

from trainer.config import CLIPConfig, TextConfig, VisionConfig, get_config
from trainer.models import CLIP

log = logging.getLogger(__name__)

TEXT_KEYS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")  # ints in OpenAI's archives, not weights
SOURCES = ("open_clip", "openai")


# -- state dicts -------------------------------------------------------------------------------------
def to_openclip_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    return {(key[len("text."):] if key.startswith("text.") else key): value.detach().clone()
            for key, value in model.state_dict().items()}


def from_openclip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP's (and OpenAI's) names -> ours; buffers they rebuild themselves are dropped."""
    ours = {}
    for key, value in state.items():
        if key == "attn_mask" or key in OPENAI_EXTRAS:
            continue
        if key.split(".", 1)[0] in TEXT_KEYS:
            key = f"text.{key}"
        ours[key] = value
    return ours


def unwrap(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The state dict inside an OpenCLIP training checkpoint (``state_dict``, DDP's ``module.``)."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError("no state dict in it (expected a dict of tensors or a checkpoint with 'state_dict')")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


# -- the architecture from the shapes (openai/CLIP model.py build_model) ----------------------------
def _depth(state: dict, prefix: str) -> int:
    return len({key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)})


def infer_config(state: dict[str, torch.Tensor], quick_gelu: bool) -> CLIPConfig:
    """A CLIP configuration from an OpenAI-layout state dict's shapes (heads: width / 64)."""
    missing = [key for key in ("text_projection", "positional_embedding", "token_embedding.weight",
                               "ln_final.weight") if key not in state]
    if missing:
        raise ValueError(f"not a CLIP state dict in OpenAI's layout: no {', '.join(missing)}")
    embed_dim = state["text_projection"].shape[1]
    text_width = state["ln_final.weight"].shape[0]
    text = TextConfig(context_length=state["positional_embedding"].shape[0],
                      vocab_size=state["token_embedding.weight"].shape[0], width=text_width,
                      heads=text_width // 64, layers=_depth(state, "transformer.resblocks."),
                      mlp_ratio=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width)
    if "visual.proj" in state:  # a Vision Transformer
        width = state["visual.conv1.weight"].shape[0]
        patch = state["visual.conv1.weight"].shape[-1]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(image_size=patch * grid, layers=_depth(state, "visual.transformer.resblocks."),
                              width=width, patch_size=patch, head_width=64,
                              mlp_ratio=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width)
    elif "visual.attnpool.positional_embedding" in state:  # CLIP's ResNet
        layers = tuple(_depth(state, f"visual.layer{stage}.") for stage in (1, 2, 3, 4))
        grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(image_size=grid * 32, layers=layers, width=state["visual.layer1.0.conv1.weight"].shape[0],
                              patch_size=None, head_width=64)
    else:
        raise ValueError("not a CLIP state dict in OpenAI's layout: no visual.proj (ViT) or "
                         "visual.attnpool.positional_embedding (ResNet)")
    return CLIPConfig(embed_dim=embed_dim, vision=vision, text=text, quick_gelu=quick_gelu)


def openclip_config(name_or_path: str) -> CLIPConfig:
    """An OpenCLIP model config: a .json file, one of our names, or (with open_clip installed) any
    OpenCLIP model name (``ViT-B-32-quickgelu``)."""
    if name_or_path.endswith(".json"):
        return CLIPConfig.load(name_or_path)
    try:
        return get_config(name_or_path)
    except KeyError:
        pass
    base = name_or_path.removesuffix("-quickgelu")
    try:
        return replace(get_config(base), quick_gelu=True)
    except KeyError:
        pass
    try:
        import open_clip
    except ImportError:
        raise KeyError(f"unknown model {name_or_path!r}: give its OpenCLIP config as --config FILE.json") from None
    found = open_clip.get_model_config(name_or_path)
    if found is None:
        raise KeyError(f"unknown model {name_or_path!r} (neither ours nor OpenCLIP's)")
    return CLIPConfig.from_json(found)


# -- files -----------------------------------------------------------------------------------------
def read_weights(path: str) -> dict:
    with fsspec.open(path, "rb") as handle:
        data = handle.read()
    if _is_torchscript(data):
        raise ValueError(f"{path} is a TorchScript archive (how OpenAI ships its .pt files), which is not read "
                         "here: running it could run its code. Extract its state dict once where you trust the "
                         "file: python -c \"import torch; torch.save(torch.jit.load('"
                         f"{path}', map_location='cpu').state_dict(), 'state_dict.pt')\" and import that")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - refused by the weights-only unpickler, or not a torch file
        raise ValueError(f"{path} does not load as weights (torch.load weights_only=True): {exc}") from None


def _is_torchscript(data: bytes) -> bool:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return False
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def import_model(source: str, path: str, config: CLIPConfig | None = None, quick_gelu: bool | None = None) -> CLIP:
    """A model from an OpenCLIP or OpenAI file (see the module's docstring), in float32, eval mode."""
    if source not in SOURCES:
        raise ValueError(f"--from must be one of {', '.join(SOURCES)}, not {source!r}")
    try:
        state = unwrap(read_weights(path))
        if config is None:
            config = infer_config(state, quick_gelu=(source == "openai") if quick_gelu is None else quick_gelu)
        elif quick_gelu is not None:
            config = replace(config, quick_gelu=quick_gelu)
        model = CLIP(config)
        ours = {key: value.float() if value.is_floating_point() else value
                for key, value in from_openclip_state_dict(state).items()}
        model.load_state_dict(ours)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{path}: cannot import as an {source} CLIP model: {exc}") from None
    return model.eval()


def export_openclip(model: CLIP, folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``{name}.json`` (an OpenCLIP model config) and ``{name}.pt`` (its state dict)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = folder / f"{name}.json", folder / f"{name}.pt"
    config_path.write_text(json.dumps(model.config.to_json(), indent=2) + "\n")
    torch.save(to_openclip_state_dict(model), weights_path)
    return config_path, weights_path


def load_openclip_export(config_path: str | Path, weights_path: str | Path) -> CLIP:
    return import_model("open_clip", str(weights_path), CLIPConfig.load(config_path))


# -- the commands ----------------------------------------------------------------------------------
def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="open_clip", choices=("open_clip",))
    parser.add_argument("model", help="a model folder, a training checkpoint or a run folder (local or gs://)")
    parser.add_argument("out", help="a folder: NAME.json and NAME.pt are written there")
    parser.add_argument("--name", default=None, help="the OpenCLIP model name (default: OUT's folder name)")


def export_main(args: argparse.Namespace) -> int:
    from trainer.checkpoint import load_model

    try:
        model, tokenizer = load_model(args.model)
    except (FileNotFoundError, ValueError) as exc:
        log.error("wit export: %s", exc)
        return 2
    name = args.name or Path(args.out).resolve().name
    config_path, weights_path = export_openclip(model, args.out, name)
    if tokenizer.vocab_size != 49408:
        log.warning("the model's tokenizer is not CLIP's (%d tokens): OpenCLIP's default tokenizer will not match "
                    "it", tokenizer.vocab_size)
    print(f"wrote {config_path} and {weights_path}\n"
          f"  open_clip.add_model_config({str(config_path)!r})\n"
          f"  open_clip.create_model_and_transforms({name!r}, pretrained={str(weights_path)!r})")
    return 0


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES)
    parser.add_argument("file", help="the checkpoint or state dict (.pt; local or gs://)")
    parser.add_argument("out", help="the model folder to write")
    parser.add_argument("--config", default=None, help="an OpenCLIP model config .json (default: from the shapes)")
    parser.add_argument("--model", default=None, help="a model name instead of --config (e.g. ViT-B-32-quickgelu)")
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="QuickGELU activations (default: yes for openai, else the config's, else no)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder or .txt.gz (default: CLIP's BPE)")


def import_main(args: argparse.Namespace) -> int:
    from trainer.checkpoint import save_model
    from trainer.steps import load_tokenizer

    try:
        config = openclip_config(args.config or args.model) if args.config or args.model else None
        model = import_model(args.source, args.file, config, args.quick_gelu)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        log.error("wit import: %s", str(exc).strip('"'))
        return 2
    tokenizer = load_tokenizer(args.tokenizer)
    if tokenizer.vocab_size != model.config.text.vocab_size:
        raise SystemExit(f"the tokenizer has {tokenizer.vocab_size} tokens, the model {model.config.text.vocab_size}: "
                         "give the model's own with --tokenizer")
    folder = save_model(args.out, model, tokenizer)
    print(f"wrote {folder} ({'QuickGELU, ' if model.config.quick_gelu else ''}"
          f"{model.config.vision.image_size}px, embed {model.config.embed_dim})")
    return 0
