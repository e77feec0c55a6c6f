#!/usr/bin/env bash
# Deploy the AIPROD server to Kubernetes or Cloud Run from the rendered manifests.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
usage: deploy/scripts/deploy.sh [--env NAME] [--target kubernetes|cloud-run] [--gpu|--no-gpu]
                                [--with-alerts] [--apply]

Deploys the server from the manifests rendered by scripts/deployment/render_manifests.py.
production uses the committed deploy/kubernetes/ files (which must equal a fresh render);
other environments, or a --gpu/--no-gpu override, are rendered into a temporary folder.

Without --apply this is a dry run that changes nothing:
  kubernetes  kubectl apply --dry-run=server (the cluster validates, nothing is stored)
  cloud-run   gcloud run services replace --dry-run
With --apply the manifests are applied and the rollout is awaited.

  --env NAME       environment to deploy (default: production)
  --target T       kubernetes (default) or cloud-run
  --gpu/--no-gpu   deploy the GPU or CPU variant instead of the environment's choice
  --with-alerts    also apply alerts.yaml (needs the Prometheus Operator CRDs; kubernetes only)
  --apply          act instead of a dry run

Environment: NOX_COMMAND (nox command, default "nox").
USAGE
}

DEPLOY_ENV=production
TARGET=kubernetes
GPU_FLAG=""
WITH_ALERTS=no
APPLY=no
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) need_value "$1" "${2:-}"; DEPLOY_ENV="$2"; shift 2 ;;
    --target) need_value "$1" "${2:-}"; TARGET="$2"; shift 2 ;;
    --gpu | --no-gpu) GPU_FLAG="$1"; shift ;;
    --with-alerts) WITH_ALERTS=yes; shift ;;
    --apply) APPLY=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown option: $1" ;;
  esac
done

case "$TARGET" in
  kubernetes) require kubectl "run deploy/scripts/validate.sh for an offline check" ;;
  cloud-run) require gcloud "run deploy/scripts/validate.sh for an offline check" ;;
  *) die 2 "--target must be kubernetes or cloud-run, not '$TARGET'" ;;
esac
require_nox

CHECK_COMMITTED=yes
render_manifests

if [[ "$TARGET" == kubernetes ]]; then
  files=(-f "$MANIFESTS/deployment.yaml" -f "$MANIFESTS/service.yaml" -f "$MANIFESTS/ingress.yaml")
  # One server that keeps its jobs or videos in its own folder: its volume claim first.
  [[ -f "$MANIFESTS/server-volume.yaml" ]] && files=(-f "$MANIFESTS/server-volume.yaml" "${files[@]}")
  [[ "$WITH_ALERTS" == yes ]] && files+=(-f "$MANIFESTS/alerts.yaml")
  if [[ "$APPLY" == yes ]]; then
    run kubectl apply "${files[@]}"
    run kubectl rollout status -f "$MANIFESTS/deployment.yaml" --timeout=15m
    echo "deployed $DEPLOY_ENV to Kubernetes"
  else
    run kubectl apply --dry-run=server "${files[@]}"
    echo "dry run: nothing was changed; add --apply to deploy $DEPLOY_ENV"
  fi
else
  service="$MANIFESTS/cloud-run-service.yaml"
  region="$(manifest_value "$service" cloud.googleapis.com/location)"
  if [[ "$APPLY" == yes ]]; then
    run gcloud run services replace "$service" --region "$region"
    echo "deployed $DEPLOY_ENV to Cloud Run ($region)"
  else
    run gcloud run services replace "$service" --region "$region" --dry-run
    echo "dry run: nothing was changed; add --apply to deploy $DEPLOY_ENV"
  fi
fi
