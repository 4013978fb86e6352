"""The evaluation suite: every task's zero-shot (or retrieval) score and probes, then one report.

    wit eval suite --checkpoint MODEL --tasks TASKS.yaml|NAME,... --data-root DIR --out DIR

Each finished task is written to ``{out}/tasks/{name}.json`` at once (temporary name, then
rename): a killed suite run again keeps the finished tasks of the same model and computes only
the rest. Image features go to ``{out}/features`` (or ``--cache``), shared by zero-shot, the
probes and later runs. At the end ``{out}/results.json`` (one row per task, evaluation and
metric, with model and data provenance) and ``{out}/report.html``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.evaluation import metrics, probes, robustness
from trainer.evaluation.features import FeatureCache, Features, model_fingerprint
from trainer.evaluation.readers import EvalSplit, open_split
from trainer.evaluation.tasks import Task, load_tasks, subset_indices

log = logging.getLogger(__name__)


@dataclass
class SuiteConfig:
    checkpoint: str
    tasks: str
    out: str
    data_root: str | None = None
    batch_size: int = 64
    workers: int | None = None
    cache: str | None = None  # default {out}/features
    seeds: int = 3  # few-shot draws per k
    device: str = "auto"


@dataclass
class Context:
    """What every task of one suite run shares."""

    model: torch.nn.Module
    tokenizer: object
    model_id: str
    cache: FeatureCache
    config: SuiteConfig
    device: str


def run_suite(config: SuiteConfig) -> dict:
    from trainer.checkpoint import load_model

    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    model, tokenizer = load_model(config.checkpoint)
    model = model.to(device).eval()
    out = Path(config.out)
    context = Context(model, tokenizer, model_fingerprint(model), FeatureCache(config.cache or out / "features"),
                      config, device)
    task_list = load_tasks(config.tasks, config.data_root)
    records = []
    for task in task_list.tasks:
        done = out / "tasks" / f"{task.name}.json"
        if done.exists():
            record = json.loads(done.read_text())
            if record.get("model_id") == context.model_id:
                log.info("%s: kept from an earlier run (%s)", task.name, done)
                records.append(record)
                continue
        record = run_task(task, context)
        _write_json(done, record)
        log.info("%s: %s %s = %.4f", task.name, record["evaluation"], record["metric"], record["value"])
        records.append(record)
    results = collect(records, config, context.model_id, task_list.robustness_fit)
    _write_json(out / "results.json", results)
    from trainer.evaluation.report import write_report

    write_report(results, out / "report.html")
    return results


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def _open(task: Task, split: str) -> EvalSplit:
    options = dict(task.options)
    if task.reader == "labels_tsv" and isinstance(task.classnames, list):
        options.setdefault("classnames", task.classnames)
    return open_split(task.reader, task.path, split, **options)


def _features(context: Context, split: EvalSplit, name: str) -> Features:
    return context.cache.get(context.model, context.model_id, split, batch_size=context.config.batch_size,
                             workers=context.config.workers, device=context.device, desc=name)


def run_task(task: Task, context: Context) -> dict:
    started = time.monotonic()
    split = _open(task, task.split)
    test = _features(context, split, f"{task.name}/{task.split}")
    encoded = time.monotonic()
    record = {"task": task.name, "kind": split.kind, "metric": task.metric, "model_id": context.model_id,
              "shift_of": task.shift_of,
              "data": {"reader": task.reader, "source": split.source, "split": split.split, "n": len(test.keys),
                       "fingerprint": split.fingerprint}}
    if split.kind == "retrieval":
        scores = retrieval(context, test)
        record.update(evaluation="retrieval", scores=scores, value=scores["image_to_text_R@1"],
                      metric="image_to_text_R@1")
    else:
        record.update(zero_shot(task, split, test, context))
        if split.kind == "classification" and task.probes and (task.train_split or task.train_fraction):
            record.update(run_probes(task, test, record, context))
    record["seconds"] = {"encode": round(encoded - started, 3), "total": round(time.monotonic() - started, 3)}
    return record


def retrieval(context: Context, test: Features) -> dict:
    return retrieval_scores(context.model, context.tokenizer, test, context.device)


@torch.no_grad()
def retrieval_scores(model, tokenizer, test: Features, device: str = "cpu", chunk: int = 1024) -> dict:
    """recall@1/5/10 both ways; the captions are encoded in large batches."""
    texts = [caption for captions in test.targets for caption in captions]
    owner = [i for i, captions in enumerate(test.targets) for _ in captions]
    embeddings = torch.cat([model.encode_text(tokenizer(texts[i:i + chunk]).to(device)).float().cpu()
                            for i in range(0, len(texts), chunk)])
    scores = metrics.recall_at_k(test.images, embeddings, owner)
    scores.update(images=len(test.keys), captions=len(texts))
    return scores


def zero_shot(task: Task, split: EvalSplit, test: Features, context: Context) -> dict:
    from trainer.zeroshot import build_classifier

    classnames = task.resolved_classnames(split.classnames)
    templates = task.resolved_templates(split.templates, split.source)
    targets = test.targets
    if task.class_subset:  # labels index ImageNet's 1,000 classes; only the subset competes
        subset = subset_indices(task.class_subset)
        position = {full: i for i, full in enumerate(subset)}
        outside = [int(t) for t in targets if int(t) not in position]
        if outside:
            raise ValueError(f"task {task.name}: {len(outside)} labels outside the {task.class_subset} subset")
        classnames = [classnames[i] for i in subset]
        targets = torch.tensor([position[int(t)] for t in targets])
    classes = targets.shape[1] if split.kind == "multilabel" else int(targets.max()) + 1
    if classes > len(classnames):
        raise ValueError(f"task {task.name}: labels go up to {classes - 1} but there are {len(classnames)} class names")
    classifier = build_classifier(context.model, context.tokenizer, classnames, templates, context.device).cpu()
    logits = test.images @ classifier
    scores = metrics.classification_metrics(logits, targets, split.kind)
    return {"evaluation": "zero_shot", "scores": scores, "value": scores[task.metric], "classes": len(classnames),
            "templates": len(templates), "classnames": classnames}


def _metric(name: str):
    def score(scores: np.ndarray, labels: np.ndarray) -> float:
        logits, targets = torch.from_numpy(scores), torch.from_numpy(labels)
        if name == "mean_per_class":
            return metrics.mean_per_class_accuracy(logits, targets)
        return metrics.topk_accuracy(logits, targets, 1)
    return score


def run_probes(task: Task, test: Features, record: dict, context: Context) -> dict:
    """Linear probe and few-shot curve; train from ``train_split``, or carved from the test split."""
    classes = record["classes"]
    if task.train_split:
        try:
            train_split = _open(task, task.train_split)
        except FileNotFoundError as exc:  # e.g. an evaluation-only copy of a dataset: zero-shot still counts
            log.warning("%s: no probes: %s", task.name, exc)
            return {"probes_skipped": str(exc)}
        train = _features(context, train_split, f"{task.name}/{task.train_split}")
        train_x, train_y, test_x, test_y = train.images, train.targets, test.images, test.targets
    else:  # a small set with one split: a stratified part of it trains, the rest tests
        test_idx, train_idx = probes.stratified_split(test.targets.numpy(), task.train_fraction, seed=0)
        train_x, train_y = test.images[train_idx], test.targets[train_idx]
        test_x, test_y = test.images[test_idx], test.targets[test_idx]
    metric = _metric(task.metric if task.metric in ("top1", "mean_per_class") else "top1")
    config = probes.ProbeConfig(seeds=context.config.seeds)
    arrays = (train_x.numpy(), train_y.numpy(), test_x.numpy(), test_y.numpy())
    result = {}
    if "linear" in task.probes or "few_shot" in task.probes:
        linear = probes.linear_probe(*arrays, metric, classes, config)
        result["linear_probe"] = linear
    if "few_shot" in task.probes:
        curve = probes.few_shot(*arrays, metric, classes, result["linear_probe"]["C"], config)
        result["few_shot"] = {str(k): v for k, v in curve.items()}
        result["shots_matching_zero_shot"] = probes.shots_matching(curve, record["value"])
    return result


def collect(records: list[dict], config: SuiteConfig, model_id: str, fit: dict | None) -> dict:
    rows = []
    for r in records:
        for name, value in r.get("scores", {}).items():
            if isinstance(value, float):
                rows.append({"task": r["task"], "evaluation": r["evaluation"], "metric": name, "value": value})
        if "linear_probe" in r:
            rows.append({"task": r["task"], "evaluation": "linear_probe", "metric": r["metric"],
                         "value": r["linear_probe"]["value"]})
        for k, point in r.get("few_shot", {}).items():
            rows.append({"task": r["task"], "evaluation": f"few_shot_{k}", "metric": r["metric"],
                         "value": point["mean"]})
    by_name = {r["task"]: r for r in records}
    shifts = {r["task"]: r["value"] for r in records if r.get("shift_of")}
    bases = {r["shift_of"] for r in records if r.get("shift_of")}
    base = next(iter(bases)) if len(bases) == 1 else None
    imagenet = by_name[base]["value"] if base in by_name else None
    return {"model": {"checkpoint": config.checkpoint, "id": model_id},
            "suite": {k: v for k, v in asdict(config).items() if k not in ("checkpoint",)},
            "data": {r["task"]: r["data"] for r in records},
            "rows": rows, "tasks": records,
            "robustness": robustness.summary(imagenet, shifts, fit)}
