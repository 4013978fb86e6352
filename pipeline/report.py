"""The curation report: figures in ``curation_report.json``, a log-log balance plot, and
``curation_report.html`` for people (key figures, the plot; styled by :mod:`core.html`)."""

from __future__ import annotations

import io
import json

from pipeline.balance import overshoot
from core.reports import CurationFigures
from core.storage import join, write_bytes_atomic, write_text_atomic

TOP = 20


def summarize(stats: dict, matched: dict[int, int], kept: dict[int, int], entries: list[str], target: int,
              config: dict, tallies: dict[str, dict[int, int]] | None = None, cap: str = "expected",
              quota: float | None = None) -> dict:
    """``tallies``: per entry, under each cap, pairs it selected (``selected_strict``,
    ``selected_expected``) and kept pairs containing it (``kept_strict``, ``kept_expected``);
    ``quota``: the count an entry may select (t, or t x --oversample)."""
    quota = target if quota is None else quota
    tallies = tallies or {}
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
        "cap": cap,
        # both caps are decided in every run: the quota each entry fills (selected) and the pairs
        # kept that contain it (kept; co-occurrence takes an entry past t under either cap)
        "overshoot": {mode: {"selected": overshoot(tallies.get(f"selected_{mode}", {}), quota),
                             "kept": overshoot(tallies.get(f"kept_{mode}", {}), quota),
                             "kept_pairs": stats.get(f"pairs_kept_{mode}", 0)}
                      for mode in ("strict", "expected")},
        "top_overshoot": top_overshoot(matched, tallies, entries, quota),
    }


def top_overshoot(matched: dict[int, int], tallies: dict[str, dict[int, int]], entries: list[str],
                  quota: float) -> list[dict]:
    """The entries MetaCLIP's draw takes furthest past t, with their counts under both caps."""
    drawn = tallies.get("selected_expected", {})
    ranked = sorted(((e, c) for e, c in drawn.items() if c > quota), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    return [{"entry_id": e, "entry": entries[e], "matched": matched.get(e, 0),
             **{name: tallies.get(name, {}).get(e, 0) for name in sorted(tallies)}} for e, _ in ranked]


def balance_plot(matched: dict[int, int], tallies: dict[str, dict[int, int]], target: int, cap: str) -> bytes:
    """Pairs per entry by rank, log-log: matched, and under each cap the pairs each entry selected
    (flat at t under strict; scattered about t under expected) and the kept pairs containing it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    curves = [(matched, "matched", "-")]
    for mode in ("strict", "expected"):
        chosen = " (this run)" if mode == cap else ""
        for kind, style in (("selected", "-"), ("kept", ":")):
            worst = overshoot(tallies.get(f"{kind}_{mode}", {}), target)
            curves.append((tallies.get(f"{kind}_{mode}", {}),
                           f"{kind}, --cap {mode}{chosen}: max {worst['max_over_t']} t, "
                           f"{worst['entries_over_t']:,} over t", style))
    for counts, label, style in curves:
        values = sorted(counts.values(), reverse=True)
        if values:
            axis.loglog(range(1, len(values) + 1), values, style, label=label, linewidth=1.3)
    axis.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"t = {target:,}")
    axis.set_xlabel("entry rank")
    axis.set_ylabel("pairs per entry")
    axis.set_title("Pairs per query entry, before and after balancing")
    axis.legend(fontsize=7)
    axis.grid(True, which="both", alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def key_figures(report: dict) -> list[tuple[str, str]]:
    """The figures a person looks for first, with units."""
    return [("candidate pairs read", f"{report['pool_size']:,} pairs"), ("unique", f"{report['unique_pairs']:,} pairs"),
            ("matched a query", f"{report['matched_pairs']:,} pairs"), ("kept pairs", f"{report['kept_pairs']:,} pairs"),
            ("kept of matched", f"{100 * report['kept_fraction']:.1f} %"),
            ("queries with pairs", f"{report['entries_kept']:,} of {report['entries']:,}"),
            ("cap per query", f"{report['max_per_query']:,} ({report['cap']})")]


def html_page(report: dict, plot: bytes) -> str:
    """``curation_report.html``: key figures, the balance plot (inlined), the head of the list."""
    import base64

    from core import html

    def ranked(rows: list[dict]) -> str:
        return html.table(("entry id", "entry", "pairs"), ((r["entry_id"], r["entry"], r["pairs"]) for r in rows))

    image = f"<img alt='balance plot' src='data:image/png;base64,{base64.b64encode(plot).decode()}'>"
    return html.page("Curation report", [
        html.figures(key_figures(report)),
        html.section("Balance", image),
        html.section("Dropped while cleaning", html.table(("reason", "pairs"), report["dropped"].items())),
        html.section(f"Top {TOP} entries before balancing", ranked(report["top_before"])),
        html.section(f"Top {TOP} entries after balancing", ranked(report["top_after"])),
        html.raw_json(report, "raw JSON (curation_report.json)"),
    ], subtitle=f"{report['pool_size']:,} candidate pairs matched against {report['entries']:,} queries, "
                f"at most {report['max_per_query']:,} per query")


def write_report(out: str, report: dict, plot: bytes) -> None:
    path = join(out, CurationFigures.FILE)
    CurationFigures.check(report, path)  # the headline figures keep their names
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_bytes_atomic(join(out, "balance.png"), plot)
    write_text_atomic(join(out, "curation_report.html"), html_page(report, plot))
