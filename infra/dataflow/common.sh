#!/usr/bin/env bash
# Shared by the submit_<job>.sh scripts: arguments, the SDK image, and the Dataflow flags every
# job takes. Usage of a submit script: submit_<job>.sh PROJECT BUCKET [REGION] [extra job flags...]
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $(basename "$0") PROJECT BUCKET [REGION] [extra job flags...]" >&2
  exit 2
fi
PROJECT=$1
BUCKET=$2
REGION=${3:-us-central1}
shift $(( $# < 3 ? $# : 3 ))
EXTRA=("$@")
export EXTRA PROJECT BUCKET REGION

# The custom SDK container (infra/dataflow/Dockerfile); WIT_SDK_IMAGE overrides it. With
# WIT_SETUP_FILE=1 the workers install this checkout from setup.py instead.
IMAGE=${WIT_SDK_IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/wit/dataflow:latest}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

COMMON=(
  --runner DataflowRunner
  --project "$PROJECT"
  --region "$REGION"
  --temp_location "gs://${BUCKET}/dataflow/tmp"
  --staging_location "gs://${BUCKET}/dataflow/staging"
  --autoscaling_algorithm THROUGHPUT_BASED
  --experiments use_runner_v2
)
if [[ "${WIT_SETUP_FILE:-0}" == "1" ]]; then
  COMMON+=(--setup_file ./setup.py)
else
  COMMON+=(--sdk_container_image "$IMAGE" --sdk_location container)
fi
export COMMON ROOT
