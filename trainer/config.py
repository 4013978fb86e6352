"""Typed model configurations: CLIP's eight architectures (named as OpenCLIP names them) and
small ones that train on a CPU in minutes. Configurations load from and save to JSON in
OpenCLIP's ``model_configs`` layout (``embed_dim``, ``vision_cfg``, ``text_cfg``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class VisionConfig:
    image_size: int = 224
    layers: int | tuple[int, int, int, int] = 12  # an int: ViT depth; four ints: ResNet stages
    width: int = 768
    patch_size: int | None = 32  # None: a ModifiedResNet
    head_width: int = 64
    mlp_ratio: float = 4.0

    @property
    def is_resnet(self) -> bool:
        return self.patch_size is None

    @property
    def heads(self) -> int:
        return (self.width * 32 if self.is_resnet else self.width) // self.head_width


@dataclass(frozen=True)
class TextConfig:
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    init_logit_scale: float = 1 / 0.07
    max_logit_scale: float = 100.0
    grad_checkpointing: bool = False
    quick_gelu: bool = False  # OpenAI's released models: x * sigmoid(1.702 x) in the Transformers' MLPs

    def to_json(self) -> dict:
        """OpenCLIP's model-config layout."""
        vision = asdict(self.vision)
        vision["layers"] = list(vision["layers"]) if isinstance(vision["layers"], tuple) else vision["layers"]
        return {"embed_dim": self.embed_dim, "quick_gelu": self.quick_gelu, "vision_cfg": vision,
                "text_cfg": asdict(self.text)}

    @classmethod
    def from_json(cls, data: dict) -> "CLIPConfig":
        vision = dict(data["vision_cfg"])
        if isinstance(vision.get("layers"), list):
            vision["layers"] = tuple(vision["layers"])
        known_v = VisionConfig.__dataclass_fields__
        known_t = TextConfig.__dataclass_fields__
        return cls(embed_dim=data["embed_dim"], vision=VisionConfig(**{k: v for k, v in vision.items() if k in known_v}),
                   text=TextConfig(**{k: v for k, v in data["text_cfg"].items() if k in known_t}),
                   quick_gelu=bool(data.get("quick_gelu", False)))

    @classmethod
    def load(cls, path: str | Path) -> "CLIPConfig":
        return cls.from_json(json.loads(Path(path).read_text()))


def _text(width: int, heads: int) -> TextConfig:
    return TextConfig(width=width, heads=heads)


# CLIP's architectures (paper, tables 19 and 20), as OpenCLIP configures them.
MODELS: dict[str, CLIPConfig] = {
    "RN50": CLIPConfig(1024, VisionConfig(224, (3, 4, 6, 3), 64, None), _text(512, 8)),
    "RN101": CLIPConfig(512, VisionConfig(224, (3, 4, 23, 3), 64, None), _text(512, 8)),
    "RN50x4": CLIPConfig(640, VisionConfig(288, (4, 6, 10, 6), 80, None), _text(640, 10)),
    "RN50x16": CLIPConfig(768, VisionConfig(384, (6, 8, 18, 8), 96, None), _text(768, 12)),
    "RN50x64": CLIPConfig(1024, VisionConfig(448, (3, 15, 36, 10), 128, None), _text(1024, 16)),
    "ViT-B-32": CLIPConfig(512, VisionConfig(224, 12, 768, 32), _text(512, 8)),
    "ViT-B-16": CLIPConfig(512, VisionConfig(224, 12, 768, 16), _text(512, 8)),
    "ViT-L-14": CLIPConfig(768, VisionConfig(224, 24, 1024, 14), _text(768, 12)),
    "ViT-L-14-336": CLIPConfig(768, VisionConfig(336, 24, 1024, 14), _text(768, 12)),
    # Small configurations for CPU tests and demos (a few million parameters).
    "wit-tiny-32": CLIPConfig(128, VisionConfig(32, 4, 128, 8, head_width=32),
                              TextConfig(width=128, heads=4, layers=4, vocab_size=49408)),
    "wit-small-64": CLIPConfig(256, VisionConfig(64, 6, 256, 8, head_width=32),
                               TextConfig(width=256, heads=8, layers=6, vocab_size=49408)),
    "wit-rn-tiny-64": CLIPConfig(128, VisionConfig(64, (1, 1, 1, 1), 16, None, head_width=32),
                                 TextConfig(width=128, heads=4, layers=4, vocab_size=49408)),
}


def get_config(name_or_path: str) -> CLIPConfig:
    if name_or_path in MODELS:
        return MODELS[name_or_path]
    if name_or_path.endswith(".json") and Path(name_or_path).is_file():
        return CLIPConfig.load(name_or_path)
    raise KeyError(f"unknown model {name_or_path!r}; known: {', '.join(MODELS)} (or a config .json path)")
