"""Crawl on a web shaped like the real one: `wit crawl` at its defaults against img2dataset.

The WAN web (:mod:`wit.testing.wanweb`, its own process): ``--hosts`` hosts on loopback
addresses, https with a test CA, log-normal latency (median 100 ms, p99 about 1.5 s) and a
failure mix (404, 500, 429, hangs, slow bodies, resets, dead hosts: about a quarter of the
urls), every url's fate fixed by the seed, so both tools meet the same web. Real photos at
web size (640 px, about 100 KB), distinct.

- wit: ``wit crawl --urls U --out O --ca-bundle ca.pem --allow-network 127.0.0.0/8``, nothing
  else (the loopback allowance is what any local run against loopback needs); every safety
  feature on (robots.txt, address checks, deadline, byte cap).
- img2dataset: ``processes_count=2`` and each ``--img2dataset-threads`` (its best is kept),
  the same image settings as wit's defaults, ``timeout=10``, ``retries=0``, trusting the test
  CA through ``SSL_CERT_FILE``.

Prints, per tool: wall seconds, successes (by fate, which must agree), images/s, CPU seconds
(user + system of the tool's processes, not the server's) per 1,000 successes; and the ratios
wit / img2dataset of successes per CPU-second (goal >= 2.0) and of wall time (goal >= 1.5).

``--processes 1 2`` also runs wit with that many Beam worker processes
(``--direct_num_workers N --direct_running_mode multi_processing``: one SDK process per vCPU,
each with its own download threads, as Dataflow runs it) and prints each count's rate and its
per-process efficiency: successes/s at N over N times successes/s at 1, and successes per
CPU-second at N over that at 1. The web's server runs on the same machine: on a machine of two
cores it takes part of the second process's core.

    .venv/bin/python benchmarks/crawl_wan.py [--urls 3000] [--hosts 200] [--rounds 1] \\
        [--img2dataset-threads 32 128 256] [--processes 1 2] [--workdir /tmp/wit-wan-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.images import ImageConfig
from _timing import timed  # benchmarks/, on the path when a benchmark runs

from wit.testing.photos import web_photos
from wit.testing.wanweb import start_process


def successes(out: Path, fates: dict[str, str]) -> Counter:
    """Successes by the fate of their url, from the tool's per-shard status parquets."""
    found: Counter = Counter()
    for path in out.glob("*.parquet"):
        table = pq.read_table(path, columns=["url", "status"]).to_pydict()
        for url, status in zip(table["url"], table["status"]):
            if status in ("success", "duplicate"):
                found[fates.get(url, "?")] += 1
    return found


def run_img2dataset(urls: Path, out: Path, ca: str, threads: int, image: ImageConfig) -> tuple[float, float]:
    code = f"""
import img2dataset
img2dataset.download(url_list={str(urls)!r}, input_format="parquet", url_col="url", caption_col="caption",
    output_format="webdataset", output_folder={str(out)!r}, processes_count=2, thread_count={threads},
    image_size={image.image_size}, resize_mode={image.resize_mode!r}, encode_quality={image.encode_quality},
    number_sample_per_shard=1000, timeout=10, retries=0, disallowed_header_directives=[], enable_wandb=False)
"""
    return timed([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "SSL_CERT_FILE": ca})


def run_wit(urls: Path, out: Path, ca: str, extra: list[str]) -> tuple[float, float]:
    return timed([sys.executable, "-m", "pipeline.crawl", "--urls", str(urls), "--out", str(out),
                  "--ca-bundle", ca, "--allow-network", "127.0.0.0/8", *extra],
                 env={**os.environ, "WIT_QUIET": "1"}, stdout=subprocess.DEVNULL)


def fastest(runs: list[dict], **match) -> dict:
    """The run of least wall time among those whose fields equal ``match``."""
    return min((r for r in runs if all(r[k] == v for k, v in match.items())), key=lambda r: r["wall"])


def print_shape(runs: list[dict], counts: list[int]) -> None:
    """Each count of worker processes: its fastest run's rate, and the efficiency per process
    against the smallest count (wall rate per process, and successes per CPU-second)."""
    best = {n: fastest(runs, processes=n) for n in counts}
    base_n = min(counts)
    base = best[base_n]
    base_rate, base_per_cpu = base["successes"] / base["wall"], base["successes"] / base["cpu"]
    print("wit crawl by worker processes (--direct_running_mode multi_processing), each count's fastest run:")
    for n, r in best.items():
        rate, per_cpu = r["successes"] / r["wall"], r["successes"] / r["cpu"]
        print(f"  {n} processes  {r['wall']:6.1f} s  {rate:6.1f} successes/s  {per_cpu:6.1f} per CPU-s  "
              f"efficiency per process {rate * base_n / (base_rate * n):.2f} (wall), "
              f"{per_cpu / base_per_cpu:.2f} (CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--urls", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--img2dataset-threads", type=int, nargs="*", default=[32, 128, 256],
                        help="thread counts to try (none: wit alone, for tuning)")
    parser.add_argument("--processes", type=int, nargs="*", default=[],
                        help="also run wit with these counts of worker processes (the Dataflow shape)")
    parser.add_argument("--workdir", default="/tmp/wit-wan-bench")
    parser.add_argument("--wit-flags", default="", help="flags added to wit's command (tuning only: the product "
                                                         "figure is wit at its defaults)")
    args = parser.parse_args()
    work = Path(args.workdir)
    web_photos(work / "www", args.urls)
    server, info = start_process(work / "www", work / "web", args.urls, args.hosts, [])
    image = ImageConfig()
    try:
        table = pq.read_table(info["urls"]).to_pydict()
        fates = dict(zip(table["url"], table["fate"]))
        urls = work / "urls.parquet"
        pq.write_table(pa.table({"url": table["url"], "caption": table["caption"]}), urls)
        runs = []
        plan = ([("img2dataset", t, 0) for t in args.img2dataset_threads] + [("wit crawl", 0, 0)]
                + [("wit crawl", 0, n) for n in args.processes])
        for _ in range(args.rounds):
            for name, threads, processes in plan:
                out = work / name.replace(" ", "_")
                shutil.rmtree(out, ignore_errors=True)
                if name == "wit crawl":
                    shape = ["--direct_num_workers", str(processes), "--direct_running_mode", "multi_processing"]
                    wall, cpu = run_wit(urls, out, info["ca"], (shape if processes else []) + args.wit_flags.split())
                else:
                    wall, cpu = run_img2dataset(urls, out, info["ca"], threads, image)
                found = successes(out, fates)
                runs.append({"tool": name, "threads": threads, "processes": processes, "wall": wall, "cpu": cpu,
                             "successes": sum(found.values()), "by_fate": dict(found)})
                how = f"{threads} threads" if threads else f"{processes} processes" if processes else "defaults"
                print(f"  {name:12s} {how:12s} {wall:6.1f} s wall "
                      f"{cpu:6.1f} CPU-s  {sum(found.values()):5d} successes {dict(found)}", flush=True)
    finally:
        server.terminate()
        server.wait()
    if args.processes:
        print_shape(runs, args.processes)
    best = {name: fastest(runs, tool=name, processes=0)
            for name in ("img2dataset", "wit crawl") if any(r["tool"] == name for r in runs)}
    mix = Counter(fates.values())
    print(f"{args.urls:,} urls over {args.hosts} hosts, https, fates {dict(mix)}; {image.image_size} px "
          f"{image.resize_mode}, quality {image.encode_quality}; {os.cpu_count()} cores")
    for name, r in best.items():
        how = f"{r['threads']} threads" if r["threads"] else "defaults"
        print(f"  {name:12s} {r['wall']:6.1f} s  {r['successes'] / r['wall']:6.1f} img/s  "
              f"{1000 * r['cpu'] / max(r['successes'], 1):6.1f} CPU-s per 1,000 successes  "
              f"({r['successes']} successes, {how})")
    if len(best) < 2:
        return
    i2d, ours = best["img2dataset"], best["wit crawl"]
    per_cpu = (ours["successes"] / ours["cpu"]) / (i2d["successes"] / i2d["cpu"])
    print(f"  ratio wit / img2dataset: successes per CPU-second {per_cpu:.2f} (goal >= 2.0), "
          f"wall time {i2d['wall'] / ours['wall']:.2f} (goal >= 1.5)")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
