"""How the crawl scales with the url count: time, memory, open files, threads and caches.

Crawls ``--sizes`` url lists (default 10,000 and 100,000; add 1000000 for the full curve, about
an hour here) on the WAN web (:mod:`wit.testing.wanweb`: ``--hosts`` hosts on loopback, https,
log-normal latency, the default failure mix) with `wit crawl` at its defaults. The images are
small (64 px JPEGs, each url's bytes made distinct), so the curve measures the crawler, not the
codec. For each size: wall seconds, urls/s, and from the crawl report the peaks over the worker
processes of resident memory, open files, threads and the fetcher's bounded tables (DNS answers,
robots.txt rules, connection pools, hosts tracked). Goals: time linear in the url count (urls/s
within 10%), peak memory and open files flat. Writes ``--plot`` (PNG).

    .venv/bin/python benchmarks/crawl_scale.py [--sizes 10000 100000] [--hosts 2000] \\
        [--plot docs/crawl_scale.png] [--workdir /tmp/wit-scale-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from wit.testing.photos import web_photos
from wit.testing.wanweb import start_process


def crawl(urls: str, out: Path, ca: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.crawl", "--urls", urls, "--out", str(out), "--ca-bundle", ca,
                    "--allow-network", "127.0.0.0/8", "--image-size", "64"], check=True,
                   env={**os.environ, "WIT_QUIET": "1"}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["urls"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(sizes, [r["urls_per_second"] for r in rows], "o-")
    left.set(xscale="log", xlabel="urls in the crawl", ylabel="urls / s (end to end)", ylim=(0, None),
             title="throughput")
    for key, label in (("peak_rss_mb", "peak RSS per worker (MB)"), ("open_files", "open files (peak)"),
                       ("threads", "threads (peak)")):
        right.plot(sizes, [r["workers"].get(key, 0) for r in rows], "o-", label=label)
    right.set(xscale="log", xlabel="urls in the crawl", ylim=(0, None), title="per worker process")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--plot", default=None, help="write the curve here (PNG)")
    parser.add_argument("--workdir", default="/tmp/wit-scale-bench")
    args = parser.parse_args()
    work = Path(args.workdir)
    photos = work / "www"
    web_photos(photos, args.photos, short_side=96, quality=85)
    server, info = start_process(photos, work / "web", max(args.sizes), args.hosts, ["--unique"])
    rows = []
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(info["urls"], columns=["url", "caption"])
        for size in sorted(args.sizes):
            urls = work / f"urls-{size}.parquet"
            pq.write_table(table.slice(0, size), urls)
            out = work / f"out-{size}"
            shutil.rmtree(out, ignore_errors=True)
            seconds = crawl(str(urls), out, info["ca"])
            report = json.loads((out / "crawl_report.json").read_text())
            rows.append({"urls": size, "seconds": seconds, "urls_per_second": size / seconds,
                         "successes": report["status"]["success"], "workers": report["workers"]})
            print(f"  {size:>9,} urls  {seconds:7.1f} s  {size / seconds:7.1f} urls/s  "
                  f"{report['status']['success']:>8,} successes  workers {report['workers']}", flush=True)
    finally:
        server.terminate()
        server.wait()
    base = rows[0]["urls_per_second"]
    print(f"{args.hosts} hosts, https, 64 px; urls/s relative to the smallest run: "
          + ", ".join(f"{r['urls']:,}: {r['urls_per_second'] / base:.2f}" for r in rows) + " (goal: within 10%)")
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
