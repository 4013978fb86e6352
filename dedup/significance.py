"""CLIP's significance test for overlap (paper, section 5).

The paper asks whether a model scores higher on the evaluation images that also occur in its
training data: it takes the **Clean** accuracy as the null hypothesis for the **Overlap**
images, runs a one-sided binomial test of the Overlap accuracy against it (alternative: Overlap
is higher), and reports a 99.5% Clopper-Pearson confidence interval on the Overlap accuracy.
The statistics are scipy's (``binomtest``, exact ``proportion_ci``).
"""

from __future__ import annotations

CONFIDENCE = 0.995


def overlap_test(overlap_correct: int, overlap_total: int, clean_correct: int, clean_total: int,
                 confidence: float = CONFIDENCE) -> dict | None:
    """The test for one evaluation set, or None when it cannot be made (no Overlap or no Clean
    image). ``p_value``: P(X >= overlap_correct) for X ~ Binomial(overlap_total, clean accuracy)."""
    if overlap_total <= 0 or clean_total <= 0:
        return None
    if not (0 <= overlap_correct <= overlap_total and 0 <= clean_correct <= clean_total):
        raise ValueError("correct counts must lie between 0 and their totals")
    from scipy.stats import binomtest

    null = clean_correct / clean_total
    result = binomtest(overlap_correct, overlap_total, null, alternative="greater")
    # two-sided interval: a one-sided test's own proportion_ci would be one-sided, [low, 1]
    interval = binomtest(overlap_correct, overlap_total).proportion_ci(confidence_level=confidence, method="exact")
    return {
        "test": "one-sided binomial, H0: Overlap accuracy = Clean accuracy, H1: greater",
        "overlap_correct": overlap_correct, "overlap_total": overlap_total,
        "clean_correct": clean_correct, "clean_total": clean_total,
        "null_accuracy": null, "overlap_accuracy": overlap_correct / overlap_total,
        "p_value": float(result.pvalue),
        "confidence": confidence,
        "overlap_interval": [float(interval.low), float(interval.high)],
    }
