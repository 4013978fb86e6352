#!/usr/bin/env bash
# Query list (query_list.build): English Wikipedia dump + page views + WordNet -> 500k queries.
#   n2-highmem-4: n-gram counting keeps large per-shard dictionaries in memory;
#   50 GB disk: the shuffle of ~10^8 distinct n-grams spills;
#   <= 32 workers: the multistream dump splits into ~25k streams, enough for 32 x 4 cores;
#   label wit-stage=queries: cost attribution per stage.
# shellcheck source=infra/dataflow/common.sh
source "$(dirname "$0")/common.sh"
python -m query_list.build \
  --wiki "gs://${BUCKET}/enwiki/enwiki-latest-pages-articles-multistream.xml.bz2" \
  --pageviews "gs://${BUCKET}/pageviews/*.gz" \
  --out "gs://${BUCKET}/queries" \
  "${COMMON[@]}" \
  --job_name "wit-queries-$(date +%Y%m%d-%H%M%S)" \
  --machine_type n2-highmem-4 --disk_size_gb 50 --max_num_workers 32 \
  --labels wit-stage=queries \
  "${EXTRA[@]}"
