"""CLIP's section 5 test in the dedup audit: a one-sided binomial test of the Overlap accuracy
with the Clean accuracy as the null, and a 99.5% Clopper-Pearson interval on the Overlap accuracy."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from dedup import report
from dedup.significance import overlap_test


def test_hand_computed_cases():
    # 3 of 4 right on Overlap, Clean at 50%: P(X >= 3), X ~ Binomial(4, 1/2) = (4 + 1) / 16
    test = overlap_test(3, 4, 50, 100)
    assert test["p_value"] == pytest.approx(5 / 16, abs=1e-12)
    assert test["null_accuracy"] == 0.5 and test["overlap_accuracy"] == 0.75 and test["confidence"] == 0.995
    # 0 of 5 right: the exact interval is [0, 1 - (0.005 / 2) ** (1 / 5)], and nothing beats the null
    test = overlap_test(0, 5, 1, 2)
    assert test["overlap_interval"][0] == 0.0
    assert test["overlap_interval"][1] == pytest.approx(1 - 0.0025 ** 0.2, abs=1e-9)
    assert test["p_value"] == pytest.approx(1.0)
    # 5 of 5 right: the interval's lower end is (0.0025) ** (1 / 5), its upper end 1
    test = overlap_test(5, 5, 3, 10)
    assert test["overlap_interval"] == pytest.approx([0.0025 ** 0.2, 1.0], abs=1e-9)
    assert test["p_value"] == pytest.approx(0.3 ** 5, rel=1e-9)


@pytest.mark.parametrize("k, n, clean_k, clean_n", [(37, 52, 600, 1000), (12, 40, 150, 400), (90, 91, 70, 100)])
def test_against_the_binomial_and_beta_distributions(k, n, clean_k, clean_n):
    test = overlap_test(k, n, clean_k, clean_n)
    p0 = clean_k / clean_n
    assert test["p_value"] == pytest.approx(stats.binom.sf(k - 1, n, p0), rel=1e-9)
    alpha = 1 - 0.995  # Clopper-Pearson: beta quantiles at alpha / 2 and 1 - alpha / 2
    low = stats.beta.ppf(alpha / 2, k, n - k + 1) if k else 0.0
    high = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
    assert test["overlap_interval"] == pytest.approx([low, high], rel=1e-7)
    assert test["overlap_interval"][0] <= k / n <= test["overlap_interval"][1]


def test_no_test_without_overlap_or_clean_images():
    assert overlap_test(0, 0, 5, 10) is None and overlap_test(1, 2, 0, 0) is None
    with pytest.raises(ValueError):
        overlap_test(5, 4, 1, 2)


def test_accuracy_split_carries_the_sizes_and_the_test():
    correct = [True] * 9 + [False] * 1 + [True] * 40 + [False] * 60  # Overlap 9/10, Clean 40/100
    overlapping = [True] * 10 + [False] * 100
    split = report.accuracy_split(correct, overlapping, classes=10)
    assert (split["n_all"], split["n_overlap"], split["n_clean"]) == (110, 10, 100)
    assert (split["top1_overlap"], split["top1_clean"]) == (90.0, 40.0)
    assert split["top1_all"] == pytest.approx(100 * 49 / 110, abs=1e-3)
    test = split["significance"]
    assert test["p_value"] == pytest.approx(stats.binom.sf(8, 10, 0.4), rel=1e-9) and test["p_value"] < 0.005
    assert (test["overlap_correct"], test["overlap_total"], test["clean_correct"], test["clean_total"]) == (9, 10, 40, 100)
    assert report.accuracy_split([True, False], [False, False], classes=2)["significance"] is None


def test_report_html_shows_the_test_with_the_sample_sizes():
    split = report.accuracy_split([True] * 9 + [False] + [True] * 40 + [False] * 60, [True] * 10 + [False] * 100, 10)
    summary = {"pool": {"samples": 5, "shards": 1, "duplicates": 1, "unreadable": 0, "damaged_shards": 0,
                        "dropped_members": 0},
               "eval_sets": {"cifar": {"all": 110, "overlap": 10, "clean": 100, "contamination_pct": 9.091,
                                       "pool_duplicates": 1, "unreadable_eval_images": [], "zero_shot": split}},
               "unreadable_samples": [], "damaged_shards": [], "dropped_members": []}
    page = report.render_html(summary, [], [])
    p_value = split["significance"]["p_value"]
    low, high = split["significance"]["overlap_interval"]
    assert f"p = {p_value:.4g}" in page and "n = 110 / 100 / 10" in page
    assert f"99.5% Clopper-Pearson interval {100 * low:.1f}-{100 * high:.1f}%" in page
    assert not math.isnan(p_value)
