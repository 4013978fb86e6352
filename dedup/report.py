"""The audit's outputs: ``overlaps.parquet``, ``report.json`` and a self-contained ``report.html``.

``report.json`` speaks CLIP's section 5: per evaluation set, **All** (readable evaluation
images), **Overlap** (those with at least one near-duplicate in the pool), **Clean** (the rest),
the contamination percentage, and with a checkpoint the zero-shot top-1 accuracy on each and the
Overlap-minus-All and Clean-minus-All differences. The HTML page embeds every thumbnail as a data
URI (no network), one table per evaluation set, sortable by any column.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from dedup.audit import AuditConfig
    from dedup.store import EvalIndex

OVERLAP_SCHEMA = pa.schema([
    ("key", pa.string()), ("uid", pa.string()), ("eval_set", pa.string()), ("eval_id", pa.string()),
    ("score", pa.float64()), ("is_duplicate", pa.bool_()), ("inliers", pa.int32()), ("hash_distance", pa.int32()),
    ("shard", pa.string()), ("url", pa.string()), ("caption", pa.string()),
])


def thumbnail_bytes(data: bytes, side: int = 128) -> bytes | None:
    from dedup.index import thumbnail

    try:
        return thumbnail(data, side)
    except Exception:  # noqa: BLE001 - a thumbnail is optional, and Pillow fails on hostile data in many ways
        return None


def overlaps_table(results: list[dict]) -> bytes:
    rows = [{name: row.get(name) for name in OVERLAP_SCHEMA.names} for result in results for row in result["overlaps"]]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=OVERLAP_SCHEMA), buffer, compression="zstd")
    return buffer.getvalue()


def summarize(results: list[dict], indexes: list["EvalIndex"], config: "AuditConfig", accuracy: dict) -> dict:
    samples = sum(r["samples"] for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    unreadable = [{"shard": r["shard"], **u} for r in results for u in r["unreadable"]]
    damaged = [{"shard": r["shard"], "error": r["damaged"]} for r in results if r["damaged"]]
    dropped = [{"shard": r["shard"], **member} for r in results for member in r.get("dropped_members", [])]
    eval_sets = {}
    for index in indexes:
        hit = set().union(*(r["hits"].get(index.name, set()) for r in results))
        total = index.readable
        entry = {"all": total, "overlap": len(hit), "clean": total - len(hit),
                 "contamination_pct": round(100 * len(hit) / total, 3) if total else 0.0,
                 "pool_duplicates": sum(1 for r in results for row in r["overlaps"]
                                        if row["eval_set"] == index.name and row["is_duplicate"]),
                 "unreadable_eval_images": [{"eval_id": item["eval_id"], "error": item["error"]}
                                            for item in index.items if item["status"] != "ok"]}
        if index.name in accuracy:
            entry["zero_shot"] = accuracy[index.name]
        eval_sets[index.name] = entry
    return {
        "pool": {"shards": len(results), "samples": samples, "duplicates": duplicates, "clean": samples - duplicates,
                 "unreadable": len(unreadable), "damaged_shards": len(damaged), "dropped_members": len(dropped)},
        "eval_sets": eval_sets,
        "unreadable_samples": unreadable, "damaged_shards": damaged, "dropped_members": dropped,
        "detector": {"min_inliers": config.detect.min_inliers, "hash_threshold": config.detect.hash_threshold,
                     "spread": config.detect.spread, "indexes": [index.summary() for index in indexes]},
        "write_clean": config.write_clean,
    }


# -- zero-shot on All / Clean / Overlap ----------------------------------------------------------
def _read_source(source: str) -> bytes:
    import fsspec

    from dedup import samples

    if "#" in source:
        path, member = source.rsplit("#", 1)
        for sample in samples.read_tar(path):
            if isinstance(sample, samples.TarSample):
                for name, data in sample.members:
                    if name == member:
                        return data
        raise FileNotFoundError(source)
    with fsspec.open(source, "rb") as handle:
        return handle.read()


def zero_shot(indexes: list["EvalIndex"], results: list[dict], config: "AuditConfig") -> dict:
    """Top-1 accuracy of the checkpoint per labelled evaluation set, on All, Clean and Overlap."""
    import torch
    from PIL import Image

    from trainer import zeroshot
    from trainer.checkpoint import load_model

    model, tokenizer = load_model(config.checkpoint)
    model.eval()
    templates = (zeroshot.load_task_list(config.templates, config.task, "templates") if config.templates
                 else zeroshot.DEFAULT_TEMPLATES)
    transform = zeroshot.eval_transform(model.config.vision.image_size)
    out = {}
    for index in indexes:
        items = [item for item in index.items if item["status"] == "ok" and item.get("label") is not None]
        if not items:
            continue
        classnames = (zeroshot.load_task_list(config.classnames, config.task, "class names") if config.classnames
                      else sorted({item["label"] for item in items}))
        position = {name: i for i, name in enumerate(classnames)}
        items = [item for item in items if item["label"] in position]
        tensors = [transform(Image.open(io.BytesIO(_read_source(item["source"])))) for item in items]
        classifier = zeroshot.build_classifier(model, tokenizer, classnames, templates)
        logits = zeroshot.image_features(model, torch.stack(tensors)) @ classifier
        correct = (logits.argmax(dim=1) == torch.tensor([position[item["label"]] for item in items])).tolist()
        hit = set().union(*(r["hits"].get(index.name, set()) for r in results))
        out[index.name] = accuracy_split(correct, [item["eval_id"] in hit for item in items], len(classnames))
    return out


def accuracy_split(correct: list[bool], overlapping: list[bool], classes: int) -> dict:
    """Top-1 on All, Clean and Overlap (percent), the differences, the sample sizes and CLIP's
    significance test of Overlap against Clean (:mod:`dedup.significance`)."""
    from dedup.significance import overlap_test

    def top1(chosen: list[bool]) -> float | None:
        return round(100 * sum(chosen) / len(chosen), 3) if chosen else None

    overlap_hits = [c for c, o in zip(correct, overlapping) if o]
    clean_hits = [c for c, o in zip(correct, overlapping) if not o]
    all_, overlap, clean = top1(correct), top1(overlap_hits), top1(clean_hits)
    return {"top1_all": all_, "top1_clean": clean, "top1_overlap": overlap,
            "overlap_minus_all": None if overlap is None else round(overlap - all_, 3),
            "clean_minus_all": None if clean is None else round(clean - all_, 3),
            "n_all": len(correct), "n_clean": len(clean_hits), "n_overlap": len(overlap_hits),
            "significance": overlap_test(sum(overlap_hits), len(overlap_hits), sum(clean_hits), len(clean_hits)),
            "classes": classes, "chance": round(100 / classes, 3)}


def accuracy_cell(zs: dict | None) -> str:
    """The summary table's zero-shot cell: accuracies with sample sizes, and the test."""
    if not zs:
        return "no checkpoint"
    text = (f"{zs['top1_all']} / {zs['top1_clean']} / {zs['top1_overlap']} "
            f"(n = {zs.get('n_all')} / {zs.get('n_clean')} / {zs.get('n_overlap')})")
    test = zs.get("significance")
    if test:
        low, high = test["overlap_interval"]
        text += (f"<br>Overlap vs Clean: one-sided binomial p = {test['p_value']:.4g}; Overlap "
                 f"{100 * test['confidence']:g}% Clopper-Pearson interval {100 * low:.1f}-{100 * high:.1f}%")
    return text


# -- HTML ------------------------------------------------------------------------------------------
def _img(data: bytes | None) -> str:
    if not data:
        return "<span class='missing'>no image</span>"
    return f"<img src='data:image/jpeg;base64,{base64.b64encode(data).decode()}' loading='eager'>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:14px}th{background:#f3f3f3;cursor:pointer}
img{max-width:128px;max-height:128px}.dup{background:#fde8e8}.near{background:#fff8e1}.missing{color:#999}
td.text{max-width:360px;word-break:break-all}"""

_SCRIPT = """document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
const t=th.closest('table'),b=t.tBodies[0],r=[...b.rows],d=th.dataset.dir==='asc'?-1:1;th.dataset.dir=d>0?'asc':'desc';
r.sort((x,y)=>{const a=x.cells[i].dataset.v??x.cells[i].innerText,c=y.cells[i].dataset.v??y.cells[i].innerText;
const n=parseFloat(a)-parseFloat(c);return d*(isNaN(n)?a.localeCompare(c):n)});r.forEach(x=>b.appendChild(x))}));
window.addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.length;
document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length});"""


def render_html(summary: dict, results: list[dict], indexes: list["EvalIndex"]) -> str:
    esc = html.escape
    thumbs = {(index.name, item["eval_id"]): item.get("thumbnail") for index in indexes for item in index.items}
    pool = summary["pool"]
    head = ("<tr><th>evaluation set</th><th>All</th><th>Overlap</th><th>Clean</th><th>contamination %</th>"
            "<th>pool duplicates</th><th>zero-shot All / Clean / Overlap</th></tr>")
    body = []
    for name, entry in summary["eval_sets"].items():
        zs = entry.get("zero_shot")
        accuracy = accuracy_cell(zs)
        body.append(f"<tr><td>{esc(name)}</td><td>{entry['all']}</td><td>{entry['overlap']}</td><td>{entry['clean']}"
                    f"</td><td>{entry['contamination_pct']}</td><td>{entry['pool_duplicates']}</td><td>{accuracy}</td></tr>")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>wit dedup audit</title><style>{_STYLE}</style>"
             f"</head><body><h1>Evaluation-set overlap audit</h1><p>{pool['samples']:,} pool samples in "
             f"{pool['shards']} shards: {pool['duplicates']:,} near-duplicates of evaluation images, "
             f"{pool['unreadable']} unreadable samples, {pool['damaged_shards']} damaged shards, "
             f"{pool['dropped_members']} tar members dropped (links, directories, unsafe names).</p>"
             f"<table id='summary'>{head}{''.join(body)}</table>"]
    for name in summary["eval_sets"]:
        rows = sorted((row for r in results for row in r["overlaps"] if row["eval_set"] == name),
                      key=lambda row: -row["score"])
        cells = []
        for row in rows:
            cls = "dup" if row["is_duplicate"] else "near"
            cells.append(
                f"<tr class='{cls}'><td data-v='{row['score']}'>{row['score']:.2f}</td>"
                f"<td>{'duplicate' if row['is_duplicate'] else 'near miss'}</td>"
                f"<td>{_img(thumbs.get((name, row['eval_id'])))}<br>{esc(row['eval_id'])}</td>"
                f"<td>{_img(row.get('thumbnail'))}<br>{esc(row['shard'])}:{esc(row['key'])}</td>"
                f"<td>{row['inliers']}</td><td>{'' if row['hash_distance'] is None else row['hash_distance']}</td>"
                f"<td class='text'>{esc(row.get('url') or '')}</td><td class='text'>{esc(row.get('caption') or '')}</td></tr>")
        parts.append(f"<h2>{esc(name)}: {len(rows)} matched pairs</h2>"
                     "<table class='sortable'><thead><tr><th>score</th><th>decision</th><th>evaluation image</th>"
                     "<th>crawled image</th><th>inliers</th><th>hash distance</th><th>url</th><th>caption</th></tr>"
                     f"</thead><tbody>{''.join(cells)}</tbody></table>")
    problems = summary["unreadable_samples"] + summary["damaged_shards"] + summary["dropped_members"]
    problems += [{"eval_set": n, **u} for n, e in summary["eval_sets"].items() for u in e["unreadable_eval_images"]]
    if problems:
        items = "".join(f"<li>{esc(str(problem))}</li>" for problem in problems)
        parts.append(f"<h2>Unreadable inputs ({len(problems)})</h2><ul>{items}</ul>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "".join(parts)
