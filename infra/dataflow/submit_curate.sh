#!/usr/bin/env bash
# Curation (pipeline.curate): Common Crawl WAT -> matched, balanced (<= 20k per query) url lists.
#   n2-standard-8: the Aho-Corasick automaton of 500k queries (~1 GB) is shared by 8 cores;
#   30 GB disk: inputs stream from GCS, only the shuffle of matched pairs spills;
#   <= 300 workers: WAT files are ~400 MB each, 80k per crawl: plenty of parallel work;
#   us-east1 by default in the README for Common Crawl's bucket region (override REGION);
#   label wit-stage=curate.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m pipeline.curate \
  --pool "gs://${BUCKET}/commoncrawl/CC-MAIN-*/wat/*.warc.wat.gz" \
  --queries "gs://${BUCKET}/queries/metadata.json" \
  --out "gs://${BUCKET}/curated" \
  --max-per-query 20000 \
  "${COMMON[@]}" \
  --job_name "wit-curate-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-standard-8 --disk_size_gb 30 --max_num_workers 300 \
  --labels wit-stage=curate \
  "${EXTRA[@]}"
