#!/usr/bin/env bash
# Crawl (pipeline.crawl): balanced url lists -> webdataset shards on GCS, eval duplicates dropped.
#   n2-highcpu-8: decode and resize are CPU-bound, memory per image is small;
#   32 threads per worker process: downloads wait on the network, not the CPU;
#   30 GB disk: shards go straight to GCS, nothing large is kept locally;
#   <= 100 workers: about 100 img/s/core x 800 cores, ~10 GB/s egress-free ingress, polite per host;
#   --eval-index: evaluation sets indexed by submit_dedup_index.sh, dropped during the crawl;
#   label wit-stage=crawl.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m pipeline.crawl \
  --urls "gs://${BUCKET}/curated/urls/*.parquet" \
  --out "gs://${BUCKET}/shards" \
  --image-size 256 --threads-per-worker 32 --min-success-ratio 0.5 \
  --eval-index "gs://${BUCKET}/dedup/imagenet-val" \
  "${COMMON[@]}" \
  --job_name "wit-crawl-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-highcpu-8 --disk_size_gb 30 --max_num_workers 100 \
  --labels wit-stage=crawl \
  "${EXTRA[@]}"
