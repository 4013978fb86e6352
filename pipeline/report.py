"""The curation report: figures in ``curation_report.json`` and a log-log balance plot."""

from __future__ import annotations

import io
import json

from wit.storage import join, write_bytes_atomic, write_text_atomic

TOP = 20


def summarize(stats: dict, matched: dict[int, int], kept: dict[int, int], entries: list[str], target: int,
              config: dict) -> dict:
    pool = stats.get("candidates_read", 0)
    pairs = stats.get("pairs_unique", 0)
    matched_pairs = stats.get("pairs_matched", 0)
    kept_pairs = stats.get("pairs_kept", 0)
    head = {e: c for e, c in matched.items() if c > target}
    total_matches = sum(matched.values())

    def top(counts: dict[int, int]) -> list[dict]:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        return [{"entry_id": e, "entry": entries[e], "pairs": c} for e, c in ranked]

    return {
        "config": config,
        "pool_size": pool,
        "bad_input_records": stats.get("bad_input", 0),
        "dropped": {k.removeprefix("dropped_"): v for k, v in sorted(stats.items()) if k.startswith("dropped_")},
        "duplicates_merged": stats.get("duplicates_merged", 0),
        "unique_pairs": pairs,
        "matched_pairs": matched_pairs,
        "matched_fraction": matched_pairs / pairs if pairs else 0.0,
        "kept_pairs": kept_pairs,
        "kept_fraction": kept_pairs / matched_pairs if matched_pairs else 0.0,
        "entries": len(entries),
        "entries_matched": len(matched),
        "entries_kept": len(kept),
        "max_per_query": target,
        "head_entries": len(head),
        "head_share_of_matches": sum(head.values()) / total_matches if total_matches else 0.0,
        "top_before": top(matched),
        "top_after": top(kept),
    }


def balance_plot(matched: dict[int, int], kept: dict[int, int], target: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=110)
    for counts, label in ((matched, "matched (before)"), (kept, "kept (after)")):
        values = sorted(counts.values(), reverse=True)
        if values:
            axis.loglog(range(1, len(values) + 1), values, label=label, linewidth=1.5)
    axis.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"t = {target:,}")
    axis.set_xlabel("entry rank")
    axis.set_ylabel("pairs per entry")
    axis.set_title("Pairs per query entry, before and after balancing")
    axis.legend()
    axis.grid(True, which="both", alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def write_report(out: str, report: dict, plot: bytes) -> None:
    write_text_atomic(join(out, "curation_report.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_bytes_atomic(join(out, "balance.png"), plot)
