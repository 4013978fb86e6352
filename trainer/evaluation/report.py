"""``report.html`` of an evaluation suite: one self-contained page (inline SVG, no network).

A table by task; zero-shot against linear probe per dataset; the few-shot curves with the
zero-shot level; ImageNet accuracy against each shifted set's accuracy with y = x and the
reference fit; on core.html's shared page, stylesheet and key-figure cards.
"""

from __future__ import annotations

import math
from pathlib import Path

from core import html
from trainer.evaluation import robustness

STYLE = "svg{background:#fafafa;border:1px solid #ddd}"  # the rest is core.html's shared stylesheet


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _table(results: dict) -> str:
    header = ("task", "kind", "metric", "zero-shot / retrieval", "linear probe", "shots = zero-shot", "n", "classes",
              "templates", "seconds")
    rows = []
    for r in results["tasks"]:
        shots = r.get("shots_matching_zero_shot")
        rows.append((r["task"], r["kind"], r["metric"], _pct(r["value"]), _pct(r.get("linear_probe", {}).get("value")),
                     "" if "few_shot" not in r else (">16" if shots is None else f"{shots:.1f}"), r["data"]["n"],
                     r.get("classes", ""), r.get("templates", ""), r["seconds"]["total"]))
    return html.table(header, rows, "id='results'")


def _bars(results: dict, width: int = 760) -> str:
    tasks = [r for r in results["tasks"] if "linear_probe" in r]
    if not tasks:
        return "<p class='note'>no task with a linear probe</p>"
    row = 34
    height = 30 + row * len(tasks)
    parts = [f"<svg id='zs-vs-lp' width='{width}' height='{height}' role='img' aria-label='zero-shot vs linear probe'>"]
    for i, r in enumerate(tasks):
        y = 20 + i * row
        parts.append(f"<text x='4' y='{y + 14}' font-size='12'>{html.escape(r['task'])}</text>")
        for j, (value, colour, label) in enumerate(((r["value"], "#2060c0", "zero-shot"),
                                                   (r["linear_probe"]["value"], "#d07020", "linear probe"))):
            length = max(1.0, value * (width - 260))
            parts.append(f"<rect x='160' y='{y + j * 13}' width='{length:.1f}' height='12' fill='{colour}'>"
                         f"<title>{label} {_pct(value)}</title></rect><text x='{166 + length:.1f}' y='{y + 10 + j * 13}'"
                         f" font-size='11'>{label} {_pct(value)}</text>")
    return "".join(parts) + "</svg>"


def _axes(width: int, height: int, x_label: str, y_label: str) -> str:
    return (f"<line x1='50' y1='{height - 30}' x2='{width - 10}' y2='{height - 30}' stroke='#333'/>"
            f"<line x1='50' y1='10' x2='50' y2='{height - 30}' stroke='#333'/>"
            f"<text x='{width / 2:.0f}' y='{height - 6}' font-size='12'>{x_label}</text>"
            f"<text x='4' y='20' font-size='12'>{y_label}</text>")


def _few_shot(results: dict, width: int = 520, height: int = 300) -> str:
    tasks = [r for r in results["tasks"] if r.get("few_shot")]
    if not tasks:
        return "<p class='note'>no few-shot probes</p>"
    colours = ["#2060c0", "#d07020", "#20a060", "#a02080", "#808020", "#206080"]

    def point(k: float, value: float) -> tuple[float, float]:
        return 50 + math.log2(k) / 4 * (width - 70), height - 30 - value * (height - 50)

    parts = [f"<svg id='few-shot' width='{width}' height='{height}' role='img' aria-label='few-shot curve'>",
             _axes(width, height, "training images per class (1, 2, 4, 8, 16)", "accuracy")]
    for i, r in enumerate(tasks):
        colour = colours[i % len(colours)]
        xy = [point(int(k), v["mean"]) for k, v in sorted(r["few_shot"].items(), key=lambda kv: int(kv[0]))]
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='"
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + f"'><title>{html.escape(r['task'])}</title></polyline>")
        zy = point(1, r["value"])[1]
        parts.append(f"<line x1='50' x2='{width - 20}' y1='{zy:.1f}' y2='{zy:.1f}' stroke='{colour}' "
                     f"stroke-dasharray='4 3'><title>{html.escape(r['task'])} zero-shot</title></line>"
                     f"<text x='{width - 150}' y='{14 + 14 * i}' font-size='11' fill='{colour}'>"
                     f"{html.escape(r['task'])} (dashed: zero-shot)</text>")
    return "".join(parts) + "</svg>"


def _robustness(results: dict, width: int = 420, height: int = 420) -> str:
    summary = results.get("robustness") or {}
    if not summary or summary.get("imagenet") is None:
        return "<p class='note'>no distribution-shift tasks beside their ImageNet task</p>"

    def point(x: float, y: float) -> tuple[float, float]:
        return 50 + x * (width - 60), height - 30 - y * (height - 40)

    parts = [f"<svg id='robustness' width='{width}' height='{height}' role='img' aria-label='robustness'>",
             _axes(width, height, "ImageNet accuracy", "shifted accuracy")]
    (x0, y0), (x1, y1) = point(0, 0), point(1, 1)
    parts.append(f"<line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y1}' stroke='#999' stroke-dasharray='3 3'>"
                 "<title>y = x: ideal robustness</title></line>")
    fit = summary.get("fit")
    if fit:
        line = [point(a / 100, robustness.predicted(fit, a / 100)) for a in range(1, 100)]
        parts.append("<polyline id='fit-line' fill='none' stroke='#c03030' points='"
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in line) + "'><title>ImageNet models' logit fit</title></polyline>")
    for name, value in summary["shifts"].items():
        x, y = point(summary["imagenet"], value)
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5' fill='#2060c0'><title>{html.escape(name)} "
                     f"{_pct(value)}</title></circle><text x='{x + 7:.1f}' y='{y + 4:.1f}' font-size='11'>"
                     f"{html.escape(name)}</text>")
    return "".join(parts) + "</svg>"


def _robustness_text(results: dict) -> str:
    s = results.get("robustness") or {}
    if not s:
        return ""
    text = f"average over {len(s['shifts'])} shifts: {_pct(s['average'])}%"
    if s.get("imagenet") is not None:
        text += f"; ImageNet {_pct(s['imagenet'])}%, drop {_pct(s['drop'])} points"
    if s.get("effective_robustness") is not None:
        fit = s["fit"]
        line = "; ".join(f"logit(shift) = {p['slope']:.4f} logit(ImageNet) + {p['intercept']:.4f}"
                         for p in fit.get("pieces", [fit]))
        text += (f"; effective robustness {_pct(s['effective_robustness'])} points against the fit {line} "
                 f"(source: {html.escape(str(fit.get('source', 'task file')))})")
    else:
        text += ("; no reference line for this set of shifts (the shipped average line needs the five paper "
                 "shifts; name one with robustness_fit, see docs/eval.md), so no effective robustness of the average")
    for name, row in (s.get("per_shift") or {}).items():
        text += (f"; {html.escape(name)}: effective robustness {_pct(row['effective_robustness'])} points "
                 f"(the line predicts {_pct(row['expected'])}%)")
    return f"<p id='robustness-summary'>{text}</p>"


def render(results: dict) -> str:
    model = results["model"]
    key = [(f"{r['task']} {r['metric']}", f"{_pct(r['value'])} %") for r in results["tasks"]]
    robust = results.get("robustness") or {}
    if robust:
        key.append(("average over shifts", f"{_pct(robust['average'])} %"))
    return html.page("Evaluation", [
        html.figures(key),
        html.section("Results by task", _table(results)),
        html.section("Zero-shot vs linear probe", _bars(results)),
        html.section("Few-shot probes", _few_shot(results)),
        html.section("Robustness to distribution shift", _robustness_text(results) + _robustness(results)),
        html.raw_json({k: v for k, v in results.items() if k != "tasks"}, "results.json (without per-task records)"),
    ], subtitle=f"{model['checkpoint']} (weights {model['id']}); values in percent", style=STYLE)


def write_report(results: dict, path: str | Path) -> Path:
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(render(results))
    temporary.replace(path)
    return path
