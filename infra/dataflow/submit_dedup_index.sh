#!/usr/bin/env bash
# Evaluation-set index (dedup.index): image folders or shards of an evaluation set -> index.
# Usage: submit_dedup_index.sh PROJECT BUCKET [REGION] --name NAME --images GLOB --out GS_DIR [...]
#   n2-standard-4: 10-20 ms of CPU per image (10 hash views, ~100 ORB keypoints; 10,000 images
#   described in 66 s on 2 cores, docs/dedup.md); <= 20 workers: evaluation sets are small
#   (50k images: ~15 core-minutes). The last step (tree, inverted file, hash tables) runs on one
#   worker and peaks at ~27 KB per evaluation image: 16 GB holds ~500k images; for the whole
#   ~1M-image suite add --machine_type n2-highmem-8 (64 GB) after the other flags.
#   label wit-stage=dedup.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m dedup.index \
  "${COMMON[@]}" \
  --job_name "wit-dedup-index-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-standard-4 --disk_size_gb 30 --max_num_workers 20 \
  --labels wit-stage=dedup \
  "${EXTRA[@]}"
