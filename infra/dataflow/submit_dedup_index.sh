#!/usr/bin/env bash
# Evaluation-set index (dedup.index): image folders or shards of an evaluation set -> index.
# Usage: submit_dedup_index.sh PROJECT BUCKET [REGION] --name NAME --images GLOB --out GS_DIR [...]
#   n2-standard-4: ~0.1 s of CPU per image for its 46 hash views and 6 ORB views;
#   <= 20 workers: evaluation sets are small (50k images: 80 core-minutes);
#   label wit-stage=dedup.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m dedup.index \
  "${COMMON[@]}" \
  --job_name "wit-dedup-index-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-standard-4 --disk_size_gb 30 --max_num_workers 20 \
  --labels wit-stage=dedup \
  "${EXTRA[@]}"
