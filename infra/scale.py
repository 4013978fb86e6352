"""The scale and cost model of a full WIT run (400M pairs), recomputed from its inputs.

    .venv/bin/python infra/scale.py            # the markdown tables of docs/scale.md
    .venv/bin/python infra/scale.py --json     # the same numbers as JSON

Every input names its source: ``measured`` (our benchmarks on a 2-core machine, command in
docs/), ``cited`` (a published figure) or ``assumed`` (a planning choice you should replace
with your own). Every output is a formula over the inputs below, nothing else.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Input:
    value: float
    unit: str
    source: str


INPUTS: dict[str, Input] = {
    # the target
    "pairs": Input(400e6, "pairs", "cited: CLIP paper, WIT size"),
    "queries": Input(500_000, "queries", "cited: CLIP paper"),
    "cap": Input(20_000, "pairs/query", "cited: CLIP paper"),
    "matched_pool": Input(1.6e9, "pairs", "cited: MetaCLIP (Xu et al. 2023), matched pool balanced to 400M"),
    "candidates_per_matched": Input(5.0, "candidates/matched pair", "assumed: 1 in 5 alt-texts contains a query"),
    "wat_bytes_per_candidate": Input(600, "bytes", "assumed: compressed WAT bytes per IMG link with alt text"),
    "crawl_success": Input(0.6, "ratio", "assumed: share of urls still downloadable (LAION re-crawls: 50-70%)"),
    # our measured per-core rates (2-core machine; docs/curation.md, docs/crawl.md, docs/dedup.md)
    "curate_rate": Input(5_500, "pairs/s/core", "measured: benchmarks/curate_matching.py, whole job"),
    "crawl_rate": Input(165, "urls/s/core", "measured: benchmarks/crawl_wan.py, wit at its defaults over 200 https "
                                            "hosts with latency and a 26% failure mix, real photos to 256 px: 3,000 "
                                            "urls in 18.2 CPU-s (the run on a quiet machine; 15.2-20.9 in four runs); "
                                            "per CPU-second, as Dataflow bills a vCPU, its 128 threads covering the "
                                            "latency"),
    "audit_rate": Input(211.6, "images/s/core", "measured: benchmarks/dedup_speed.py, index of 100,000 evaluation "
                                                 "images, CPU time of one worker on a quiet machine (210.1-216.5 in "
                                                 "three runs; 148-181 beside other jobs)"),
    "eval_images": Input(1e6, "images", "cited: CLIP section 5 (35 evaluation sets) and DataComp's 38 tasks, ~1M together"),
    "index_bytes_per_eval": Input(4_274, "bytes/image", "measured: benchmarks/dedup_speed.py, index of 100,000"),
    "index_setup_per_10k": Input(0.005, "s per 10k images", "measured: benchmarks/dedup_speed.py, worker set-up, "
                                                            "index of 100,000 (0.054 s), quiet machine"),
    "audit_worker_rss_gb": Input(0.19, "GB/process", "measured: benchmarks/dedup_speed.py, private memory of a worker "
                                                     "at 100,000 (186 MB; the mapped index is in the page cache)"),
    "index_job_peak_per_eval": Input(26_900, "bytes/image", "measured: benchmarks/dedup_speed.py --index-memory, "
                                                            "index of 100,000: peak of the index job's last step"),
    "bytes_256": Input(23_900, "bytes/sample", "measured: crawl benchmark, 256 px JPEG q95 + caption + json"),
    "bytes_224": Input(19_000, "bytes/sample", "assumed: 224 px shards ~ (224/256)^2 of the image bytes"),
    "download_mb_per_1k": Input(130, "MB/s per 1,000 images/s", "cited: img2dataset README (original images)"),
    # prices (us-central1 list prices; check the current page before quoting)
    "dataflow_vcpu_hour": Input(0.056, "USD", "cited: cloud.google.com/dataflow/pricing, batch vCPU-hour"),
    "dataflow_gb_hour": Input(0.003557, "USD", "cited: cloud.google.com/dataflow/pricing, batch GB-hour"),
    "gcs_gb_month": Input(0.020, "USD", "cited: cloud.google.com/storage/pricing, Standard, us-central1"),
    # training
    "v100_days_rn50x64": Input(592 * 18, "V100-days", "cited: CLIP paper, RN50x64 on 592 V100s for 18 days"),
    "v100_days_vitl14": Input(256 * 12, "V100-days", "cited: CLIP paper, ViT-L/14 on 256 V100s for 12 days"),
    "a100_samples_vitb32": Input(790, "samples/s/A100", "cited: OpenCLIP LAION-400M ViT-B/32 run"),
    "epochs": Input(32, "epochs", "cited: CLIP paper"),
    "gpus_per_node": Input(8, "GPUs/node", "assumed: an 8-GPU node"),
}

MACHINES = {  # machine type: (vCPU, GB) as chosen in infra/dataflow/submit_*.sh
    "curate": ("n2-standard-8", 8, 32), "crawl": ("n2-highcpu-8", 8, 8), "audit": ("n2-standard-8", 8, 32),
}


def v(name: str) -> float:
    return INPUTS[name].value


def dataflow_cost(core_hours: float, machine: str) -> float:
    _, cpus, memory = MACHINES[machine]
    vm_hours = core_hours / cpus
    return vm_hours * (cpus * v("dataflow_vcpu_hour") + memory * v("dataflow_gb_hour"))


def compute() -> list[dict]:
    rows = []

    def row(stage: str, quantity: str, value: float, unit: str, formula: str) -> None:
        rows.append({"stage": stage, "quantity": quantity, "value": value, "unit": unit, "formula": formula})

    candidates = v("matched_pool") * v("candidates_per_matched")
    row("curate", "candidate pairs read", candidates, "pairs", "matched_pool x candidates_per_matched")
    row("curate", "WAT bytes read", candidates * v("wat_bytes_per_candidate") / 1e12, "TB",
        "candidates x wat_bytes_per_candidate")
    curate_hours = candidates / v("curate_rate") / 3600
    row("curate", "worker core-hours", curate_hours, "core-h", "candidates / curate_rate / 3600")
    row("curate", "Dataflow cost", dataflow_cost(curate_hours, "curate"), "USD", "n2-standard-8 list price")
    urls = v("pairs") / v("crawl_success")
    row("crawl", "urls to fetch", urls, "urls", "pairs / crawl_success")
    crawl_hours = urls / v("crawl_rate") / 3600
    row("crawl", "worker core-hours", crawl_hours, "core-h", "urls / crawl_rate / 3600")
    row("crawl", "Dataflow cost", dataflow_cost(crawl_hours, "crawl"), "USD", "n2-highcpu-8 list price")
    rate = 800 * v("crawl_rate")  # the submit script's 100 x 8 cores
    row("crawl", "wall time at 100 n2-highcpu-8", urls / rate / 86400, "days", "urls / (800 x crawl_rate) / 86400")
    row("crawl", "download bandwidth at that rate", rate / 1000 * v("download_mb_per_1k") / 1000, "GB/s",
        "800 x crawl_rate / 1000 x download_mb_per_1k")
    for size, key in (("256 px", "bytes_256"), ("224 px", "bytes_224")):
        tb = v("pairs") * v(key) / 1e12
        row("storage", f"shards, {size}", tb, "TB", f"pairs x {key}")
        row("storage", f"GCS per month, {size}", tb * 1000 * v("gcs_gb_month"), "USD", "TB x 1000 x gcs_gb_month")
    audit_hours = v("pairs") / v("audit_rate") / 3600
    row("dedup", "audit core-hours", audit_hours, "core-h", "pairs / audit_rate / 3600")
    row("dedup", "Dataflow cost", dataflow_cost(audit_hours, "audit"), "USD", "n2-standard-8 list price")
    index_gb = v("eval_images") * v("index_bytes_per_eval") / 1e9
    row("dedup", "index of the evaluation suite", index_gb, "GB", "eval_images x index_bytes_per_eval")
    row("dedup", "worker set-up per process", v("eval_images") / 1e4 * v("index_setup_per_10k"), "s",
        "eval_images / 10,000 x index_setup_per_10k")
    _, cpus, memory = MACHINES["audit"]
    row("dedup", "memory per n2-standard-8 (index once + 8 processes)", index_gb + cpus * v("audit_worker_rss_gb"),
        "GB", f"index (page cache, shared) + {cpus} x audit_worker_rss_gb, of {memory}")
    row("dedup", "index job's last step, on one worker", v("eval_images") * v("index_job_peak_per_eval") / 1e9, "GB",
        "eval_images x index_job_peak_per_eval (a 1M suite: n2-highmem-8, 64 GB)")
    samples = v("pairs") * v("epochs")
    a100_hours = samples / v("a100_samples_vitb32") / 3600
    row("train", "ViT-B/32 A100-hours (32 epochs)", a100_hours, "GPU-h", "pairs x epochs / a100_samples_vitb32 / 3600")
    node_rate = v("gpus_per_node") * v("a100_samples_vitb32")
    row("train", "shard read rate per 8-GPU node, ViT-B/32", node_rate * v("bytes_256") / 1e6, "MB/s",
        "gpus_per_node x a100_samples_vitb32 x bytes_256")
    row("train", "RN50x64 (paper)", v("v100_days_rn50x64") * 24, "V100-h", "592 x 18 x 24")
    row("train", "ViT-L/14 (paper)", v("v100_days_vitl14") * 24, "V100-h", "256 x 12 x 24")
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| stage | quantity | value | unit | formula |", "|---|---|---|---|---|"]
    for r in rows:
        value = f"{r['value']:,.0f}" if r["value"] >= 100 else f"{r['value']:,.2f}"
        lines.append(f"| {r['stage']} | {r['quantity']} | {value} | {r['unit']} | `{r['formula']}` |")
    lines += ["", "| input | value | unit | source |", "|---|---|---|---|"]
    for name, item in INPUTS.items():
        lines.append(f"| `{name}` | {item.value:,.6g} | {item.unit} | {item.source} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = compute()
    print(json.dumps({"rows": rows, "inputs": {k: asdict(i) for k, i in INPUTS.items()}}, indent=2) if args.json
          else markdown(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
