"""Learning on real photos: a small CLIP trained from scratch on CIFAR-10 photos with captions,
zero-shot on held-out photos with CLIP's CIFAR-10 templates.

The first 200 test photos per class in ``../shared/data/images/eval/cifar10_test_jpg`` (2,000)
become webdataset shards with captions written from the class name in phrasings that are not the
evaluation templates; the other 100 per class (1,000) are held out. ``wit train`` runs for
``--minutes`` of wall time on this CPU with periodic zero-shot evaluation (``--task CIFAR10``
templates and class names from ``../shared/data/eval_meta/zeroshot``), so the curve lands in
``OUT/metrics.jsonl``. Chance is 10%.

    .venv/bin/python benchmarks/train_cifar.py [--model wit-rn-tiny-64] [--minutes 10] [--out /tmp/wit-cifar]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PHRASES = ["a picture of my {}", "there is a {} here", "look at this {}", "{} seen up close", "the {} we saw today",
           "my favourite {}", "one {} on its own", "{}", "an old {}", "a {} outdoors"]


def build(data: Path, work: Path, per_class_train: int) -> tuple[Path, Path]:
    from pipeline import shards

    source = data / "images/eval/cifar10_test_jpg"
    with open(source / "labels.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    train, held = [], []
    for row in rows:
        number = int(row["file"].rsplit("_", 1)[1].split(".")[0])
        (train if number < per_class_train else held).append(row)
    shard_dir = work / "shards"
    sizes = {}
    for shard, start in enumerate(range(0, len(train), 250)):
        samples = [shards.Sample(key=f"{shard:05d}{i:04d}", url="", status="success",
                                 caption=PHRASES[(start + i) % len(PHRASES)].format(row["label"]),
                                 image=(source / row["file"]).read_bytes())
                   for i, row in enumerate(train[start:start + 250])]
        shards.write_shard(str(shard_dir), shard, samples, "jpg")
        sizes[f"{shard:05d}.tar"] = len(samples)
    from core.sizes import write_sizes

    write_sizes(str(shard_dir), sizes)
    labels = work / "heldout.tsv"
    with open(labels, "w") as handle:
        handle.write("file\tlabel\n" + "".join(f"{row['file']}\t{row['label']}\n" for row in held))
    return shard_dir, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", default="wit-rn-tiny-64")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--augment", default="strong")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", default="/tmp/wit-cifar")
    args, extra = parser.parse_known_args()
    from wit.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    work = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shards, labels = build(data, work, 200)
    meta = data / "eval_meta/zeroshot"
    command = [sys.executable, "-m", "trainer.train", "--train-data", str(shards / "sizes.json"),
               "--out", str(work / "run"), "--model", args.model, "--batch-size", str(args.batch_size),
               "--epochs", str(args.epochs), "--lr", str(args.lr), "--warmup", "50", "--weight-decay", "0.1",
               "--augment", args.augment, "--workers", "1", "--log-every", "20", "--max-minutes", str(args.minutes),
               "--zeroshot-images", str(data / "images/eval/cifar10_test_jpg"), "--zeroshot-labels", str(labels),
               "--zeroshot-classnames", str(meta / "labels.json"), "--zeroshot-templates",
               str(meta / "templates.json"), "--zeroshot-task", "CIFAR10", "--zeroshot-every", str(args.eval_every),
               "--save-every", "100000", *extra]
    started = time.monotonic()
    done = subprocess.run(command, env={**os.environ, "WIT_QUIET": "1"})
    wall = time.monotonic() - started
    if done.returncode != 0:
        return done.returncode
    curve = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    points = [(r["step"], r["zeroshot_top1"]) for r in curve if "zeroshot_top1" in r]
    print(f"model {args.model}, {wall / 60:.1f} min wall, {curve[-1]['step']} steps")
    print("zero-shot top-1 on 1,000 held-out photos (chance 0.10):")
    for step, top1 in points:
        print(f"  step {step:5d}  {top1:.3f}")
    print(f"best {max(t for _, t in points):.3f}, last {points[-1][1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
