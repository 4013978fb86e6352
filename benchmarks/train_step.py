"""Training-step throughput (forward, backward, AdamW step): our CLIP against OpenCLIP 3.3.0's
model and ClipLoss, same architecture, batch, precision and inputs, side by side in one run.

    .venv/bin/python benchmarks/train_step.py [--models ViT-B-32 wit-small-64] [--batch 32] [--steps 3]
                                              [--captions laion|cc3m] [--device auto|cpu|cuda]

Every step gets a different batch of real captions tokenized with CLIP's vocabulary (default:
the raw web alt-texts of LAION in ``../shared/data/captions/img2dataset``, the kind of text WIT
is made of; ``cc3m``: Conceptual Captions' cleaned ones) and random images; both implementations
see the same batches. Prints samples/s for fp32 and bf16 autocast for OpenCLIP, ours as trained
(text chunked by caption length) and ours with every caption at the full context
(``--text-chunk-tokens 0``: the model code alone), with the ratios to OpenCLIP. Steps alternate
between the implementations so machine noise hits all alike. On the GPU when there is one. A
precision the device would only emulate (bf16 on a CPU without AVX-512 or AMX:
``trainer.train.emulated_precision``) is left out of the default list, and said so; naming it in
``--precisions`` runs it anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from trainer.config import get_config
from trainer.loss import ClipLoss
from trainer.models import CLIP
from trainer.train import emulated_precision
from wit.testing.shared_data import shared_data_dir


def openclip_model(name: str):
    import open_clip

    config = get_config(name).to_json()
    return open_clip.model.CLIP(embed_dim=config["embed_dim"], vision_cfg=config["vision_cfg"],
                                text_cfg=config["text_cfg"])


def caption_batches(source: str, batch: int, count: int) -> list[torch.Tensor]:
    import open_clip
    import pandas as pd

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    if source == "laion":
        captions = pd.read_parquet(data / "captions/img2dataset/test_10000.parquet")["TEXT"].dropna().tolist()
    else:
        captions = pd.read_csv(data / "captions/cc3m/Validation_GCC-1.1.0-Validation.tsv", sep="\t",
                               header=None, quoting=3)[0].tolist()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    return [tokenizer(captions[i * batch:(i + 1) * batch]) for i in range(count)]


def step_fn(model, loss_fn, token_batches, size: int, precision: str, fused: bool, device: torch.device):
    # Ours uses the fused AdamW kernel our trainer uses; OpenCLIP's trainer uses the default.
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=fused or None)
    images = torch.randn(len(token_batches[0]), 3, size, size, device=device)
    token_batches = [tokens.to(device) for tokens in token_batches]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(index: int) -> float:
        tokens = token_batches[index % len(token_batches)]
        synchronize()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            image, text = model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)
            loss = loss_fn(image.float(), text.float(), model.logit_scale.exp())
        loss.backward()
        optimizer.step()
        synchronize()
        return time.perf_counter() - started

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--models", nargs="+", default=["wit-small-64", "ViT-B-32"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"),
                        help="default: fp32, and bf16 where the device computes it natively")
    parser.add_argument("--captions", default="laion", choices=("laion", "cc3m"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    precisions = args.precisions
    if precisions is None:
        precisions = ["fp32"]
        emulated = emulated_precision(device, "bf16")
        if emulated:
            print(f"bf16 left out: {emulated}")
        else:
            precisions.append("bf16")
    from open_clip.loss import ClipLoss as OpenClipLoss

    torch.manual_seed(0)
    batches = caption_batches(args.captions, args.batch, args.steps + 1)
    lengths = torch.cat([b.argmax(-1) + 1 for b in batches]).float()
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} CPU threads, batch {args.batch}, {args.captions} "
          f"captions: {lengths.mean():.1f} tokens on average, longest per batch "
          f"{statistics.mean(int(b.argmax(-1).max()) + 1 for b in batches):.1f}")
    for name in args.models:
        size = get_config(name).vision.image_size
        for precision in precisions:
            full = CLIP(get_config(name)).train()
            full.set_text_chunk_tokens(0)
            runs = {"openclip": step_fn(openclip_model(name).train(), OpenClipLoss(), batches, size, precision, False,
                                         device),
                    "ours": step_fn(CLIP(get_config(name)).train(), ClipLoss(), batches, size, precision, True, device),
                    "ours-full": step_fn(full, ClipLoss(), batches, size, precision, True, device)}
            times: dict[str, list[float]] = {key: [] for key in runs}
            for step in range(args.steps + 1):
                for key, run in runs.items():
                    elapsed = run(step)
                    if step:  # the first step of each is a warm-up
                        times[key].append(elapsed)
            rate = {key: args.batch / statistics.median(value) for key, value in times.items()}
            print(f"{name:14s} {precision}: OpenCLIP {rate['openclip']:7.2f} samples/s, ours {rate['ours']:7.2f} "
                  f"(ratio {rate['ours'] / rate['openclip']:.2f}, goal >= 1.2), ours at full context "
                  f"{rate['ours-full']:7.2f} (ratio {rate['ours-full'] / rate['openclip']:.2f})")


if __name__ == "__main__":
    main()
