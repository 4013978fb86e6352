"""Agreement and speed of `wit eval suite` against CLIP_benchmark (LAION, PyPI 1.6.2) on the same
model and the same local webdataset sets.

The sets are built from ``../shared/data`` into ``--work`` in CLIP_benchmark's wds layout:
CIFAR-10 (``--cifar-test`` test images per class from the 100 per class that benchmarks/train_cifar.py
holds out, ``--cifar-train`` train images per class from the rest), the ImageNet sample photos
(one per class) with ImageNet's 1,000 class names and 80 templates, and COCO mini captions (79
images, 395 captions). The model is exported to OpenCLIP's format and loaded the way OpenCLIP
users load it (``open_clip.add_model_config`` + ``create_model_and_transforms(name,
pretrained=FILE)``), then CLIP_benchmark's own ``run`` evaluates each task; ours runs the suite
on the same folders (cold feature cache). Both in fp32 on the same device, each tool in a
fresh process of its own (one after the other), as a user runs it.

    .venv/bin/python benchmarks/train_cifar.py --model wit-tiny-32 --minutes 12 --out /tmp/wit-cifar
    .venv/bin/python benchmarks/eval_agreement.py --checkpoint /tmp/wit-cifar/run/model --work /tmp/wit-eval-agree

Agreement goals: zero-shot top-1 and mean-per-class within 0.1 point, retrieval recall@1/5/10
equal, linear probe within 1 point. The probes differ in method by design: ours is the paper's
L-BFGS logistic regression with C searched on a validation split and a refit on train +
validation; CLIP_benchmark trains a linear layer with AdamW (10 epochs, lr 0.1, weight decay 0 by
default): the goal row compares with that default, what its users run. Beside it (not in the
goal, not in the wall time): CLIP_benchmark's own paper-like sweep (weight decay searched on a
validation split, refit on train + validation; its code cites the paper's appendix A.3), given
the very split ours carves (same rule, fraction and seed, written as ``probe_train`` and
``probe_val``), so both search on the same images and refit on the same train + validation.
Speed goal: anchor wall time / ours >= 1.5 over the
same four tasks.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.evaluation import paper_prompts  # noqa: E402
from trainer.evaluation.export_wds import write_split  # noqa: E402
from trainer.evaluation.probes import ProbeConfig, stratified_split  # noqa: E402


def shared_data() -> Path:
    return Path(os.environ.get("WIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# -- data ------------------------------------------------------------------------------------------
def build_sets(data: Path, work: Path, cifar_test: int, cifar_train: int) -> dict[str, Path]:
    sets = {"cifar10": work / "wds_cifar10", "imagenet1k": work / "wds_imagenet1k",
            "mscoco_captions": work / "wds_mscoco_captions", "imagenet1k-gray": work / "wds_imagenet1k-gray"}
    if all((path / "test" / "nshards.txt").exists() for path in sets.values()) and \
            (sets["cifar10"] / "probe_val" / "nshards.txt").exists():
        return sets
    folder = data / "images/eval/cifar10_test_jpg"
    rows = list(csv.DictReader(open(folder / "labels.tsv", newline=""), delimiter="\t"))
    names = [n for _, n in sorted({(int(r["label_index"]), r["label"]) for r in rows})]
    number = {r["file"]: int(r["file"].rsplit("_", 1)[1].split(".")[0]) for r in rows}
    for split, keep in (("test", lambda n: 200 <= n < 200 + cifar_test), ("train", lambda n: n < cifar_train)):
        samples = [(Path(r["file"]).stem, (folder / r["file"]).read_bytes(), int(r["label_index"]))
                   for r in rows if keep(number[r["file"]])]
        write_split(sets["cifar10"], split, samples, classnames=names, templates=paper_prompts.TEMPLATES["cifar10"])
    # The validation split our probe carves from `train` (same rule, fraction and seed), written
    # out for CLIP_benchmark's sweep (`--train_split probe_train --val_split probe_val`): both
    # tools search their regulariser on the same images and refit on the same train + validation.
    config = ProbeConfig()
    kept, held = stratified_split(np.array([label for _, _, label in samples]), config.val_fraction, config.seed)
    for split, chosen in (("probe_train", kept), ("probe_val", held)):
        write_split(sets["cifar10"], split, [samples[i] for i in sorted(chosen)], classnames=names,
                    templates=paper_prompts.TEMPLATES["cifar10"])
    photos = data / "images/photos/imagenet_sample"
    classes = list(csv.DictReader(open(photos / "classes.tsv", newline=""), delimiter="\t"))
    samples = [(Path(r["file"]).stem, (photos / r["file"]).read_bytes(), int(r["class_index"])) for r in classes]
    for name, transform in (("imagenet1k", None), ("imagenet1k-gray", _gray_blur)):
        write_split(sets[name], "test", [(k, transform(b) if transform else b, t) for k, b, t in samples],
                    classnames=paper_prompts.CLASSNAMES["imagenet1k"], templates=paper_prompts.TEMPLATES["imagenet1k"])
    coco = data / "images/eval/coco_val2017_mini"
    captions: dict[str, list[str]] = {}
    for r in csv.DictReader(open(coco / "captions.tsv", newline=""), delimiter="\t"):
        captions.setdefault(r["file"], []).append(r["caption"].strip())
    write_split(sets["mscoco_captions"], "test", [(Path(f).stem, (coco / f).read_bytes(), caps)
                                                  for f, caps in sorted(captions.items())], kind="retrieval")
    return sets


def _gray_blur(data: bytes) -> bytes:
    """A distribution shift built from the ImageNet sample: grey, blurred, low contrast."""
    from PIL import Image, ImageEnhance, ImageFilter

    image = Image.open(io.BytesIO(data)).convert("L").filter(ImageFilter.GaussianBlur(2)).convert("RGB")
    buffer = io.BytesIO()
    ImageEnhance.Contrast(image).enhance(0.6).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# -- ours ------------------------------------------------------------------------------------------
def run_ours(checkpoint: str, sets: dict[str, Path], out: Path, batch_size: int) -> tuple[dict, dict]:
    import yaml

    from trainer.evaluation.suite import SuiteConfig, run_suite

    tasks = out / "tasks.yaml"
    out.mkdir(parents=True, exist_ok=True)
    tasks.write_text(yaml.safe_dump({"tasks": [
        {"name": "cifar10", "path": str(sets["cifar10"]), "probes": ["linear"]},
        {"name": "imagenet1k", "path": str(sets["imagenet1k"]), "probes": []},
        {"name": "mscoco_captions", "path": str(sets["mscoco_captions"])}]}))
    started = time.monotonic()
    results = run_suite(SuiteConfig(checkpoint, str(tasks), str(out), batch_size=batch_size, device="cpu"))
    wall = time.monotonic() - started
    return {r["task"]: r for r in results["tasks"]}, {"wall": wall, **{r["task"]: r["seconds"]["total"]
                                                                      for r in results["tasks"]}}


# -- the anchor ------------------------------------------------------------------------------------
def patch_clip_benchmark() -> None:
    """Two patches of clip-benchmark 1.6.2, here and not in our code: its linear probe asserts CUDA
    and calls ``.cuda()`` (the probe runs on CPU without them: same code, CPU tensors); its
    accuracy() calls float() on a one-element array, which numpy 2.4 refuses (same computation
    with ``.item()``)."""
    import inspect

    from clip_benchmark.metrics import linear_probe, zeroshot_classification

    source = inspect.getsource(linear_probe).replace("assert device == 'cuda'", "pass").replace(".cuda()", "")
    exec(compile(source, linear_probe.__file__, "exec"), linear_probe.__dict__)

    def accuracy(output, target, topk=(1,)):
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]

    zeroshot_classification.accuracy = accuracy
    linear_probe.accuracy = accuracy


def run_anchor(config: Path, weights: Path, name: str, sets: dict[str, Path], out: Path,
               batch_size: int) -> tuple[dict, dict]:
    import open_clip
    from clip_benchmark import cli

    patch_clip_benchmark()
    open_clip.add_model_config(str(config))
    sweep = ["--train_split", "probe_train", "--val_split", "probe_val"]  # its paper-like sweep, our split
    jobs = [("cifar10", "zeroshot_classification", "", []), ("cifar10", "linear_probe", "", []),
            ("imagenet1k", "zeroshot_classification", "", []), ("mscoco_captions", "zeroshot_retrieval", "", []),
            ("cifar10", "linear_probe", "sweep", sweep)]  # printed beside, not timed in the ratio
    scores, times = {}, {}
    out.mkdir(parents=True, exist_ok=True)
    for dataset, task, variant, extra in jobs:
        key = f"{dataset}/{task}" + (f"/{variant}" if variant else "")
        output = out / f"{key.replace('/', '_')}.json"
        argv = ["eval", "--model", name, "--pretrained", str(weights), "--dataset", f"wds/{dataset}",
                "--dataset_root", str(sets[dataset]), "--task", task, "--no_amp", "--num_workers", "0",
                "--batch_size", str(batch_size), "--recall_k", "1", "5", "10", "--output", str(output),
                "--feature_root", str(out / f"features{variant}"), "--quiet", *extra]
        sys.argv = ["clip_benchmark", *argv]
        begun = time.monotonic()
        cli.main()
        times[key] = time.monotonic() - begun
        scores[key] = json.loads(output.read_text())["metrics"]
    times["wall"] = sum(seconds for key, seconds in times.items() if not key.endswith("/sweep"))
    return scores, times


# -- comparison ------------------------------------------------------------------------------------
def compare(anchor: dict, ours: dict) -> list[tuple[str, float, float, float, float]]:
    """(what, anchor, ours, |difference| in points, tolerance in points)."""
    rows = []
    for dataset in ("cifar10", "imagenet1k"):
        theirs, mine = anchor[f"{dataset}/zeroshot_classification"], ours[dataset]["scores"]
        rows.append((f"{dataset} zero-shot top-1", theirs["acc1"], mine["top1"], 0.1))
        rows.append((f"{dataset} zero-shot mean-per-class", theirs["mean_per_class_recall"], mine["mean_per_class"], 0.1))
    theirs, mine = anchor["mscoco_captions/zeroshot_retrieval"], ours["mscoco_captions"]["scores"]
    for k in (1, 5, 10):
        rows.append((f"coco image->text R@{k}", theirs[f"text_retrieval_recall@{k}"], mine[f"image_to_text_R@{k}"], 0.0))
        rows.append((f"coco text->image R@{k}", theirs[f"image_retrieval_recall@{k}"], mine[f"text_to_image_R@{k}"], 0.0))
    rows.append(("cifar10 linear probe top-1", anchor["cifar10/linear_probe"]["lp_acc1"],
                 ours["cifar10"]["linear_probe"]["value"], 1.0))
    rows.append(("  beside: CLIP_benchmark's wd sweep", anchor["cifar10/linear_probe/sweep"]["lp_acc1"],
                 ours["cifar10"]["linear_probe"]["value"], None))
    return [(what, a, b, abs(a - b) * 100, tol) for what, a, b, tol in rows]


def run_side(args: argparse.Namespace) -> None:
    """One tool in this process (a fresh one per tool: one tool's leftovers never slow the other)."""
    import torch

    torch.manual_seed(0)
    work = Path(args.work)
    sets = build_sets(shared_data(), work / "data", args.cifar_test, args.cifar_train)
    out = work / f"{args.side}-{args.stamp}"
    if args.side == "anchor":
        scores, times = run_anchor(work / "openclip" / "wit-bench.json", work / "openclip" / "wit-bench.pt",
                                   "wit-bench", sets, out, args.batch_size)
    else:
        scores, times = run_ours(args.checkpoint, sets, out, args.batch_size)
    Path(args.result).write_text(json.dumps({"scores": scores, "times": times}, default=float))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--checkpoint", required=True, help="a model folder (or checkpoint / run folder)")
    parser.add_argument("--work", default="/tmp/wit-eval-agree")
    parser.add_argument("--cifar-test", type=int, default=100, help="test images per class (<= 100)")
    parser.add_argument("--cifar-train", type=int, default=100, help="probe train images per class (<= 200)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--side", choices=("anchor", "ours"), help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--stamp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("WIT_QUIET", "1")
    if args.side:
        run_side(args)
        return 0
    from trainer.checkpoint import load_model
    from trainer.interop import export_openclip

    work = Path(args.work)
    build_sets(shared_data(), work / "data", args.cifar_test, args.cifar_train)
    model, _ = load_model(args.checkpoint)
    config, weights = export_openclip(model, work / "openclip", "wit-bench")
    assert (config, weights) == (work / "openclip" / "wit-bench.json", work / "openclip" / "wit-bench.pt")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sides = {}
    for side in ("anchor", "ours"):
        result = work / f"{side}-{stamp}.json"
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--side", side, "--result", str(result),
                        "--stamp", stamp], check=True)
        sides[side] = json.loads(result.read_text())
    (anchor, anchor_times), (ours, our_times) = ((sides[s]["scores"], sides[s]["times"]) for s in ("anchor", "ours"))
    print(f"{'what':38s} {'CLIP_benchmark':>14s} {'ours':>8s} {'diff(pt)':>9s} {'goal(pt)':>9s}")
    for what, a, b, diff, tol in compare(anchor, ours):
        goal = "      -" if tol is None else f"{'<=' if diff <= tol + 1e-9 else '> '}{tol:7.1f}"
        print(f"{what:38s} {100 * a:14.2f} {100 * b:8.2f} {diff:9.3f} {goal}")
    print("seconds per task: CLIP_benchmark " + ", ".join(f"{k} {v:.1f}" for k, v in anchor_times.items() if k != "wall"))
    print("seconds per task: ours           " + ", ".join(f"{k} {v:.1f}" for k, v in our_times.items() if k != "wall"))
    ratio = anchor_times["wall"] / our_times["wall"]
    print(f"wall: CLIP_benchmark {anchor_times['wall']:.1f} s, ours {our_times['wall']:.1f} s, "
          f"ratio {ratio:.2f} (goal >= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
