"""Robustness to natural distribution shift and "effective robustness".

Effective robustness (Taori et al. 2020, "Measuring Robustness to Natural Distribution Shifts in
Image Classification"; used by the CLIP paper, section 3.3) is a model's accuracy on a shifted
set minus the accuracy that ImageNet-trained models of the same ImageNet accuracy reach there.
That baseline is a line fitted to many ImageNet models in logit space:
``logit(shift_acc) = slope * logit(imagenet_acc) + intercept``.

The coefficients come from the user (the task file's ``robustness_fit``, or a CSV of reference
models' accuracies fitted by :func:`fit_logit_line`, e.g. the accuracies published with Taori et
al.'s testbed): this package ships no numbers it cannot cite. Without a fit the report gives
each shift's accuracy, their average and the drop from ImageNet, and no effective robustness.
"""

from __future__ import annotations

import csv
import math
from typing import Sequence


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def fit_logit_line(imagenet: Sequence[float], shifted: Sequence[float]) -> dict:
    """Least-squares line through (logit(imagenet), logit(shifted)) of reference models (0-1)."""
    if len(imagenet) != len(shifted) or len(imagenet) < 2:
        raise ValueError("a logit-linear fit needs two or more (imagenet, shifted) accuracy pairs")
    xs, ys = [logit(a) for a in imagenet], [logit(b) for b in shifted]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a logit-linear fit needs reference models of different ImageNet accuracies")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return {"slope": slope, "intercept": my - slope * mx, "models": len(xs)}


def fit_from_csv(path: str, imagenet_column: str = "imagenet", shifted_column: str = "shifted") -> dict:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {imagenet_column, shifted_column} <= set(rows[0]):
        raise ValueError(f"{path}: needs the columns {imagenet_column!r} and {shifted_column!r}")
    scale = 100.0 if max(float(r[imagenet_column]) for r in rows) > 1 else 1.0  # percent or fraction
    fit = fit_logit_line([float(r[imagenet_column]) / scale for r in rows],
                         [float(r[shifted_column]) / scale for r in rows])
    return {**fit, "source": path}


def predicted(fit: dict, imagenet_accuracy: float) -> float:
    return sigmoid(fit["slope"] * logit(imagenet_accuracy) + fit["intercept"])


def summary(imagenet_accuracy: float | None, shifts: dict[str, float], fit: dict | None) -> dict:
    """Each shift's accuracy, the average, the drop from ImageNet and (with a fit) the effective
    robustness of the average: average shifted accuracy minus the fit's prediction."""
    if not shifts:
        return {}
    average = sum(shifts.values()) / len(shifts)
    result = {"imagenet": imagenet_accuracy, "shifts": shifts, "average": average, "fit": fit}
    if imagenet_accuracy is not None:
        result["drop"] = imagenet_accuracy - average
        if fit:
            result["expected_average"] = predicted(fit, imagenet_accuracy)
            result["effective_robustness"] = average - result["expected_average"]
    return result
