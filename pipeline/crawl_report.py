"""The crawl report: ``crawl_report.json`` and a short HTML page (key figures, statuses, top
error reasons, top hosts, throughput; styled by :mod:`core.html`), from the shards' final stats
and their status parquets."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import asdict
from urllib.parse import urlsplit

from core import shards

TOP_HOSTS = 20


def host_of(url: str | None) -> str:
    if not url:
        return "(no url)"
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(invalid url)"


def host_tally(out: str, shard: int) -> dict[str, tuple[int, int]]:
    """host -> (urls, successes) of one finished shard, from its status parquet (final statuses,
    after the run-wide duplicate pass)."""
    table = shards.read_status(out, shard, ["url", "status"])
    tally: dict[str, tuple[int, int]] = {}
    for url, status in zip(table["url"], table["status"]):
        host = host_of(url)
        urls, successes = tally.get(host, (0, 0))
        tally[host] = (urls + 1, successes + (status == "success"))
    return tally


def add_counts(counts: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """Beam combiner: element-wise sum of (urls, successes) pairs."""
    urls = successes = 0
    for u, s in counts:
        urls, successes = urls + u, successes + s
    return urls, successes


def host_order(item: tuple[str, tuple[int, int]]):
    host, (urls, _) = item
    return urls, host


def fetch_settings(fetch) -> dict:
    """The fetch settings as the report shows them (the CA bundle's text replaced by its size)."""
    settings = asdict(fetch)
    settings["ca_pem"] = f"{len(fetch.ca_pem)} characters" if fetch.ca_pem else ""
    return settings


def worker_peaks(crawled: list[dict]) -> dict:
    """The largest of each worker-process measure seen when a shard was written (peak RSS, open
    files, threads, cache sizes), over the run's workers: flat figures mean nothing grows with
    the url count. Also the workers' allocators: C's (``jemalloc``, ``system``) and Arrow's pool
    (``system``, ``mimalloc``, ``jemalloc``; core.malloc)."""
    seen = [s["worker"] for s in crawled if s.get("worker")]
    if not seen:
        return {}
    names = {"allocator": "system", "arrow_pool": "unknown"}  # and their values when a record lacks them
    peaks = {key: max(w[key] for w in seen) for key in seen[0] if key != "pid" and key not in names}
    allocators = {key: ", ".join(sorted({w.get(key, missing) for w in seen})) for key, missing in names.items()}
    return {"processes": len({w["pid"] for w in seen}), **allocators, **peaks}


def summarize(all_stats: list[dict], top_hosts: list, config, wall_seconds: float) -> dict:
    all_stats = sorted(all_stats, key=lambda s: s["shard"])
    status = {name: sum(s["status"][name] for s in all_stats) for name in shards.STATUSES}
    reasons: dict[str, int] = {}
    for stats in all_stats:
        for reason, count in stats["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    total = sum(s["count"] for s in all_stats)
    downloaded = sum(status[name] for name in ("success", "failed_to_resize", "filtered", "duplicate",
                                               "eval_duplicate"))
    crawled_now = [s for s in all_stats if not s.get("resumed")]
    busy = sum(s["seconds"] for s in crawled_now)
    hosts = [{"host": host, "urls": urls, "successes": ok, "success_ratio": ok / urls if urls else 0.0}
             for host, (urls, ok) in sorted(top_hosts, key=host_order, reverse=True)]
    return {
        "urls": total, "shards": len(all_stats), "shards_resumed": len(all_stats) - len(crawled_now),
        "status": status, "top_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:20]),
        "top_hosts": hosts, "cross_shard_duplicates": sum(s.get("cross_shard_duplicates", 0) for s in all_stats),
        "downloaded": downloaded, "success_ratio": status["success"] / downloaded if downloaded else 0.0,
        "min_success_ratio": config.min_success_ratio, "image_bytes": sum(s["image_bytes"] for s in all_stats),
        "tar_bytes": sum(s["tar_bytes"] for s in all_stats), "wall_seconds": wall_seconds,
        "urls_crawled_now": sum(s["count"] for s in crawled_now),
        "urls_per_second": sum(s["count"] for s in crawled_now) / wall_seconds if wall_seconds > 0 else None,
        "urls_per_shard_second": sum(s["count"] for s in crawled_now) / busy if busy else None,
        "workers": worker_peaks(crawled_now),
        "config": {"image": asdict(config.image), "fetch": fetch_settings(config.fetch),
                   "shard_size": config.shard_size, "threads": config.threads},
    }


def key_figures(report: dict) -> list[tuple[str, str]]:
    """The figures a person looks for first, with units."""
    rate = report.get("urls_per_second")
    return [("urls", f"{report['urls']:,}"), ("images stored", f"{report['status'].get('success', 0):,}"),
            ("success of downloaded", f"{100 * report['success_ratio']:.1f} %"),
            ("evaluation duplicates dropped", f"{report['status'].get('eval_duplicate', 0):,}"),
            ("throughput", f"{rate:,.1f} urls/s" if rate else "n/a"),
            ("images", f"{report['image_bytes'] / 1e6:,.1f} MB")]


def html_page(report: dict) -> str:
    from core import html as page

    rate = report["urls_per_second"]
    throughput = (f"{report['urls_crawled_now']:,} urls crawled in this run in {report['wall_seconds']:.1f} s "
                  f"({rate:.1f} urls/s end to end" if rate else f"nothing crawled in this run ({report['wall_seconds']:.1f} s")
    if report["urls_per_shard_second"]:
        throughput += f"; {report['urls_per_shard_second']:.1f} urls/s per shard being crawled"
    throughput += ")"
    subtitle = (f"{report['urls']:,} urls in {report['shards']} shards ({report['shards_resumed']} resumed); success "
                f"ratio over downloaded images {report['success_ratio']:.3f}; {report['image_bytes'] / 1e6:,.1f} MB of images")
    hosts = (tuple(h.values()) for h in report["top_hosts"])
    return page.page("Crawl report", [
        page.figures(key_figures(report)),
        f"<h2>Throughput</h2><p id='throughput'>{html.escape(throughput)}</p>",
        page.section("Statuses", page.table(("status", "urls"), report["status"].items())),
        page.section("Top reasons", page.table(("reason", "urls"), report["top_reasons"].items())),
        page.section("Top hosts", page.table(("host", "urls", "successes", "success ratio"), hosts)),
        page.section("Worker processes: allocator and peaks",
                     page.table(("measure", "value"), report.get("workers", {}).items())),
        page.raw_json(report, "raw JSON (crawl_report.json)"),
    ], subtitle=subtitle)
