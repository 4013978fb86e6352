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
import json
from typing import TYPE_CHECKING

import pyarrow as pa

from core.storage import parquet_bytes, write_text_atomic

if TYPE_CHECKING:
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
    return parquet_bytes(pa.Table.from_pylist(rows, schema=OVERLAP_SCHEMA))


def summarize(results: list[dict], indexes: list["EvalIndex"], detector: dict, write_clean: str | None,
              accuracy: dict) -> dict:
    """report.json; ``detector``: the detector's settings, reported beside the indexes' summaries."""
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
        "detector": {**detector, "indexes": [index.summary() for index in indexes]},
        "write_clean": write_clean,
    }


# -- zero-shot on All / Clean / Overlap ----------------------------------------------------------
def read_source(source: str) -> bytes:
    import fsspec

    from core import shards

    if "#" in source:
        path, member = source.rsplit("#", 1)
        for sample in shards.read_tar(path):
            if isinstance(sample, shards.TarSample):
                for name, data in sample.members:
                    if name == member:
                        return data
        raise FileNotFoundError(source)
    with fsspec.open(source, "rb") as handle:
        return handle.read()


# -- a model's zero-shot accuracy on All / Clean / Overlap ----------------------------------------
#: The file a model's per-image results on the indexed evaluation sets come in. The trainer's
#: evaluation writes it (``wit eval audit-items``, or ``wit dedup audit --checkpoint``, which runs
#: that first); the audit reads it (``--zero-shot-items``) and splits the accuracy by what it found.
ZERO_SHOT_ITEMS_FORMAT = "wit-audit-zero-shot/1"


def write_zero_shot_items(path: str, model: str, sets: dict[str, dict]) -> None:
    """``sets``: {eval set: {"classes": n, "mean_per_class": percent, "correct": {eval_id: bool}}}."""
    for name, entry in sets.items():
        if set(entry) != {"classes", "mean_per_class", "correct"}:
            raise ValueError(f"zero-shot items of {name!r}: need classes, mean_per_class, correct; got {sorted(entry)}")
    write_text_atomic(path, json.dumps({"format": ZERO_SHOT_ITEMS_FORMAT, "model": model, "sets": sets}) + "\n")


def read_zero_shot_items(path: str) -> dict:
    import fsspec

    with fsspec.open(path, "rt", encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != ZERO_SHOT_ITEMS_FORMAT:
        raise ValueError(f"{path}: not a {ZERO_SHOT_ITEMS_FORMAT} file (made by `wit eval audit-items`)")
    return data


def zero_shot(items: dict, results: list[dict]) -> dict:
    """{eval set: :func:`accuracy_split`} from a model's per-image results (``items``, as
    :func:`read_zero_shot_items` returns) and the shards' hits."""
    out = {}
    for name, entry in items["sets"].items():
        hit = set().union(*(r["hits"].get(name, set()) for r in results))
        ids = sorted(entry["correct"])
        out[name] = accuracy_split([bool(entry["correct"][i]) for i in ids], [i in hit for i in ids], entry["classes"])
        out[name]["mean_per_class"] = entry["mean_per_class"]
        out[name]["model"] = items.get("model")
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


_STYLE = "img{max-width:128px;max-height:128px}"  # the rest is core.html's shared stylesheet

_SCRIPT = """document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
const t=th.closest('table'),b=t.tBodies[0],r=[...b.rows],d=th.dataset.dir==='asc'?-1:1;th.dataset.dir=d>0?'asc':'desc';
r.sort((x,y)=>{const a=x.cells[i].dataset.v??x.cells[i].innerText,c=y.cells[i].dataset.v??y.cells[i].innerText;
const n=parseFloat(a)-parseFloat(c);return d*(isNaN(n)?a.localeCompare(c):n)});r.forEach(x=>b.appendChild(x))}));"""


def key_figures(summary: dict) -> list[tuple[str, str]]:
    """The figures a person looks for first, with units: the pool, then each evaluation set."""
    pool = summary["pool"]
    items = [("pool samples audited", f"{pool['samples']:,}"), ("duplicates dropped", f"{pool['duplicates']:,}"),
             ("clean samples", f"{pool['clean']:,}" if "clean" in pool else f"{pool['samples'] - pool['duplicates']:,}")]
    for name, entry in summary["eval_sets"].items():
        items.append((f"{name} contaminated", f"{entry['contamination_pct']:.2f} % of {entry['all']:,}"))
        zs = entry.get("zero_shot")
        if zs and zs.get("top1_all") is not None:
            items.append((f"{name} zero-shot top-1", f"{zs['top1_all']:.1f} %"))
    return items


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
    from core import html as page

    parts = [page.figures(key_figures(summary)), f"<p>{pool['samples']:,} pool samples in "
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
    parts.append(page.raw_json(summary, "raw JSON (report.json)"))
    return page.page("Evaluation-set overlap audit", parts, script=_SCRIPT, style=_STYLE)
