"""The evaluation metrics against values computed by hand, the paper's C search, the logit fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.evaluation import metrics, probes, robustness


def test_voc_11_point_ap_on_a_crafted_ranking():
    # ranked: hit, miss, hit, miss, miss -> precision 1, 1/2, 2/3, 1/2, 2/5 at recall 1/2, 1/2, 1, 1, 1.
    # Thresholds 0..0.5 (six) reach precision 1; 0.6..1.0 (five) reach at most 2/3.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    first = np.array([1, 0, 1, 0, 0])
    assert metrics.average_precision_11point(scores, first) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    last = np.array([0, 0, 0, 0, 1])  # one positive ranked last: precision 1/5 at every threshold
    assert metrics.average_precision_11point(scores, last) == pytest.approx(0.2)
    none = np.zeros(5, dtype=int)  # a class without positives is left out of the mean
    table = np.stack([first, last, none], axis=1)
    assert metrics.map_11point(np.repeat(scores[:, None], 3, axis=1), table) == pytest.approx(
        ((6 + 5 * 2 / 3) / 11 + 0.2) / 2)


def test_mean_per_class_weighs_every_class_the_same_on_an_imbalanced_set():
    labels = torch.tensor([0] * 8 + [1] * 2)
    always_zero = torch.tensor([[1.0, 0.0]] * 10)
    assert metrics.topk_accuracy(always_zero, labels, 1) == pytest.approx(0.8)
    assert metrics.mean_per_class_accuracy(always_zero, labels) == pytest.approx(0.5)  # (1 + 0) / 2
    # three classes, class 2 absent from the labels: averaged over the two present
    logits = torch.tensor([[0.0, 1.0, 0.0]] * 8 + [[0.0, 1.0, 0.0]] * 2)
    assert metrics.mean_per_class_accuracy(logits, labels) == pytest.approx(0.5)


def test_roc_auc_counts_pairs_and_half_ties():
    scores = np.array([0.9, 0.4, 0.5, 0.1, 0.4])
    positives = np.array([1, 1, 0, 0, 0])
    # 0.9 beats all three negatives; 0.4 beats 0.1, ties 0.4, loses to 0.5: (3 + 1.5) / 6
    assert metrics.roc_auc(scores, positives) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both positive and negative"):
        metrics.roc_auc(scores, np.ones(5))
    logits = torch.tensor([[0.0, 0.9], [0.0, 0.4], [0.0, 0.5], [0.0, 0.1], [0.0, 0.4]])
    assert metrics.classification_metrics(logits, torch.tensor([1, 1, 0, 0, 0]), "classification")["roc_auc"] == \
        pytest.approx(0.75)


def test_recall_at_k_both_ways():
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 0.6, 0.8], [0, 0.8, 0.6], [0.9, 0.1, 0]])  # captions of 0, 1, 2, 0
    result = metrics.recall_at_k(images, texts, [0, 1, 2, 0], ks=(1, 2))
    # images 1 and 2 each rank the other's caption first, their own second; so do those captions
    assert result["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert result["text_to_image_R@1"] == pytest.approx(2 / 4)
    assert result["image_to_text_R@2"] == 1.0 and result["text_to_image_R@2"] == 1.0


def test_the_papers_c_search_finds_a_peak_at_eight_steps_per_decade():
    peak = 10 ** 1.375  # a smooth unimodal validation curve in log10 C
    best, tried = probes.search_c(lambda c: -abs(math.log10(c) - math.log10(peak)))
    assert math.log10(best) == pytest.approx(1.375)
    assert len(tried) <= 7 + 2 * 4  # the 7 starting points, then two per halving down to 1/8 decade
    assert min(tried) == pytest.approx(1e-6) and max(tried) == pytest.approx(1e6)


def test_linear_and_few_shot_probes_on_separable_features():
    rng = np.random.default_rng(0)
    centres = 3 * rng.normal(size=(4, 16))
    train_y, test_y = np.repeat(np.arange(4), 40), np.repeat(np.arange(4), 20)
    train_x = centres[train_y] + rng.normal(size=(160, 16))
    test_x = centres[test_y] + rng.normal(size=(80, 16))

    def top1(scores, labels):
        return float((scores.argmax(1) == labels).mean())

    result = probes.linear_probe(train_x, train_y, test_x, test_y, top1, 4)
    assert result["value"] > 0.9 and result["train"] == 160 and result["validation_size"] == 32
    curve = probes.few_shot(train_x, train_y, test_x, test_y, top1, 4, result["C"], probes.ProbeConfig(seeds=2))
    assert sorted(curve) == [1, 2, 4, 8, 16] and all(len(p["values"]) == 2 for p in curve.values())
    assert curve[16]["mean"] >= curve[1]["mean"] - 0.05
    assert probes.shots_matching({1: {"mean": 0.2}, 2: {"mean": 0.4}, 4: {"mean": 0.6}}, 0.5) == pytest.approx(2 ** 1.5)
    assert probes.shots_matching({1: {"mean": 0.2}, 2: {"mean": 0.3}}, 0.9) is None


def test_effective_robustness_against_a_logit_linear_fit():
    imagenet = [0.5, 0.6, 0.7, 0.8]
    shifted = [robustness.sigmoid(0.9 * robustness.logit(a) - 1.0) for a in imagenet]
    fit = robustness.fit_logit_line(imagenet, shifted)
    assert fit["slope"] == pytest.approx(0.9) and fit["intercept"] == pytest.approx(-1.0)
    expected = robustness.sigmoid(0.9 * robustness.logit(0.75) - 1.0)
    summary = robustness.summary(0.75, {"a": expected + 0.1, "b": expected + 0.02}, fit)
    assert summary["average"] == pytest.approx(expected + 0.06)
    assert summary["effective_robustness"] == pytest.approx(0.06)
    assert summary["drop"] == pytest.approx(0.75 - expected - 0.06)
    assert "effective_robustness" not in robustness.summary(0.75, {"a": 0.5}, None)
    with pytest.raises(ValueError, match="two or more"):
        robustness.fit_logit_line([0.5], [0.4])
