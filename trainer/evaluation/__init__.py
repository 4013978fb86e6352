"""CLIP's evaluation suite: readers, tasks, the paper's prompts, metrics, cached features,
probes, robustness, the suite runner and its report (``wit eval suite``; see docs/eval.md)."""
