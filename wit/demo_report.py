"""The demo's run report: one self-contained HTML page (images inlined) that links every
stage's own report: query statistics, the curation balance plot, crawl statuses, dedup overlaps
with thumbnails, the training curve and the zero-shot accuracy."""

from __future__ import annotations

import base64
import html
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


def render(summary: dict, out: Path) -> str:
    esc = html.escape
    stages = summary["stages"]
    metrics = []
    metrics_path = out / "run" / "metrics.jsonl"
    if metrics_path.exists():
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    loss = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    zs = stages.get("zero-shot", {})
    rows = "".join(f"<tr><td>{esc(name)}</td><td>{result.get('seconds', '')}</td>"
                   f"<td><code>{esc(json.dumps({k: v for k, v in result.items() if k != 'seconds'}, default=str)[:300])}"
                   f"</code></td><td><code>{esc(summary['commands'].get(name, ''))[:400]}</code></td></tr>"
                   for name, result in stages.items())
    links = [("query list statistics", "queries/query_stats.json"), ("curation report", "curated/curation_report.json"),
             ("crawl report", "reports/crawl_report.html"), ("dedup audit report", "dedup/audit/report.html"),
             ("dedup audit data", "dedup/audit/report.json"), ("training metrics", "run/metrics.jsonl"),
             ("zero-shot result", "zeroshot.json"), ("demo log", "demo.log"), ("training log", "train.log")]
    link_items = "".join(f"<li><a href='{target}'>{esc(label)}</a>{'' if (out / target).exists() else ' (missing)'}</li>"
                         for label, target in links)
    accuracy = (f"<p class='big'>Zero-shot top-1 on {zs.get('n')} held-out scenes: <b>{zs.get('top1', 0):.1%}</b> "
                f"(top-5 {zs.get('top5', 0):.1%}; chance {zs.get('chance', 0):.1%})</p>") if zs else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>wit demo report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top;font-size:13px}table{border-collapse:collapse}code{font-size:12px}"
        ".big{font-size:20px}</style></head><body>"
        f"<h1>wit demo</h1><p>The whole chain on a generated world in {summary['seconds'] / 60:.1f} minutes: "
        f"{summary['world']['pages']} web pages with {summary['world']['images']} images, "
        f"{summary['world']['planted_eval_copies']} of them edited copies of held-out evaluation scenes.</p>"
        f"{accuracy}<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>result</th><th>re-run alone</th></tr>"
        f"{rows}</table><h2>Reports</h2><ul>{link_items}</ul>"
        f"<h2>Curation balance</h2>{_png(out / 'curated' / 'balance.png')}"
        f"<h2>Training</h2>{_svg_curve(loss, 'loss')}"
        "<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.length;"
        "document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length});</script></body></html>")
