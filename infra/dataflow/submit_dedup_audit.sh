#!/usr/bin/env bash
# Audit (dedup.audit): shards x evaluation indexes -> overlap report, clean shards.
#   n2-highmem-8: the indexes are a side input held once per worker process (~100 KB per
#   evaluation image: 5 GB for ImageNet-val);
#   --experiments no_use_multiple_sdk_containers: one process per VM, so the index is held once;
#   <= 100 workers: 200 images/s/core x 800 cores audits 400M images in ~40 min;
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
  --machine_type n2-highmem-8 --disk_size_gb 30 --max_num_workers 100 \
  --experiments no_use_multiple_sdk_containers \
  --labels wit-stage=dedup \
  "${EXTRA[@]}"
