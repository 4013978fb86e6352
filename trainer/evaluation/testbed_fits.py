"""The reference lines of effective robustness, fitted from Taori et al.'s published testbed.

Effective robustness (Taori et al. 2020, "Measuring Robustness to Natural Distribution Shifts
in Image Classification") measures a model against a line fitted in logit space to ImageNet
models of standard training: ``logit(shifted) = slope * logit(x) + intercept``. The testbed's
repository (github.com/modestyachts/imagenet-testbed, MIT licence) publishes every model's
top-1 accuracies (``robustness_top1s.csv``) and each model's training type
(``plotting/model_types.py``); its plotting scripts choose the models of each line. This module
applies the same choice and writes the coefficients wit ships (``testbed_fits.json``)::

    python -m trainer.evaluation.testbed_fits --testbed CHECKOUT [--out testbed_fits.json]

The rules, per shift, as the testbed's scripts give them (``paper_nat_shift_imagenetv2.py``,
``paper_appendix_imagenet_sketch.py``, ``paper_appendix_imagenet_r.py``, ``paper_objectnet.py``,
``paper_imagenet_a.py``): standard-training models only, no subsampled / ``aws`` / ``batch64``
runs, the x accuracy at or above a floor (55 %, or 75 % on the 200-class subsets), and x on the
shift's own ImageNet class subset where it has one. ImageNet-A's line has two pieces, split at
ResNet-50's accuracy on A's classes (91.86 %), as in the testbed. ``average`` is ours: the mean
of the five shifts against full ImageNet accuracy, over the models that have all five (CLIP's
figure 13 draws the same kind of average, over seven sets).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
from dataclasses import dataclass
from pathlib import Path

from trainer.evaluation.robustness import FITS_FILE, fit_logit_line

SOURCE = ("Taori et al. 2020 testbed, github.com/modestyachts/imagenet-testbed (MIT) at {commit}: "
          "robustness_top1s.csv; standard-training models, the testbed's line-fit rules")
IMAGENET_A_SPLIT = 91.86  # ResNet-50's top-1 on ImageNet-A's 200 classes: the testbed's pivot


@dataclass(frozen=True)
class Rule:
    name: str           # our task name of the shift
    x: str              # testbed column of the ImageNet accuracy the line is drawn against
    y: tuple[str, ...]  # testbed column(s) of the shifted accuracy (several: their mean)
    floor: float        # x at or above this, in percent
    excluded: tuple[str, ...] = ()


RULES = (
    Rule("imagenetv2", "val", ("imagenetv2-matched-frequency-format-val",), 55),
    Rule("imagenet_sketch", "val", ("imagenet-sketch",), 55),
    Rule("imagenet-r", "val-on-imagenet-r-classes", ("imagenet-r",), 75, ("deepaugment",)),
    Rule("imagenet-a", "val-on-imagenet-a-classes", ("imagenet-a",), 75),
    Rule("objectnet", "val-on-objectnet-classes", ("objectnet-1.0-beta",), 55),
    Rule("average", "val", ("imagenetv2-matched-frequency-format-val", "imagenet-sketch", "imagenet-r",
                            "imagenet-a", "objectnet-1.0-beta"), 55),
)


def standard_models(model_types_source: str) -> set[str]:
    """Names typed ``ModelTypes.STANDARD`` in the testbed's ``model_types.py`` (read, not run)."""
    for node in ast.walk(ast.parse(model_types_source)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "model_types_map" for t in node.targets):
            return {key.value for key, value in zip(node.value.keys, node.value.values)
                    if isinstance(key, ast.Constant) and ast.unparse(value) == "ModelTypes.STANDARD"}
    raise ValueError("model_types.py: no `model_types_map = {...}` found")


def _line(points: list[tuple[float, float]]) -> dict:
    """Least squares in logit space (the testbed's ``scipy.stats.linregress`` on logits), of
    accuracies in percent."""
    if len({x for x, _ in points}) < 2:
        raise ValueError(f"a line needs two or more models of different accuracy; {len(points)} qualify")
    return fit_logit_line([x / 100 for x, _ in points], [y / 100 for _, y in points])


def _points(rows: list[dict], standard: set[str], rule: Rule) -> list[tuple[float, float, str]]:
    points = []
    for row in rows:
        name = row["model"]
        lowered = name.lower()
        if name not in standard or any(s in lowered for s in ("subsample", "aws", "batch64") + rule.excluded):
            continue
        if rule.name == "imagenet-a" and lowered == "resnet50":
            continue  # the testbed leaves the pivot model out of both pieces
        try:
            x = float(row[rule.x])
            ys = [float(row[c]) for c in rule.y]
        except (KeyError, ValueError):
            continue  # a model the testbed did not evaluate on this set
        if x >= rule.floor:
            points.append((x, sum(ys) / len(ys), name))
    return points


def fit_testbed(rows: list[dict], standard: set[str], commit: str, rules: tuple[Rule, ...] = RULES) -> dict:
    fits = {}
    for rule in rules:
        points = _points(rows, standard, rule)
        fit = {"x": "imagenet1k" if rule.x == "val" else f"imagenet1k on the {rule.name} classes",
               "testbed_x": rule.x, "testbed_y": list(rule.y), "source": SOURCE.format(commit=commit)}
        if rule.name == "imagenet-a":
            below = [(x, y) for x, y, _ in points if x < IMAGENET_A_SPLIT]
            above = [(x, y) for x, y, _ in points if x > IMAGENET_A_SPLIT]
            fit["pieces"] = [{**_line(below), "below": IMAGENET_A_SPLIT / 100},
                             {**_line(above), "above": IMAGENET_A_SPLIT / 100}]
        else:
            fit.update(_line([(x, y) for x, y, _ in points]))
        fits[rule.name] = fit
    return fits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--testbed", required=True, help="a checkout of modestyachts/imagenet-testbed")
    parser.add_argument("--commit", default="unknown commit", help="the checkout's commit, for the source line")
    parser.add_argument("--out", default=str(FITS_FILE))
    args = parser.parse_args(argv)
    root = Path(args.testbed)
    with open(root / "robustness_top1s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    standard = standard_models((root / "plotting" / "model_types.py").read_text())
    fits = fit_testbed(rows, standard, args.commit)
    Path(args.out).write_text(json.dumps(fits, indent=1, sort_keys=True) + "\n")
    for name, fit in fits.items():
        pieces = fit.get("pieces", [fit])
        print(name, "; ".join(f"slope {p['slope']:.4f} intercept {p['intercept']:.4f} ({p['models']} models)"
                              for p in pieces))


if __name__ == "__main__":
    main()
