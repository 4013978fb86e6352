"""Does CLIP's random square crop help on our own shards? The same photos stored the two ways
``wit crawl`` can store them, trained with the same budget, zero-shot on the same held-out photos.

Photos: ``../shared/data/images/photos/imagenet_sample`` (real photos, mostly 4:3 and 3:2), one
per ImageNet class, grouped into 10 everyday categories by the WordNet hierarchy shipped beside
them (``wordnet/imagenet_wordnet_nouns``: dog, bird, fish, snake, insect, monkey, food,
furniture, clothing, musical instrument; at most 50 per category). A fixed 30% per category is
held out for zero-shot; the rest get captions written from the category name in phrasings that
are not the evaluation templates. The photos go through the crawl's own decode and resize
(:func:`pipeline.images.process`) at ``--image-size`` in each mode, into webdataset shards with
the crawl's ``.json`` (stored and original sizes), then ``wit train`` runs the same steps, batch,
seed and model on each:

- ``border``, ``--letterbox keep``: the chain before this change (letterboxed squares; CLIP's
  crop of a square is the whole square, so no augmentation at all);
- ``border``, ``--letterbox trim``: letterboxed shards, the crop taken inside the picture;
- ``keep_ratio``: the crawl's default now (shorter side at the size), a random square crop;
- ``keep_ratio`` with ``--crop-scale 0.9 1.0`` (OpenCLIP's scale range, square crops).

    .venv/bin/python benchmarks/train_crop.py [--steps 240] [--batch-size 64] [--seed 0] \
        [--only "keep_ratio (default now)" ...] [--out /tmp/wit-crop]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

CATEGORIES = {"dog": "n02084071", "bird": "n01503061", "fish": "n02512053", "snake": "n01726692",
              "insect": "n02159955", "monkey": "n02469914", "food": "n00021265", "furniture": "n03405725",
              "clothing": "n03051540", "musical instrument": "n03800933"}
PHRASES = ["a picture of my {}", "there is a {} here", "look at this {}", "{} seen up close", "the {} we saw today",
           "my favourite {}", "one {} on its own", "{}", "an old {}", "a {} outdoors"]
RUNS = {"border, letterbox kept (before)": ("border", ["--letterbox", "keep"]),
        "border, letterbox trimmed": ("border", ["--letterbox", "trim"]),
        "keep_ratio (default now)": ("keep_ratio", []),
        "keep_ratio, crop scale 0.9-1.0": ("keep_ratio", ["--crop-scale", "0.9", "1.0"])}


def categories(data: Path, per_category: int) -> dict[str, list[str]]:
    """Photo file names per category: each photo's class under exactly one category's synset."""
    nouns = data / "wordnet/imagenet_wordnet_nouns"
    parents = defaultdict(list)
    for line in (nouns / "is_a.txt").read_text().splitlines():
        parent, child = line.split()
        parents[child].append(parent)

    def ancestors(wnid: str) -> set[str]:
        seen, stack = {wnid}, [wnid]
        while stack:
            for parent in parents.get(stack.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    chosen = defaultdict(list)
    with open(data / "images/photos/imagenet_sample/classes.tsv") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            hits = [name for name, wnid in CATEGORIES.items() if wnid in ancestors(row["wnid"])]
            if len(hits) == 1 and len(chosen[hits[0]]) < per_category:
                chosen[hits[0]].append(row["file"])
    return dict(chosen)


def split(chosen: dict[str, list[str]], held_fraction: float) -> tuple[list, list]:
    train, held = [], []
    for name, files in sorted(chosen.items()):
        cut = math.ceil(len(files) * held_fraction)
        held += [(file, name) for file in files[:cut]]
        train += [(file, name) for file in files[cut:]]
    return train, held


def write_shards(photos: Path, train: list, mode: str, size: int, out: Path) -> Path:
    """The training photos as the crawl stores them in ``mode``: its decode/resize, its shards."""
    from pipeline import images, shards

    config = images.ImageConfig(image_size=size, resize_mode=mode)
    samples = []
    for i, (file, name) in enumerate(train):
        done = images.process((photos / file).read_bytes(), config)
        samples.append(shards.Sample(key=f"{i:09d}", url=file, status=done.status, caption=PHRASES[i % 10].format(name),
                                     image=done.data, width=done.width, height=done.height,
                                     original_width=done.original_width, original_height=done.original_height))
    shards.write_shard(str(out), 0, samples, "jpg")
    from core.sizes import write_sizes

    write_sizes(str(out), {"00000.tar": len(samples)})
    return out / "sizes.json"


def interval(correct: int, n: int) -> str:
    from scipy.stats import binomtest

    low, high = binomtest(correct, n).proportion_ci(0.95, method="exact")
    return f"{low:.3f}-{high:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", default="wit-rn-tiny-64")
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=80, help="the crawl's --image-size")
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=None, help="run only these (repeatable)")
    parser.add_argument("--out", default="/tmp/wit-crop")
    args = parser.parse_args()
    from wit.testing.shared_data import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the shared data folder ($WIT_SHARED_DATA or ../shared/data)")
    photos = data / "images/photos/imagenet_sample"
    work = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train, held = split(categories(data, args.per_category), 0.3)
    names = sorted({name for _, name in train})
    (work / "classnames.json").write_text(json.dumps(names))
    (work / "heldout.tsv").write_text("file\tlabel\n" + "".join(f"{f}\t{n}\n" for f, n in held))
    print(f"{len(train)} training and {len(held)} held-out photos, {len(names)} categories; "
          f"largest category share of the held-out photos {max(sum(n == c for _, n in held) for c in names) / len(held):.3f}")
    manifests = {mode: write_shards(photos, train, mode, args.image_size, work / mode)
                 for mode in {mode for mode, _ in RUNS.values()}}
    results = {}
    for label, (mode, extra) in RUNS.items():
        if args.only and label not in args.only:
            continue
        run = work / ("run-" + "".join(c if c.isalnum() else "-" for c in label))
        command = [sys.executable, "-m", "trainer.train", "--train-data", str(manifests[mode]), "--out", str(run),
                   "--model", args.model, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--lr", str(args.lr), "--warmup", "30", "--weight-decay", "0.1", "--workers", "1",
                   "--seed", str(args.seed), "--log-every", "20", "--save-every", "100000",
                   "--zeroshot-images", str(photos), "--zeroshot-labels", str(work / "heldout.tsv"),
                   "--zeroshot-classnames", str(work / "classnames.json"), "--zeroshot-every", str(args.steps // 4),
                   *extra]
        started = time.monotonic()
        done = subprocess.run(command, env={**os.environ, "WIT_QUIET": "1"})
        if done.returncode != 0:
            return done.returncode
        curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        points = sorted({r["step"]: r["zeroshot_top1"] for r in curve if "zeroshot_top1" in r}.items())
        results[label] = (points, time.monotonic() - started)
        print(f"{label}: " + ", ".join(f"step {s} {t:.3f}" for s, t in points), flush=True)
    print(f"\nmodel {args.model}, {args.steps} steps of batch {args.batch_size}, stored at {args.image_size} px, "
          f"seed {args.seed}; zero-shot top-1 on {len(held)} held-out photos (95% exact interval of the last):")
    for label, (points, wall) in results.items():
        last = points[-1][1]
        print(f"  {label:34s} last {last:.3f} ({interval(round(last * len(held)), len(held))}), "
              f"best {max(t for _, t in points):.3f}, {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
