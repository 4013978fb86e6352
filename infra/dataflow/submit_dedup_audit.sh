#!/usr/bin/env bash
# Audit (dedup.audit): shards x evaluation indexes -> overlap report, clean shards.
#   n2-standard-8 (8 vCPU, 32 GB), the machine infra/scale.py prices: the index (~4.3 KB per
#   evaluation image, 4.3 GB for a 1M-image suite) is copied once per VM into $WIT_DEDUP_CACHE and
#   memory-mapped by every SDK process (one per vCPU, Dataflow's default), so the page cache holds
#   it once; each process adds ~0.6 GB private (docs/dedup.md, "Scale");
#   <= 100 workers: ~200 images/s/core x 800 cores audits 400M images in ~40 min;
#   label wit-stage=dedup.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m dedup.audit \
  --shards "gs://${BUCKET}/shards/*.tar" \
  --index "gs://${BUCKET}/dedup/imagenet-val" \
  --out "gs://${BUCKET}/dedup/audit" \
  --write-clean "gs://${BUCKET}/shards-clean" \
  "${COMMON[@]}" \
  --job_name "wit-dedup-audit-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-standard-8 --disk_size_gb 30 --max_num_workers 100 \
  --labels wit-stage=dedup \
  "${EXTRA[@]}"
