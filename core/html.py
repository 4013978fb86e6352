"""One look for every HTML report (demo, crawl, curation, dedup audit, evaluation).

A report is a self-contained page (no network: styles inline, images as data URIs) built from
a few pieces:

    from core import html
    page = html.page("Crawl report", [
        html.figures([("urls", "12,345"), ("success of downloaded", "93.1 %")]),   # key figures
        html.section("Statuses", html.table(("status", "urls"), rows)),
        html.raw_json(report),                                                      # one click away
    ], subtitle="gs://bucket/shards")

Figures may also be objects with ``label`` and ``text()`` (``core.reports.Figure``). Each figure
carries ``data-figure``; on load the page lists the figures a person can see in
``body[data-visible-figures]`` (what the browser tests check) and counts images as
``data-images`` / ``data-images-loaded``.
"""

from __future__ import annotations

import html as _html
import json
from collections.abc import Iterable, Sequence

STYLE = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;--accent:#0b5cad;--bad:#fde8e8;--warn:#fff8e1}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;padding:0 1.5em;max-width:1180px;
color:var(--ink);line-height:1.45}
h1{font-size:1.7em;margin:0 0 .2em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line);
padding-bottom:.2em}.subtitle{color:var(--muted);margin:0 0 1em}
.figures{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.figure{border:1px solid var(--line);border-radius:8px;padding:.6em 1em;min-width:9em;background:#fff}
.figure .value{font-size:1.55em;font-weight:600;color:var(--accent);white-space:nowrap}
.figure .label{font-size:.85em;color:var(--muted)}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid var(--line);padding:4px 10px;text-align:left;
vertical-align:top;font-size:14px}th{background:var(--head)}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer}tr.dup{background:var(--bad)}tr.near{background:var(--warn)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:var(--head);padding:.8em;overflow:auto;max-height:40em}
details{margin:.4em 0}summary{cursor:pointer;color:var(--accent)}
img{max-width:100%}.thumb img{max-width:128px;max-height:128px}.missing{color:#999}
td.text{max-width:360px;word-break:break-all}.note{color:var(--muted);font-size:.9em}
"""

# Records what a reader can see, for the browser tests: figures with a non-empty box that the
# browser renders (checkVisibility: not inside a closed <details>), and images loaded.
SCRIPT = """window.addEventListener('load',()=>{const b=document.body,i=[...document.images];
b.dataset.images=i.length;b.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;
b.dataset.visibleFigures=JSON.stringify([...document.querySelectorAll('[data-figure]')]
.filter(e=>{const r=e.getBoundingClientRect();return r.width>0&&r.height>0&&(!e.checkVisibility||e.checkVisibility())})
.map(e=>e.dataset.figure+': '+e.querySelector('.value').textContent))});"""


def escape(value) -> str:
    return _html.escape(str(value))


def _pair(figure) -> tuple[str, str]:
    if isinstance(figure, tuple):
        return str(figure[0]), str(figure[1])
    return figure.label, figure.text()


def figures(items: Iterable) -> str:
    """Key figures as cards: ``(label, text)`` pairs or objects with ``label`` and ``text()``."""
    cards = "".join(f"<div class='figure' data-figure='{escape(label)}'><div class='value'>{escape(text)}</div>"
                    f"<div class='label'>{escape(label)}</div></div>" for label, text in map(_pair, items))
    return f"<div class='figures'>{cards}</div>"


def cell(value) -> str:
    """A table cell's text: thousands separators for counts, three decimals for fractions."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence], attrs: str = "") -> str:
    """A plain table of escaped cells (numbers formatted by :func:`cell`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table{' ' + attrs if attrs else ''}><tr>{head}</tr>{body}</table>"


def section(title: str, body: str) -> str:
    return f"<h2>{escape(title)}</h2>{body}"


def raw_json(data, summary: str = "raw JSON") -> str:
    """The data behind the page, folded: one click away, out of the way."""
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
    return f"<details class='raw'><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"


def page(title: str, parts: Iterable[str], subtitle: str = "", script: str = "", style: str = "") -> str:
    """The whole document: shared stylesheet, heading (``subtitle`` is text, escaped here), the
    parts (HTML) in order, the load script."""
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{STYLE}{style}</style></head>")
    intro = f"<h1>{escape(title)}</h1>" + (f"<p class='subtitle'>{escape(subtitle)}</p>" if subtitle else "")
    return f"{head}<body>{intro}{''.join(parts)}<script>{SCRIPT}{script}</script></body></html>"
