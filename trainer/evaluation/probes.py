"""Linear and few-shot probes as the CLIP paper ran them, on frozen (cached) image features.

Linear probe: L2-regularised logistic regression (scikit-learn, L-BFGS). C is chosen on a
validation split carved from train (stratified, ``val_fraction``) by the paper's parametric
binary search: start at C = 1e-6, 1e-4, ..., 1e6, then repeatedly halve the step (in log10 C)
around the best value until the resolution is 8 steps per decade; refit on train + validation
with that C and score on test. Few-shot probes: k = 1, 2, 4, 8, 16 training images per class,
several seeds, fitted with the C the full probe chose (a 1-shot set cannot hold out a
validation split) and compared with zero-shot: the paper's "how many shots equal zero-shot".

Features: the L2-normalised image embeddings (after the projection) that zero-shot uses, as
CLIP_benchmark's probe does; the paper used the pre-projection features of its ViTs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

START_LOG10_C = (-6, -4, -2, 0, 2, 4, 6)
SHOTS = (1, 2, 4, 8, 16)


@dataclass
class ProbeConfig:
    val_fraction: float = 0.2
    max_iter: int = 1000
    resolution: float = 1 / 8  # log10 steps: 8 per decade
    shots: Sequence[int] = SHOTS
    seeds: int = 3
    seed: int = 0


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held): ``fraction`` of every class (at least one, when it has two or more) held out."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = max(1, int(round(len(members) * fraction))) if len(members) > 1 else 0
        held += list(members[:cut])
        kept += list(members[cut:])
    return np.array(sorted(kept), dtype=int), np.array(sorted(held), dtype=int)


def fit(features: np.ndarray, labels: np.ndarray, c: float, max_iter: int = 1000, start=None):
    """L-BFGS logistic regression at ``c``; ``start``, a fit of the same data at a nearby C, is the
    starting point (the problem is convex: the same optimum, reached in fewer iterations)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    model = LogisticRegression(C=c, max_iter=max_iter, solver="lbfgs", warm_start=start is not None)
    if start is not None:
        model.coef_, model.intercept_ = start.coef_.copy(), start.intercept_.copy()
    with warnings.catch_warnings(), threadpool_limits(1):  # small products: threads only contend
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny C / few shots: the optimum is flat
        return model.fit(np.asarray(features, dtype=np.float64), labels)  # float32 stops L-BFGS early


def predict_scores(model, features: np.ndarray, classes: int) -> np.ndarray:
    """(n, classes) probabilities; -1 for classes the fit never saw (few-shot draws)."""
    scores = np.full((len(features), classes), -1.0)
    scores[:, model.classes_] = model.predict_proba(np.asarray(features, dtype=np.float64))
    return scores


def search_c(score: Callable[[float], float], resolution: float = 1 / 8) -> tuple[float, dict[float, float]]:
    """The paper's parametric binary search over log10 C in [-6, 6]; returns (C, tried)."""
    tried: dict[float, float] = {}

    def at(log_c: float) -> float:
        log_c = round(log_c, 6)
        if log_c not in tried:
            tried[log_c] = score(10.0 ** log_c)
        return tried[log_c]

    for log_c in START_LOG10_C:
        at(log_c)
    best = max(tried, key=lambda k: (tried[k], -abs(k)))
    step = 2.0
    while step > resolution:
        step /= 2
        for candidate in (best - step, best + step):
            if START_LOG10_C[0] <= candidate <= START_LOG10_C[-1]:
                at(candidate)
        best = max(tried, key=lambda k: (tried[k], -abs(k)))
    return 10.0 ** best, {10.0 ** k: v for k, v in sorted(tried.items())}


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 metric: Callable[[np.ndarray, np.ndarray], float], classes: int,
                 config: ProbeConfig = ProbeConfig()) -> dict:
    """``metric(scores, labels)`` scores a fit (the task's headline metric)."""
    kept, held = stratified_split(train_y, config.val_fraction, config.seed)
    fitted: dict[float, object] = {}  # log10 C -> fit: each new C starts from the nearest one

    def validation(c: float) -> float:
        nearest = min(fitted, key=lambda log_c: abs(log_c - math.log10(c)), default=None)
        model = fit(train_x[kept], train_y[kept], c, config.max_iter, fitted.get(nearest))
        fitted[math.log10(c)] = model
        return metric(predict_scores(model, train_x[held], classes), train_y[held])

    best_c, tried = search_c(validation, config.resolution)
    final = fit(train_x, train_y, best_c, config.max_iter)
    return {"C": best_c, "validation": tried[best_c], "fits": len(tried) + 1, "train": int(len(train_y)),
            "validation_size": int(len(held)), "test": int(len(test_y)),
            "value": metric(predict_scores(final, test_x, classes), test_y)}


def few_shot(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
             metric: Callable[[np.ndarray, np.ndarray], float], classes: int, c: float,
             config: ProbeConfig = ProbeConfig()) -> dict[int, dict]:
    """{k: {"mean", "std", "values"}} over ``config.seeds`` draws of k images per class."""
    by_class = [np.flatnonzero(train_y == label) for label in range(classes)]
    curve = {}
    for k in config.shots:
        if max(len(m) for m in by_class) < k:
            break
        values = []
        for seed in range(config.seeds):
            rng = np.random.default_rng(config.seed + 1000 * k + seed)
            chosen = np.concatenate([rng.choice(m, min(k, len(m)), replace=False) for m in by_class if len(m)])
            if len(np.unique(train_y[chosen])) < 2:
                continue
            model = fit(train_x[chosen], train_y[chosen], c, config.max_iter)
            values.append(metric(predict_scores(model, test_x, classes), test_y))
        if values:
            curve[k] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    return curve


def shots_matching(curve: dict[int, dict], zero_shot: float) -> float | None:
    """Shots per class at which the few-shot curve reaches zero-shot, interpolated linearly in
    log2(k); 0 when even one shot beats zero-shot, None when 16 shots stay below it."""
    points = sorted((k, v["mean"]) for k, v in curve.items())
    if not points:
        return None
    if points[0][1] >= zero_shot:
        return 0.0 if points[0][0] == 1 else float(points[0][0])
    for (k0, a0), (k1, a1) in zip(points, points[1:]):
        if a0 < zero_shot <= a1:
            t = (zero_shot - a0) / (a1 - a0)
            return float(2 ** (math.log2(k0) + t * (math.log2(k1) - math.log2(k0))))
    return None


def holdout_probe(features: np.ndarray, labels: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> dict:
    """A set with one split: a stratified ``test_fraction`` is held out for testing, the rest
    trains :func:`linear_probe` (top-1)."""
    train, test = stratified_split(labels, test_fraction, seed)

    def top1(scores: np.ndarray, truth: np.ndarray) -> float:
        return float((scores.argmax(axis=1) == truth).mean())

    result = linear_probe(features[train], labels[train], features[test], labels[test], top1,
                          int(labels.max()) + 1, ProbeConfig(seed=seed))
    return {"train": int(len(train)), "test": int(len(test)), "C": result["C"],
            "validation_accuracy": result["validation"], "test_accuracy": result["value"]}
