"""`wit eval suite` end to end on every predefined task that has data here: CIFAR-10 (with linear
and few-shot probes), the ImageNet sample photos (ImageNet's 1,000 classes, 80 templates), COCO
mini retrieval, and two distribution shifts built from the ImageNet sample to exercise the
robustness path: grey + blurred + low-contrast photos, and the 200 photos of ImageNet-R's classes
labelled in ImageNet's 1,000-class order (``class_subset: imagenet-r``: only those 200 logits
compete). The sets are built by benchmarks/eval_agreement.py's ``build_sets`` into ``--work``.

    .venv/bin/python benchmarks/eval_suite_here.py --checkpoint /tmp/wit-cifar/run --work /tmp/wit-eval-agree
    # = wit eval suite --checkpoint ... --tasks WORK/suite/tasks.yaml --out WORK/suite
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_agreement import build_sets, shared_data  # noqa: E402


def build_subset(data: Path, out: Path) -> Path:
    from trainer.evaluation import paper_prompts
    from trainer.evaluation.export_wds import write_split
    from trainer.evaluation.tasks import subset_indices

    if (out / "test" / "nshards.txt").exists():
        return out
    photos = data / "images/photos/imagenet_sample"
    keep = set(subset_indices("imagenet-r"))
    rows = [r for r in csv.DictReader(open(photos / "classes.tsv", newline=""), delimiter="\t")
            if int(r["class_index"]) in keep]
    write_split(out, "test", [(Path(r["file"]).stem, (photos / r["file"]).read_bytes(), int(r["class_index"]))
                              for r in rows], classnames=paper_prompts.CLASSNAMES["imagenet1k"])
    return out


def main() -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--work", default="/tmp/wit-eval-agree")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work)
    sets = build_sets(shared_data(), work / "data", 100, 100)
    subset = build_subset(shared_data(), work / "data" / "wds_imagenet-r-sample")
    out = work / "suite"
    out.mkdir(parents=True, exist_ok=True)
    tasks = out / "tasks.yaml"
    tasks.write_text(yaml.safe_dump({"data_root": str(work / "data"), "tasks": [
        "cifar10",
        {"name": "imagenet1k", "probes": []},  # one photo per class: nothing to train a probe on
        "mscoco_captions",
        {"name": "imagenet1k-gray", "path": str(sets["imagenet1k-gray"]), "templates": "imagenet1k",
         "classnames": "imagenet1k", "shift_of": "imagenet1k", "probes": []},
        {"name": "imagenet-r-sample", "path": str(subset), "templates": "imagenet1k", "classnames": "imagenet1k",
         "class_subset": "imagenet-r", "shift_of": "imagenet1k", "probes": []},
    ]}, sort_keys=False))
    command = [str(Path(sys.executable).with_name("wit")), "eval", "suite", "--checkpoint", args.checkpoint,
               "--tasks", str(tasks), "--out", str(out), "--seeds", str(args.seeds)]
    print(" ".join(command))
    started = time.monotonic()
    done = subprocess.run(command, env={**os.environ, "WIT_QUIET": "1"})
    print(f"wall {time.monotonic() - started:.1f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
