"""``wit eval``: the evaluation suite and the single-task commands it is built from.

    wit eval suite --checkpoint MODEL --tasks TASKS.yaml|NAME,... --data-root DIR --out DIR \\
        [--batch-size 64] [--workers N] [--cache DIR] [--seeds 3] [--device auto|cpu|cuda]
    wit eval suite --checkpoint MODEL --tasks cifar10,imagenet1k,robustness --data-root /data --out eval/
    wit eval zeroshot --checkpoint MODEL --images DIR --labels labels.tsv --classnames labels.json \
        [--templates templates.json] [--task CIFAR10] [--out result.json]
    wit eval linear-probe --checkpoint MODEL --images DIR --labels labels.tsv [--test-fraction 0.3]
    wit eval retrieval --checkpoint MODEL --images DIR --captions captions.tsv|captions.json
    wit eval audit-items --checkpoint MODEL --index INDEX_DIR --out items.json   (for the dedup audit)

``--tasks``: a YAML task file (trainer.evaluation.tasks) or comma-separated predefined names
(``paper`` = the CLIP paper's 27 datasets, ``robustness`` = ImageNet's shifted sets).
A tiny run on CPU: ``--tasks cifar10 --data-root DIR_WITH_wds_cifar10 --batch-size 32``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainer import zeroshot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    suite = sub.add_parser("suite", help="zero-shot, retrieval, probes and robustness on many tasks; one report",
                           allow_abbrev=False)
    suite.add_argument("--checkpoint", required=True, help="a model folder, checkpoint or run (trainer.checkpoint)")
    suite.add_argument("--tasks", required=True, help="a YAML task file or comma-separated task names")
    suite.add_argument("--data-root", default=None, help="where the tasks' `{data_root}` paths point")
    suite.add_argument("--out", required=True, help="output folder: tasks/, results.json, report.html")
    suite.add_argument("--batch-size", type=int, default=64)
    suite.add_argument("--workers", type=int, default=None, help="image decoding threads (default: cores, <= 8)")
    suite.add_argument("--cache", default=None, help="image feature cache (default OUT/features)")
    suite.add_argument("--seeds", type=int, default=3, help="few-shot draws per number of shots")
    suite.add_argument("--device", default="auto")
    add_task_commands(sub)


def main(args: argparse.Namespace) -> int:
    if args.action != "suite":
        return single_task(args)
    from trainer.evaluation.suite import SuiteConfig, run_suite

    results = run_suite(SuiteConfig(checkpoint=args.checkpoint, tasks=args.tasks, out=args.out,
                                    data_root=args.data_root, batch_size=args.batch_size, workers=args.workers,
                                    cache=args.cache, seeds=args.seeds, device=args.device))
    for record in results["tasks"]:
        extra = f", linear probe {record['linear_probe']['value']:.4f}" if "linear_probe" in record else ""
        print(f"{record['task']}: {record['evaluation']} {record['metric']} {record['value']:.4f}{extra}")
    robust = results.get("robustness") or {}
    if robust:
        print(f"robustness: average shifted accuracy {robust['average']:.4f}"
              + (f", effective robustness {robust['effective_robustness']:+.4f}"
                 if robust.get("effective_robustness") is not None else ""))
    print(f"wrote {args.out}/results.json and {args.out}/report.html")
    return 0


def add_task_commands(sub) -> None:
    """The single-task commands: one image folder, no task file."""
    probe = sub.add_parser("linear-probe", help="the paper's L-BFGS probe on frozen image features (held-out split)",
                           allow_abbrev=False)
    probe.add_argument("--checkpoint", required=True)
    probe.add_argument("--images", required=True)
    probe.add_argument("--labels", required=True, help="TSV with header: file, label")
    probe.add_argument("--classnames", default=None, help="JSON list or dict by task (labels may then be names)")
    probe.add_argument("--task", default=None)
    probe.add_argument("--test-fraction", type=float, default=0.3)
    probe.add_argument("--seed", type=int, default=0)
    probe.add_argument("--out", default=None)
    ret = sub.add_parser("retrieval", help="image-text recall@k on a caption set (e.g. COCO)", allow_abbrev=False)
    ret.add_argument("--checkpoint", required=True)
    ret.add_argument("--images", required=True)
    ret.add_argument("--captions", required=True,
                     help="TSV with header: file, caption (a row per caption), or a COCO captions JSON")
    ret.add_argument("--out", default=None)
    zs = sub.add_parser("zeroshot", help="zero-shot classification with prompt templates", allow_abbrev=False)
    zs.add_argument("--checkpoint", required=True, help="a model folder, checkpoint or run folder")
    zs.add_argument("--images", required=True, help="folder of images named in --labels")
    zs.add_argument("--labels", required=True, help="TSV with header: file, label (class name or index)")
    zs.add_argument("--classnames", required=True, help="JSON list, or dict of lists by task")
    zs.add_argument("--templates", default=None, help="JSON list, or dict of lists by task (default: ours)")
    zs.add_argument("--task", default=None)
    zs.add_argument("--out", default=None, help="write the result here as JSON")
    items = sub.add_parser("audit-items", allow_abbrev=False,
                           help="per-image zero-shot results on dedup indexes, for `dedup.audit --zero-shot-items`")
    add_audit_item_arguments(items, required=True)
    items.add_argument("--index", dest="indexes", action="append", required=True, metavar="INDEX_DIR",
                       help="an index from `wit dedup index`; repeatable")
    items.add_argument("--out", required=True, help="the JSON file to write (local or gs://)")


def add_audit_item_arguments(parser, required: bool) -> None:
    """The model flags of ``audit-items``, which ``wit dedup audit`` also takes."""
    parser.add_argument("--checkpoint", required=required, default=None,
                        help="a model folder, checkpoint or run folder: zero-shot top-1 on All/Clean/Overlap")
    parser.add_argument("--classnames", default=None, help="JSON class names (default: the index's sorted labels)")
    parser.add_argument("--templates", default=None, help="JSON prompt templates (default: the project's own)")
    parser.add_argument("--task", default=None, help="the key in --classnames/--templates JSON dicts")


def single_task(args: argparse.Namespace) -> int:
    if args.action == "audit-items":
        from trainer.evaluation.audit import write_audit_items

        write_audit_items(args.out, args.indexes, args.checkpoint, classnames=args.classnames,
                          templates=args.templates, task=args.task)
        print(f"wrote {args.out}")
        return 0
    from trainer.checkpoint import load_model
    from trainer.evaluation.features import encode_split
    from trainer.evaluation.readers import open_split

    model, tokenizer = load_model(args.checkpoint)
    if args.action == "retrieval":
        from trainer.evaluation.suite import retrieval_scores

        features = encode_split(model, open_split("captions", args.images, captions=str(Path(args.captions).resolve())))
        result = retrieval_scores(model, tokenizer, features)
        print(" ".join(f"{k} {v:.3f}" for k, v in result.items() if "R@" in k))
        return _write(result, args.out)
    if args.action == "linear-probe":
        from trainer.evaluation.probes import holdout_probe

        names = zeroshot.load_task_list(args.classnames, args.task, "class names") if args.classnames else None
        split = open_split("labels_tsv", args.images, labels=str(Path(args.labels).resolve()), classnames=names)
        features = encode_split(model, split)
        result = holdout_probe(features.images.numpy(), features.targets.numpy(), args.test_fraction, args.seed)
        print(f"linear probe: test accuracy {result['test_accuracy']:.3f} (C={result['C']:.3g}, "
              f"{result['train']} train / {result['test']} test)")
        return _write(result, args.out)
    classnames = zeroshot.load_task_list(args.classnames, args.task, "class names")
    templates = (zeroshot.load_task_list(args.templates, args.task, "templates") if args.templates
                 else zeroshot.DEFAULT_TEMPLATES)
    result = zeroshot.zeroshot(model, tokenizer, args.images, args.labels, classnames, templates)
    print(f"zero-shot {args.task or ''}: top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f} "
          f"on {result['n']} images, {len(classnames)} classes (chance {result['chance']:.3f})")
    return _write(result, args.out)


def _write(result: dict, out: str | None) -> int:
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
