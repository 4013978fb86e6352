"""The evaluation metrics against values computed by hand, the paper's C search, the logit fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.evaluation import metrics, probes, robustness, testbed_fits


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


def test_testbed_rules_keep_only_standard_models_above_the_floor():
    types = ("model_types_map = {\n 'std_a': ModelTypes.STANDARD,\n 'std_b': ModelTypes.STANDARD,\n"
             " 'std_c': ModelTypes.STANDARD,\n 'std_low': ModelTypes.STANDARD,\n 'more': ModelTypes.MORE_DATA,\n"
             " 'std_aws': ModelTypes.STANDARD,\n}\nfor i in range(3):\n    model_types_map[f'x{i}'] = ModelTypes.STANDARD\n")
    standard = testbed_fits.standard_models(types)
    assert standard == {"std_a", "std_b", "std_c", "std_low", "std_aws"}  # the dict's literal entries
    on_line = {"std_a": 60.0, "std_b": 70.0, "std_c": 80.0}  # shifted = sigmoid(0.8 logit(x) - 0.5)
    rows = [{"model": m, "val": str(v), "imagenetv2-matched-frequency-format-val":
             str(100 * robustness.sigmoid(0.8 * robustness.logit(v / 100) - 0.5))} for m, v in on_line.items()]
    rows += [{"model": "std_low", "val": "40", "imagenetv2-matched-frequency-format-val": "39"},  # under 55 %
             {"model": "more", "val": "75", "imagenetv2-matched-frequency-format-val": "74"},  # more data
             {"model": "std_aws", "val": "75", "imagenetv2-matched-frequency-format-val": "74"},  # an aws rerun
             {"model": "std_a_subsample", "val": "65", "imagenetv2-matched-frequency-format-val": ""}]
    (v2,) = [rule for rule in testbed_fits.RULES if rule.name == "imagenetv2"]
    line = testbed_fits.fit_testbed(rows, standard, "abc", (v2,))["imagenetv2"]
    assert line["models"] == 3 and line["slope"] == pytest.approx(0.8) and line["intercept"] == pytest.approx(-0.5)
    assert "imagenet-testbed" in line["source"] and "abc" in line["source"]
    with pytest.raises(ValueError, match="two or more models"):
        testbed_fits.fit_testbed(rows[:1], standard, "abc", (v2,))


def test_shipped_lines_put_a_standard_resnet50_on_the_line():
    # The testbed's ResNet-50: 76.13 % ImageNet, 63.21 % ImageNetV2, 24.09 % Sketch; 0 % on
    # ImageNet-A (by construction of A) at 91.86 % on A's classes.
    lines = robustness.load_fits()
    assert set(robustness.AVERAGED) | {"average"} == set(lines)
    assert robustness.predicted(lines["imagenetv2"], 0.7613) == pytest.approx(0.6321, abs=0.01)
    assert robustness.predicted(lines["imagenet_sketch"], 0.7613) == pytest.approx(0.2409, abs=0.01)
    low, high = lines["imagenet-a"]["pieces"]
    assert robustness.predicted(lines["imagenet-a"], 0.90) == pytest.approx(robustness.predicted(low, 0.90))
    assert robustness.predicted(lines["imagenet-a"], 0.95) == pytest.approx(robustness.predicted(high, 0.95))
    for line in lines.values():
        assert "imagenet-testbed" in line["source"]


def test_summary_uses_the_shipped_lines():
    lines = robustness.load_fits()
    five = {name: 0.3 for name in robustness.AVERAGED}
    full = robustness.summary(0.7, five, None)  # the five paper shifts: the average's line applies
    assert full["fit"]["name"] == "average"
    assert full["effective_robustness"] == pytest.approx(0.3 - robustness.predicted(lines["average"], 0.7))
    assert set(full["per_shift"]) == {"imagenetv2", "imagenet_sketch"}  # lines drawn against full ImageNet
    assert full["per_shift"]["imagenetv2"]["effective_robustness"] == pytest.approx(
        0.3 - robustness.predicted(lines["imagenetv2"], 0.7))
    some = robustness.summary(0.7, {"imagenetv2": 0.6, "my-shift": 0.5}, None)
    assert "effective_robustness" not in some and set(some["per_shift"]) == {"imagenetv2"}
    named = robustness.summary(0.7, {"my-shift": 0.5}, "imagenetv2")  # a task file naming a shipped line
    assert named["effective_robustness"] == pytest.approx(0.5 - robustness.predicted(lines["imagenetv2"], 0.7))
    with pytest.raises(ValueError, match="not a shipped line"):
        robustness.summary(0.7, {"my-shift": 0.5}, "imagenet-z")
    with pytest.raises(ValueError, match="slope and intercept"):
        robustness.summary(0.7, {"my-shift": 0.5}, {"slope": 1.0})


def test_the_report_states_the_line_used_and_each_shifts_effective_robustness():
    from trainer.evaluation import report

    five = robustness.summary(0.7, {name: 0.3 for name in robustness.AVERAGED}, None)
    text = report._robustness_text({"robustness": five})
    assert "1.0439 logit(ImageNet) + -1.8918" in text and "imagenet-testbed" in text
    assert "imagenetv2: effective robustness" in text and "imagenet_sketch: effective robustness" in text
    pieces = report._robustness_text({"robustness": robustness.summary(0.9, {"mine": 0.1}, "imagenet-a")})
    assert "0.6894 logit(ImageNet)" in pieces and "2.9560 logit(ImageNet)" in pieces  # a line of two pieces
