"""How the crawl scales with the url count: time, memory, open files, threads and caches.

Crawls ``--sizes`` url lists (default 10,000 and 100,000; add 1000000 for the full curve, about
an hour here) on the WAN web (:mod:`wit.testing.wanweb`: ``--hosts`` hosts on loopback, https,
log-normal latency, the default failure mix) with `wit crawl` at its defaults. The images are
small (64 px JPEGs, each url's bytes made distinct), so the curve measures the crawler, not the
codec. For each size: wall seconds, urls/s, the CPU seconds of the job's processes (urls per
CPU-second: what a Dataflow vCPU pays, without the web server's share of this machine), and
from the crawl report the peaks over the worker processes of resident memory, open files,
threads and the fetcher's bounded tables (DNS answers, robots.txt rules, connection pools, hosts
tracked). The largest worker's resident memory is also sampled from outside every ``--every``
seconds, and given by quarter of the run: a leak climbs with the urls done, a bounded cache
levels off. Goals: time linear in the url count (urls/s within 10%), peak memory and open files
flat. Writes ``--plot`` (PNG) and ``--json`` (every row, with the memory samples).

    .venv/bin/python benchmarks/crawl_scale.py [--sizes 10000 100000] [--hosts 2000] \\
        [--plot docs/crawl_scale.png] [--json rows.json] [--workdir /tmp/wit-scale-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from wit.testing.photos import web_photos
from wit.testing.wanweb import start_process


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    return children


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sample_rss(root: int) -> float:
    """The largest resident memory (MB) among the processes under ``root`` (the crawl's workers)."""
    children, todo, largest = _children(), [root], 0.0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid != root:
            largest = max(largest, _rss_mb(pid))
    return largest


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def crawl(urls: str, out: Path, ca: str, every: float) -> tuple[float, float, list[tuple[float, float]]]:
    """Run `wit crawl` at its defaults; (wall seconds, CPU seconds of the job's processes, [(seconds,
    largest worker RSS in MB)] sampled every ``every`` seconds from outside the job). The web
    server's CPU is not in the job's: it is reaped only at the end."""
    started, cpu = time.perf_counter(), _children_cpu()
    process = subprocess.Popen([sys.executable, "-m", "pipeline.crawl", "--urls", urls, "--out", str(out),
                                "--ca-bundle", ca, "--allow-network", "127.0.0.0/8", "--image-size", "64"],
                               env={**os.environ, "WIT_QUIET": "1"}, stdout=subprocess.DEVNULL)
    series = []
    while True:
        try:
            process.wait(timeout=every)
            break
        except subprocess.TimeoutExpired:
            series.append((round(time.perf_counter() - started, 1), round(sample_rss(process.pid), 1)))
    if process.returncode:
        raise SystemExit(f"the crawl of {urls} failed (exit {process.returncode})")
    return time.perf_counter() - started, _children_cpu() - cpu, series


def plateau(series: list[tuple[float, float]]) -> dict:
    """The largest worker's RSS at the end of each quarter of the crawl's time: flat memory shows as
    equal quarters, a leak as a climb in proportion to the urls done."""
    if not series:
        return {}
    end = series[-1][0]
    return {f"q{q}": max((rss for t, rss in series if t <= end * q / 4), default=0.0) for q in (1, 2, 3, 4)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["urls"] for r in rows]
    figure, (left, right, over) = plt.subplots(1, 3, figsize=(15, 3.6))
    left.plot(sizes, [r["urls_per_second"] for r in rows], "o-")
    left.set(xscale="log", xlabel="urls in the crawl", ylabel="urls / s (end to end)", ylim=(0, None),
             title="throughput")
    for key, label in (("peak_rss_mb", "peak RSS per worker (MB)"), ("open_files", "open files (peak)"),
                       ("threads", "threads (peak)")):
        right.plot(sizes, [r["workers"].get(key, 0) for r in rows], "o-", label=label)
    right.set(xscale="log", xlabel="urls in the crawl", ylim=(0, None), title="per worker process")
    right.legend()
    for row in rows:  # time is close to linear in urls done, so seconds / wall ~ urls done / urls
        series = row.get("rss_series") or []
        if series:
            over.plot([t / row["seconds"] * row["urls"] for t, _ in series], [rss for _, rss in series],
                      label=f"{row['urls']:,} urls")
    over.set(xscale="log", xlabel="urls done (from the elapsed time)", ylabel="largest worker RSS (MB)",
             ylim=(0, None), title="memory during the crawl")
    over.legend()
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
    parser.add_argument("--every", type=float, default=2.0, help="seconds between memory samples")
    parser.add_argument("--json", default=None, help="write the rows here too")
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
            seconds, cpu, series = crawl(str(urls), out, info["ca"], args.every)
            report = json.loads((out / "crawl_report.json").read_text())
            rows.append({"urls": size, "seconds": seconds, "urls_per_second": size / seconds, "cpu_seconds": cpu,
                         "urls_per_cpu_second": size / cpu,
                         "successes": report["status"]["success"], "workers": report["workers"],
                         "rss_quarters_mb": plateau(series), "rss_series": series})
            print(f"  {size:>9,} urls  {seconds:7.1f} s  {size / seconds:7.1f} urls/s  {cpu:8.1f} CPU-s of the job "
                  f"({size / cpu:.1f} urls per CPU-s)  "
                  f"{report['status']['success']:>8,} successes  workers {report['workers']}  "
                  f"largest worker RSS by quarter of the run {plateau(series)}", flush=True)
    finally:
        server.terminate()
        server.wait()
    base, base_cpu = rows[0]["urls_per_second"], rows[0]["urls_per_cpu_second"]
    print(f"{args.hosts} hosts, https, 64 px; relative to the smallest run, urls/s: "
          + ", ".join(f"{r['urls']:,}: {r['urls_per_second'] / base:.2f}" for r in rows) + "; urls per CPU-s: "
          + ", ".join(f"{r['urls']:,}: {r['urls_per_cpu_second'] / base_cpu:.2f}" for r in rows)
          + " (goal: within 10%)")
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    print(json.dumps([{k: v for k, v in r.items() if k != "rss_series"} for r in rows]))


if __name__ == "__main__":
    main()
