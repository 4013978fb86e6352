"""Robustness to natural distribution shift and "effective robustness".

Effective robustness (Taori et al. 2020, "Measuring Robustness to Natural Distribution Shifts in
Image Classification"; used by the CLIP paper, section 3.3) is a model's accuracy on a shifted
set minus the accuracy that ImageNet-trained models of the same ImageNet accuracy reach there.
That baseline is a line fitted to many ImageNet models in logit space:
``logit(shift_acc) = slope * logit(imagenet_acc) + intercept``.

The package ships the lines fitted from Taori et al.'s published testbed accuracies
(:mod:`trainer.evaluation.testbed_fits`, with their source): one per shift and one for the
average of the five. A shift whose line is drawn against full ImageNet accuracy (ImageNetV2,
ImageNet-Sketch) gets its own effective robustness; the average of the five paper shifts gets
the ``average`` line. The task file's ``robustness_fit`` overrides the average's line: a mapping
``{slope, intercept, source}``, or the name of a shipped line; :func:`fit_from_csv` fits one
from a CSV of reference models. Without a line the report gives each shift's accuracy, their
average and the drop from ImageNet, and says why there is no effective robustness.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path
from typing import Sequence

#: The shipped lines, written by :mod:`trainer.evaluation.testbed_fits` (their source inside).
FITS_FILE = Path(__file__).with_name("testbed_fits.json")
AVERAGED = ("imagenetv2", "imagenet_sketch", "imagenet-r", "imagenet-a", "objectnet")  # the average line's shifts


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


@functools.lru_cache(maxsize=1)
def load_fits() -> dict:
    """The shipped lines by name (read once; callers copy what they change)."""
    return json.loads(FITS_FILE.read_text())


def predicted(fit: dict, imagenet_accuracy: float) -> float:
    """The line's shifted accuracy at an ImageNet accuracy (0-1); a line of pieces picks its piece."""
    for piece in fit.get("pieces", ()):
        if imagenet_accuracy < piece.get("below", 2) and imagenet_accuracy >= piece.get("above", -1):
            return predicted(piece, imagenet_accuracy)
    return sigmoid(fit["slope"] * logit(imagenet_accuracy) + fit["intercept"])


def resolve_fit(fit: dict | str | None, shifts: dict[str, float]) -> dict | None:
    """The average's line: the task file's (a mapping or a shipped line's name), else the shipped
    ``average`` line when the shifts are exactly the five it was fitted on."""
    shipped = load_fits()
    if isinstance(fit, str):
        if fit not in shipped:
            raise ValueError(f"robustness_fit: {fit!r} is not a shipped line ({', '.join(sorted(shipped))})")
        return {**shipped[fit], "name": fit}
    if fit is not None:
        if not isinstance(fit, dict) or not {"slope", "intercept"} <= set(fit):
            raise ValueError(f"robustness_fit: a mapping with slope and intercept, or a shipped line's name; got {fit!r}")
        return fit
    if set(shifts) == set(AVERAGED):
        return {**shipped["average"], "name": "average"}
    return None


def summary(imagenet_accuracy: float | None, shifts: dict[str, float], fit: dict | str | None) -> dict:
    """Each shift's accuracy, the average, the drop from ImageNet and, where a line applies, the
    effective robustness: shifted accuracy minus the line's prediction at the model's ImageNet
    accuracy, per shift (lines drawn against full ImageNet) and for the average."""
    if not shifts:
        return {}
    average = sum(shifts.values()) / len(shifts)
    fit = resolve_fit(fit, shifts)
    result = {"imagenet": imagenet_accuracy, "shifts": shifts, "average": average, "fit": fit}
    if imagenet_accuracy is not None:
        result["drop"] = imagenet_accuracy - average
        shipped = load_fits()
        per_shift = {}
        for name, accuracy in shifts.items():
            line = shipped.get(name)
            if line and line["x"] == "imagenet1k":
                expected = predicted(line, imagenet_accuracy)
                per_shift[name] = {"expected": expected, "effective_robustness": accuracy - expected,
                                   "source": line["source"]}
        if per_shift:
            result["per_shift"] = per_shift
        if fit:
            result["expected_average"] = predicted(fit, imagenet_accuracy)
            result["effective_robustness"] = average - result["expected_average"]
    return result
