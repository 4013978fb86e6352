"""The pieces of a training step: tokenizer and model set-up, optimizer groups, the schedule,
the stop signal agreed across ranks, and one optimizer step's forward/backward (with gradient
accumulation that keeps the contrastive batch global). Used by :mod:`trainer.train`."""

from __future__ import annotations

import math
import signal
import time
from dataclasses import replace

import torch
import torch.distributed as dist

def load_tokenizer(spec: str | None):
    """A saved tokenizer folder, a CLIP-style ``.gz`` merges file, or (None) CLIP's own merges,
    which ship inside this package (trainer/assets, MIT) so a plain install needs no OpenCLIP."""
    from trainer.tokenizer import Tokenizer

    if spec and not spec.endswith(".gz"):
        return Tokenizer.load(spec)
    if spec is None:
        from importlib import resources

        with resources.as_file(resources.files("trainer") / "assets" / "bpe_simple_vocab_16e6.txt.gz") as path:
            return Tokenizer.from_clip_bpe(path)
    return Tokenizer.from_clip_bpe(spec)


def build_model(name: str, tokenizer, grad_checkpointing: bool = False):
    from trainer.config import CLIPConfig, get_config
    from trainer.models import CLIP

    clip_config = CLIPConfig.load(name) if name.endswith(".json") else get_config(name)
    if clip_config.text.vocab_size != tokenizer.vocab_size:
        clip_config = replace(clip_config, text=replace(clip_config.text, vocab_size=tokenizer.vocab_size))
    model = CLIP(replace(clip_config, grad_checkpointing=grad_checkpointing))
    return model


NORMS = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
EMBEDDINGS = ("token_embedding", "positional_embedding", "class_embedding")


def decay_exempt(model: torch.nn.Module, exempt_embeddings: bool = False) -> set[str]:
    """Names of the parameters that get no weight decay. The paper (section 2.5) decays "all
    weights that are not gains or biases": gains are the scales of the normalisation layers
    (LayerNorm, BatchNorm), biases every ``*bias``. The temperature is not a weight of the network
    and is left alone too (decay would pull it towards 1 for nothing). ``exempt_embeddings`` also
    spares the token, positional and class embeddings (a common choice elsewhere; OpenCLIP spares
    every tensor under 2-D, which takes in the class embedding but not the 2-D embeddings)."""
    exempt = {"logit_scale"}
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name.endswith("bias") or (isinstance(module, NORMS) and name == "weight"):
                exempt.add(full)
            elif exempt_embeddings and any(part in full for part in EMBEDDINGS):
                exempt.add(full)
    return exempt


def parameter_groups(model: torch.nn.Module, weight_decay: float, exempt_embeddings: bool = False) -> list[dict]:
    """AdamW groups: no decay on gains, biases and the temperature (:func:`decay_exempt`),
    ``weight_decay`` on every other weight."""
    exempt = decay_exempt(model, exempt_embeddings)
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (plain if name in exempt else decay).append(parameter)
    return [{"params": plain, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))


class Stopper:
    """SIGTERM / time limit / --stop-after, agreed across ranks at a step boundary."""

    def __init__(self, max_minutes: float | None) -> None:
        self.signalled = False
        self.deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.signalled = True

    def should_stop(self, distributed: bool) -> bool:
        flag = self.signalled or (self.deadline is not None and time.monotonic() > self.deadline)
        if distributed:
            tensor = torch.tensor([1.0 if flag else 0.0])
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item())
        return flag


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def train_step(model, batches: list[dict], loss_fn, autocast, config=None, scaler=None) -> torch.Tensor:
    """One optimizer step's forward and backward over ``accum_freq`` micro-batches; with fp16 a
    ``GradScaler`` scales each loss before its backward (the caller unscales and steps)."""
    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None and scaler.is_enabled() else loss).backward()

    if len(batches) == 1:
        with autocast():
            image, text, scale = model(batches[0]["images"], batches[0]["tokens"])
            loss = loss_fn(image, text, scale)
        backward(loss)
        return loss.detach()
    with torch.no_grad(), autocast():  # cache every micro-batch's features
        cached = [model(b["images"], b["tokens"])[:2] for b in batches]
    total = torch.zeros(())
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        sync = model.no_sync() if hasattr(model, "no_sync") and not last else _nothing()
        with sync, autocast():
            image, text, scale = model(batch["images"], batch["tokens"])
            images = torch.cat([c[0] for c in cached[:index]] + [image] + [c[0] for c in cached[index + 1:]])
            texts = torch.cat([c[1] for c in cached[:index]] + [text] + [c[1] for c in cached[index + 1:]])
            # the temperature's gradient comes from the full-batch loss once, not once per micro-batch
            loss = loss_fn(images, texts, scale if index == 0 else scale.detach())
        backward(loss)
        total = loss.detach()
    return total
