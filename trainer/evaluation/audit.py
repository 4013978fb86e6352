"""A model's zero-shot results on the evaluation sets of dedup indexes, image by image, for the
audit's All / Clean / Overlap table (CLIP section 5), through the suite's own code path (the same
transform, batched prompt classifier and metrics as ``wit eval suite``).

    wit eval audit-items --checkpoint MODEL --index INDEX_DIR [--index ...] --out items.json \\
        [--classnames labels.json --templates templates.json --task NAME]
    python -m dedup.audit --shards 'gs://B/shards/*.tar' --index gs://B/dedup/ix \\
        --zero-shot-items items.json --out gs://B/dedup/audit ...     # then, on Dataflow

``wit dedup audit --checkpoint MODEL`` runs both locally. The audit itself never loads a model:
the stages below the trainer import none of it, and the file (``dedup.report``'s format) is what
passes between them.
"""

from __future__ import annotations

from dedup import report, store
from trainer.evaluation import metrics
from trainer.evaluation.features import encode_split
from trainer.evaluation.readers import EvalSplit, Sample


def audit_items(indexes: list[str], checkpoint: str, classnames: str | None = None, templates: str | None = None,
                task: str | None = None) -> dict[str, dict]:
    """{eval set: {"classes", "mean_per_class", "correct": {eval_id: bool}}} for every labelled
    set of the indexes (class names: ``classnames``, or the set's sorted labels)."""
    from trainer import zeroshot
    from trainer.checkpoint import load_model

    model, tokenizer = load_model(checkpoint)
    model.eval()
    prompts = (zeroshot.load_task_list(templates, task, "templates") if templates else zeroshot.DEFAULT_TEMPLATES)
    out = {}
    for index in store.eval_sets(store.load_indexes(indexes)):
        items = [item for item in index.items if item["status"] == "ok" and item.get("label") is not None]
        if not items:
            continue
        names = (zeroshot.load_task_list(classnames, task, "class names") if classnames
                 else sorted({item["label"] for item in items}))
        position = {name: i for i, name in enumerate(names)}
        items = [item for item in items if item["label"] in position]
        split = EvalSplit(index.name, "eval", "classification",
                          lambda items=items: (Sample(item["eval_id"], report.read_source(item["source"]),
                                                      position[item["label"]]) for item in items))
        features = encode_split(model, split, desc=index.name)
        logits = features.images @ zeroshot.build_classifier(model, tokenizer, names, prompts)
        correct = (logits.argmax(dim=1) == features.targets).tolist()
        out[index.name] = {"classes": len(names),
                           "mean_per_class": round(100 * metrics.mean_per_class_accuracy(logits, features.targets), 3),
                           "correct": {item["eval_id"]: bool(ok) for item, ok in zip(items, correct)}}
    return out


def write_audit_items(path: str, indexes: list[str], checkpoint: str, **options) -> str:
    report.write_zero_shot_items(path, checkpoint, audit_items(indexes, checkpoint, **options))
    return path
