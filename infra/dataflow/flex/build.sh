#!/usr/bin/env bash
# Build the Flex Template of one job: its launcher image (infra/dataflow/flex/Dockerfile, with
# WIT_JOB baked in) and its template spec in gs://BUCKET/templates/JOB.json.
# Usage: infra/dataflow/flex/build.sh PROJECT BUCKET JOB [REGION]
#   JOB: queries | curate | crawl | dedup_index | dedup_audit
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $(basename "$0") PROJECT BUCKET JOB [REGION]" >&2
  exit 2
fi
PROJECT=$1 BUCKET=$2 JOB=$3 REGION=${4:-us-central1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
METADATA="$ROOT/infra/dataflow/flex/${JOB}.metadata.json"
[[ -f "$METADATA" ]] || { echo "unknown job $JOB (no $METADATA)" >&2; exit 2; }
REPO="${REGION}-docker.pkg.dev/${PROJECT}/wit"
LAUNCHER="${REPO}/flex-${JOB//_/-}:latest"

cd "$ROOT"
docker build -f infra/dataflow/flex/Dockerfile --build-arg "WIT_JOB=${JOB}" -t "$LAUNCHER" .
docker push "$LAUNCHER"
gcloud dataflow flex-template build "gs://${BUCKET}/templates/${JOB}.json" \
  --project "$PROJECT" \
  --image "$LAUNCHER" \
  --sdk-language PYTHON \
  --metadata-file "$METADATA"
