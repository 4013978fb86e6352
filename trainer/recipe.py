"""Training recipes: the paper's optimizer settings per architecture (``wit train --recipe clip``).

CLIP's appendix F gives them: table 19 (common: batch 32,768, 32 epochs, weight decay 0.2,
2,000 warm-up iterations, Adam beta1 0.9; beta2 0.999 and epsilon 1e-8 for the ResNets, 0.98 and
1e-6 for the ViTs) and tables 20 and 21 (the learning rate of each model). A preset fills only
the flags the command line leaves out, so every value stays overridable; the batch is per rank
here, so the paper's global batch is printed beside the run's, not imposed.
"""

from __future__ import annotations

from trainer.config import CLIPConfig

GLOBAL_BATCH = 32_768
COMMON = {"epochs": 32, "weight_decay": 0.2, "warmup": 2000, "beta1": 0.9}
RESNET = {"beta2": 0.999, "eps": 1e-8}
VIT = {"beta2": 0.98, "eps": 1e-6}
LEARNING_RATES = {
    "RN50": 5e-4, "RN101": 5e-4, "RN50x4": 5e-4, "RN50x16": 4e-4, "RN50x64": 3.6e-4,
    "ViT-B-32": 5e-4, "ViT-B-16": 5e-4, "ViT-L-14": 4e-4, "ViT-L-14-336": 2e-5,
}
# ViT-L/14@336px is ViT-L/14 trained one more epoch at 336 px (the paper's FixRes step)
EXCEPTIONS = {"ViT-L-14-336": {"epochs": 1}}
DEFAULT_LR = 5e-4  # a model the paper did not train: its base architectures' rate
RECIPES = ("clip",)
PRESET_FIELDS = ("lr", "weight_decay", "beta1", "beta2", "eps", "warmup", "epochs")


def clip_preset(model: str, config: CLIPConfig) -> dict:
    """The paper's values for ``model`` (a name, or a config file of either family)."""
    preset = {**COMMON, **(RESNET if config.vision.is_resnet else VIT)}
    preset["lr"] = LEARNING_RATES.get(model, DEFAULT_LR)
    preset.update(EXCEPTIONS.get(model, {}))
    return preset


def describe(recipe: str, model: str, preset: dict, chosen: dict, overridden: set[str], global_batch: int) -> str:
    """The start-up lines: each preset value, and where the command line overrode it."""
    lines = [f"recipe {recipe} for {model} (CLIP, appendix F, tables 19-21; global batch {GLOBAL_BATCH:,} "
             f"in the paper, {global_batch:,} in this run; the paper trained in fp16 mixed precision)"]
    for name in PRESET_FIELDS:
        note = f"  (preset {preset[name]}, overridden)" if name in overridden else ""
        lines.append(f"  {name:13s} {chosen[name]}{note}")
    return "\n".join(lines)
