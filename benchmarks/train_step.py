"""Training-step throughput (forward, backward, AdamW step): our CLIP against OpenCLIP 3.3.0's
model and ClipLoss, same architecture, batch and precision, side by side in one run.

    .venv/bin/python benchmarks/train_step.py [--models ViT-B-32 wit-small-64] [--batch 32] [--steps 3]

Prints samples/s for fp32 and bf16 autocast (this CPU has avx512_bf16) and the ratio ours/OpenCLIP.
Steps alternate between the two implementations so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from trainer.config import get_config
from trainer.loss import ClipLoss
from trainer.models import CLIP


def openclip_model(name: str):
    import open_clip

    config = get_config(name).to_json()
    return open_clip.model.CLIP(embed_dim=config["embed_dim"], vision_cfg=config["vision_cfg"],
                                text_cfg=config["text_cfg"])


def step_fn(model, loss_fn, batch: int, size: int, precision: str, fused: bool):
    # Ours uses the fused AdamW kernel our trainer uses; OpenCLIP's trainer uses the default.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=fused or None)
    images = torch.randn(batch, 3, size, size)
    tokens = torch.randint(1, 49000, (batch, 77))
    tokens[:, 20] = 49407
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def step() -> float:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            image, text = model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)
            loss = loss_fn(image.float(), text.float(), model.logit_scale.exp())
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["wit-small-64", "ViT-B-32"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    from open_clip.loss import ClipLoss as OpenClipLoss

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for name in args.models:
        size = get_config(name).vision.image_size
        for precision in args.precisions:
            ours = step_fn(CLIP(get_config(name)).train(), ClipLoss(), args.batch, size, precision, fused=True)
            theirs = step_fn(openclip_model(name).train(), OpenClipLoss(), args.batch, size, precision, fused=False)
            ours(), theirs()  # warm-up
            times = {"ours": [], "openclip": []}
            for _ in range(args.steps):
                times["ours"].append(ours())
                times["openclip"].append(theirs())
            rate = {k: args.batch / (sum(v) / len(v)) for k, v in times.items()}
            print(f"{name:14s} {precision}: ours {rate['ours']:7.2f} samples/s, OpenCLIP {rate['openclip']:7.2f} "
                  f"samples/s, ratio {rate['ours'] / rate['openclip']:.2f} (goal >= 1.2)")


if __name__ == "__main__":
    main()
