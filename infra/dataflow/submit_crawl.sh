#!/usr/bin/env bash
# Crawl (pipeline.crawl): balanced url lists -> webdataset shards on GCS, eval duplicates dropped.
#   n2-highcpu-8: one SDK process per vCPU, each peaking at ~0.6 GB resident (docs/crawl.md, scale
#   curve), so 8 GB holds 8 with room; the crawl is paid by the CPU-second;
#   the crawl's default 128 download threads per process: most wait on latency, and 128 cost less
#   CPU per url than 256 on the WAN benchmark (docs/crawl.md);
#   30 GB disk: shards go straight to GCS, nothing large is kept locally;
#   <= 100 workers: ~165 urls per CPU-second on the WAN benchmark x 800 vCPUs (infra/scale.py,
#   docs/scale.md), polite per host (the per-host limits are per process: docs/crawl.md);
#   --eval-index: evaluation sets indexed by submit_dedup_index.sh, dropped during the crawl;
#   label wit-stage=crawl.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m pipeline.crawl \
  --urls "gs://${BUCKET}/curated/urls/*.parquet" \
  --out "gs://${BUCKET}/shards" \
  --image-size 256 --min-success-ratio 0.5 \
  --eval-index "gs://${BUCKET}/dedup/imagenet-val" \
  "${COMMON[@]}" \
  --job_name "wit-crawl-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-highcpu-8 --disk_size_gb 30 --max_num_workers 100 \
  --labels wit-stage=crawl \
  "${EXTRA[@]}"
