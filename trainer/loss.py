"""CLIP's contrastive loss: symmetric cross-entropy over the scaled cosine-similarity matrix.

In a distributed run every rank's features are all-gathered so each sample is contrasted with
the global batch. ``gather_with_grad`` keeps the gradient through the gathered features (the
all-gather's backward reduces it to the owning rank), and ``local_loss`` has each rank compute
only its own rows (and columns): memory grows linearly, not quadratically, with the global
batch, and the summed gradients equal one process holding the whole batch (a 2-process gloo test
checks this). Without ``gather_with_grad`` the other ranks' features are constants and the
local ones are put back in place, OpenCLIP's default.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(image: torch.Tensor, text: torch.Tensor, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    world, rank = dist.get_world_size(), dist.get_rank()
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(image), dim=0), torch.cat(all_gather(text), dim=0)
    images = [torch.zeros_like(image) for _ in range(world)]
    texts = [torch.zeros_like(text) for _ in range(world)]
    dist.all_gather(images, image.detach())
    dist.all_gather(texts, text.detach())
    images[rank], texts[rank] = image, text  # the local features keep their gradient
    return torch.cat(images, dim=0), torch.cat(texts, dim=0)


class ClipLoss(nn.Module):
    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False) -> None:
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad

    def forward(self, image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not distributed:
            logits_image = logit_scale * image @ text.T
            labels = torch.arange(image.shape[0], device=image.device)
            return (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_image.T, labels)) / 2
        all_image, all_text = gather_features(image, text, self.gather_with_grad)
        batch = image.shape[0]
        if self.local_loss:
            logits_image = logit_scale * image @ all_text.T
            logits_text = logit_scale * text @ all_image.T
            labels = torch.arange(batch, device=image.device) + batch * dist.get_rank()
        else:
            logits_image = logit_scale * all_image @ all_text.T
            logits_text = logits_image.T
            labels = torch.arange(all_image.shape[0], device=image.device)
        return (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels)) / 2
