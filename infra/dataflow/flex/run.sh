#!/usr/bin/env bash
# Run a job from its Flex Template (built by build.sh) with the SDK container as worker image.
# Usage: infra/dataflow/flex/run.sh PROJECT BUCKET JOB REGION 'name1=value1,name2=value2' [gcloud flags...]
set -euo pipefail
if [[ $# -lt 5 ]]; then
  echo "usage: $(basename "$0") PROJECT BUCKET JOB REGION PARAMETERS [gcloud flags...]" >&2
  exit 2
fi
PROJECT=$1 BUCKET=$2 JOB=$3 REGION=$4 PARAMETERS=$5
shift 5
gcloud dataflow flex-template run "wit-${JOB//_/-}-$(date +%Y%m%d-%H%M%S)" \
  --project "$PROJECT" \
  --region "$REGION" \
  --template-file-gcs-location "gs://${BUCKET}/templates/${JOB}.json" \
  --temp-location "gs://${BUCKET}/dataflow/tmp" \
  --staging-location "gs://${BUCKET}/dataflow/staging" \
  --additional-experiments use_runner_v2 \
  --parameters "sdk_container_image=${REGION}-docker.pkg.dev/${PROJECT}/wit/dataflow:latest,${PARAMETERS}" \
  "$@"
