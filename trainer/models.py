"""CLIP's image and text towers (ResNet-D with attention pooling, Vision Transformer, causal
text Transformer) with the paper's initialisation. Parameter names and shapes follow OpenCLIP's,
so a state dict converts one to one and parameter counts are equal (a test checks all eight
architectures). Attention goes through ``scaled_dot_product_attention``; every residual block can
be gradient-checkpointed; the modules are ``torch.compile``-able (compiled, the text tower runs every
caption at the full context; eager, it runs captions in chunks of similar length, see
:func:`length_chunks`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from trainer.config import CLIPConfig, TextConfig, VisionConfig


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (stable under bf16/fp16 autocast), output in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with OpenCLIP's parameter layout (``in_proj_weight``,
    ``out_proj``) computed by ``scaled_dot_product_attention``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation OpenAI's released CLIP models were trained
    with (``CLIPConfig.quick_gelu``); their weights give other features under the exact GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool = False) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = LayerNorm(width)
        activation = QuickGELU() if quick_gelu else nn.GELU()
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", activation),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, quick_gelu: bool = False) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList([ResidualBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)])
        self.grad_checkpointing = False

    def init_weights(self) -> None:
        proj_std = (self.width ** -0.5) * ((2 * self.layers) ** -0.5)
        attn_std = self.width ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, config: VisionConfig, output_dim: int, quick_gelu: bool = False) -> None:
        super().__init__()
        width, grid = config.width, config.image_size // config.patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.transformer.init_weights()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images).flatten(2).transpose(1, 2)  # batch, grid*grid, width
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class Bottleneck(nn.Module):
    """ResNet-D bottleneck with an anti-aliasing average pool before strided convolutions."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.act3(out + identity)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: the mean token, with positions, attends over the feature map."""

    def __init__(self, spatial: int, embed_dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial * spatial + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # batch, HW, C
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        batch, length, channels = x.shape
        head_dim = channels // self.heads
        q = self.q_proj(x[:, :1]).view(batch, 1, self.heads, head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.heads, head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(out.transpose(1, 2).reshape(batch, channels))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet: 3-convolution stem with average pooling, anti-aliased strides, attention pooling."""

    def __init__(self, config: VisionConfig, output_dim: int) -> None:
        super().__init__()
        width = config.width
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.act3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, config.layers[0])
        self.layer2 = self._make_layer(width * 2, config.layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, config.layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, config.layers[3], stride=2)
        self.attnpool = AttentionPool2d(config.image_size // 32, width * 32, config.heads, output_dim)
        self.grad_checkpointing = False
        std = self.attnpool.c_proj.in_features ** -0.5
        for layer in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(layer.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)  # each residual branch starts as the identity

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(images)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.act3(self.bn3(self.conv3(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = checkpoint(block, x, use_reentrant=False) if self.grad_checkpointing and self.training else block(x)
        return self.attnpool(x)


def length_chunks(lengths: Sequence[int], min_tokens: int) -> list[tuple[int, int]]:
    """Cut captions sorted longest first into ``(start, stop)`` chunks, each run only as long as
    its first (longest) caption: a chunk takes at least ``min_tokens`` token rows so its matrix
    products stay efficient, and a short remainder joins the chunk before it."""
    chunks: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        stop = min(len(lengths), start + max(1, -(-min_tokens // max(1, lengths[start]))))
        if chunks and (stop - start) * lengths[start] < min_tokens:
            chunks[-1] = (chunks[-1][0], stop)
        else:
            chunks.append((start, stop))
        start = stop
    return chunks


class TextTransformer(nn.Module):
    """Causal Transformer over BPE tokens; features are taken at the end token (the highest id,
    as in CLIP, whose end token is the last in the vocabulary).

    Under the causal mask nothing after a caption's end token reaches its features, so the
    padding need not be computed: captions are sorted by length and run in chunks of similar
    length (:func:`length_chunks`, at least ``chunk_tokens`` token rows each), each cut to its
    longest caption. The features are those of the full context (equal up to float rounding;
    a test checks values and gradients); real alt-texts average 13-16 of 77 tokens, so the text
    tower does a fraction of the work. ``chunk_tokens = 0`` runs the full context, as OpenCLIP
    does (and so does a ``torch.compile``-d model, which wants static shapes)."""

    def __init__(self, config: TextConfig, output_dim: int, quick_gelu: bool = False) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_ratio, quick_gelu)
        self.ln_final = LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.empty(config.width, output_dim))
        self.chunk_tokens: int | None = None  # None: by device (see forward)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=config.width ** -0.5)
        self.transformer.init_weights()

    def encode(self, tokens: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Features of ``tokens`` (batch, length) taken at positions ``end``."""
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        x = self.transformer(x, causal=True)
        return self.ln_final(x[torch.arange(x.shape[0], device=x.device), end]) @ self.text_projection

    #: Token rows per chunk when ``chunk_tokens`` is None: larger on GPUs, to keep the kernels busy
    #: (the measurements behind them: docs/trainer.md).
    DEFAULT_CHUNK_TOKENS = {"cpu": 256, "cuda": 4096}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        end = tokens.argmax(dim=-1)
        chunk_tokens = self.chunk_tokens
        if chunk_tokens is None:
            chunk_tokens = self.DEFAULT_CHUNK_TOKENS.get(tokens.device.type, 4096)
        if chunk_tokens <= 0 or torch.compiler.is_compiling():
            return self.encode(tokens, end)
        order = torch.argsort(end, descending=True, stable=True)
        lengths = (end[order] + 1).tolist()
        features = []
        for start, stop in length_chunks(lengths, chunk_tokens):
            rows = order[start:stop]
            features.append(self.encode(tokens[rows, : lengths[start]], end[rows]))
        return torch.cat(features)[torch.argsort(order)]


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        if config.vision.is_resnet:  # convolutions and ReLUs: QuickGELU is for the Transformers only
            self.visual = ModifiedResNet(config.vision, config.embed_dim)
        else:
            self.visual = VisionTransformer(config.vision, config.embed_dim, config.quick_gelu)
        self.text = TextTransformer(config.text, config.embed_dim, config.quick_gelu)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.init_logit_scale)))
        self.set_grad_checkpointing(config.grad_checkpointing)

    def set_text_chunk_tokens(self, tokens: int | None) -> None:
        """Token rows per text chunk (:class:`TextTransformer`); 0 runs every caption at full
        context; None picks by device."""
        self.text.chunk_tokens = tokens

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.text.transformer.grad_checkpointing = enabled
        target = self.visual if self.config.vision.is_resnet else self.visual.transformer
        target.grad_checkpointing = enabled

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.text(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """CLIP's rule: the temperature never scales logits by more than ``max_logit_scale``."""
        self.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))


def create_model(name_or_config: str | CLIPConfig) -> CLIP:
    from trainer.config import get_config

    config = get_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return CLIP(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
