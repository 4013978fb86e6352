"""The demo's run report: one self-contained HTML page (images inlined, styled by
:mod:`core.html`): the headline figures (urls, success %, kept pairs, duplicates dropped,
samples/s, top-1), each stage's key figures with units and its raw JSON one click away, links to
every stage's own report, the curation balance plot, the training curve."""

from __future__ import annotations

import base64
import json
from pathlib import Path


def _svg_curve(points: list[tuple[float, float]], label: str, width: int = 520, height: int = 200) -> str:
    if len(points) < 2:
        return "<p>not enough points for a curve</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1, (y1 - y0) or 1
    path = " ".join(f"{'M' if i == 0 else 'L'}{40 + (x - x0) / span_x * (width - 60):.1f},"
                    f"{height - 30 - (y - y0) / span_y * (height - 50):.1f}" for i, (x, y) in enumerate(points))
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='{label}'>"
            f"<rect width='100%' height='100%' fill='#fafafa'/><path d='{path}' fill='none' stroke='#2060c0' "
            f"stroke-width='2'/><text x='40' y='15' font-size='12'>{label}: {y1:.3f} max, {ys[-1]:.3f} last</text>"
            f"<text x='40' y='{height - 8}' font-size='11'>step {x0:.0f}</text>"
            f"<text x='{width - 80}' y='{height - 8}' font-size='11'>step {x1:.0f}</text></svg>")


def _png(path: Path) -> str:
    if not path.exists():
        return "<p>(no plot)</p>"
    return f"<img alt='{path.name}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def key_figures(summary: dict) -> list[tuple[str, tuple[str, str]]]:
    """Per stage, the figures a person reads first, with units: ``(stage, (label, text))``."""
    stages, out = summary["stages"], []

    def add(stage: str, label: str, value, fmt: str = "{:,}", unit: str = "") -> None:
        if value is not None:
            out.append((stage, (label, (fmt.format(value) + (" " + unit if unit else "")).strip())))

    world = summary.get("world", {})
    add("world", "web pages", world.get("pages"))
    add("world", "images on the web", world.get("images"))
    queries = stages.get("queries", {})
    add("queries", "queries", queries.get("queries"))
    curate = stages.get("curate", {})
    add("curate", "candidate pairs", curate.get("pool"), unit="pairs")
    add("curate", "kept pairs", curate.get("kept"), unit="pairs")
    crawl = stages.get("crawl", {})
    status = crawl.get("status") or {}
    add("crawl", "urls crawled", sum(status.values()) if status else None)
    add("crawl", "images stored", status.get("success"))
    add("crawl", "crawl success", None if crawl.get("success_ratio") is None else 100 * crawl["success_ratio"], "{:.1f}", "%")
    add("crawl", "evaluation duplicates dropped", status.get("eval_duplicate"))
    audit = stages.get("dedup audit", {})
    add("dedup audit", "pool samples audited", (audit.get("pool") or {}).get("samples"))
    add("dedup audit", "duplicates dropped", (audit.get("pool") or {}).get("duplicates"))
    for name, entry in (audit.get("eval_sets") or {}).items():
        add("dedup audit", f"{name} contamination left", entry.get("contamination_pct"), "{:.2f}", "%")
    train = stages.get("train", {})
    add("train", "steps", train.get("steps"))
    add("train", "final loss", train.get("final_loss"), "{:.3f}")
    add("train", "training throughput", train.get("samples_per_s"), "{:,.1f}", "samples/s")
    zs = stages.get("zero-shot", {})
    add("zero-shot", "zero-shot top-1", None if zs.get("top1") is None else 100 * zs["top1"], "{:.1f}", "%")
    add("zero-shot", "chance", None if zs.get("chance") is None else 100 * zs["chance"], "{:.1f}", "%")
    return out


HEADLINE = ("urls crawled", "crawl success", "kept pairs", "duplicates dropped", "training throughput", "zero-shot top-1")


def render(summary: dict, out: Path) -> str:
    from core import html

    esc = html.escape
    stages = summary["stages"]
    metrics = []
    metrics_path = out / "run" / "metrics.jsonl"
    if metrics_path.exists():
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    loss = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    figures = key_figures(summary)
    by_stage: dict[str, list[tuple[str, str]]] = {}
    for stage, figure in figures:
        by_stage.setdefault(stage, []).append(figure)
    headline = [figure for _, figure in figures if figure[0] in HEADLINE]
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td class='num'>{result.get('seconds', '')} s</td>"
        f"<td>{'<br>'.join(f'<b>{esc(text)}</b> {esc(label)}' for label, text in by_stage.get(name, []))}</td>"
        f"<td>{html.raw_json({k: v for k, v in result.items() if k != 'seconds'}, 'raw JSON')}"
        f"<details><summary>re-run alone</summary><code>{esc(summary['commands'].get(name, ''))}</code></details></td></tr>"
        for name, result in stages.items())
    links = [("query list statistics", "queries/query_stats.json"), ("curation report", "curated/curation_report.html"),
             ("crawl report", "reports/crawl_report.html"), ("dedup audit report", "dedup/audit/report.html"),
             ("dedup audit data", "dedup/audit/report.json"), ("training metrics", "run/metrics.jsonl"),
             ("zero-shot result", "zeroshot.json"), ("demo log", "demo.log"), ("training log", "train.log")]
    link_items = "".join(f"<li><a href='{target}'>{esc(label)}</a>{'' if (out / target).exists() else ' (missing)'}</li>"
                         for label, target in links)
    zs = stages.get("zero-shot", {})
    accuracy = (f"<p>Zero-shot top-1 on {zs.get('n')} held-out scenes: <b>{zs.get('top1', 0):.1%}</b> "
                f"(top-5 {zs.get('top5', 0):.1%}; chance {zs.get('chance', 0):.1%})</p>") if zs else ""
    storage = f"<p class='note'>Shards went to {esc(summary['storage'])}.</p>" if summary.get("storage") else ""
    subtitle = (f"The whole chain on a generated world in {summary['seconds'] / 60:.1f} minutes: "
                f"{summary['world']['pages']} web pages with {summary['world']['images']} images, "
                f"{summary['world']['planted_eval_copies']} of them edited copies of held-out evaluation scenes.")
    return html.page("wit demo", [
        html.figures(headline), accuracy, storage,
        html.section("Stages", "<table><tr><th>stage</th><th>time</th><th>key figures</th><th>details</th></tr>"
                               f"{rows}</table>"),
        html.section("Reports", f"<ul>{link_items}</ul>"),
        html.section("Curation balance", _png(out / "curated" / "balance.png")),
        html.section("Training", _svg_curve(loss, "loss")),
        html.raw_json(summary, "raw JSON (summary.json)"),
    ], subtitle=subtitle)
