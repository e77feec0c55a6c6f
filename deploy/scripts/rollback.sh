#!/usr/bin/env bash
# Roll the AIPROD server back to an earlier revision on Kubernetes or Cloud Run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
usage: deploy/scripts/rollback.sh [--env NAME] [--target kubernetes|cloud-run]
                                  [--to-revision REV] [--apply]

kubernetes  `kubectl rollout undo` of the Deployment in the rendered deployment.yaml, to
            the previous revision or --to-revision N (see `kubectl rollout history`).
cloud-run   sends all traffic to --to-revision REVISION (required; list them with
            `gcloud run revisions list --service aiprod-server --region REGION`).

Without --apply this is a dry run: it shows the revision history (kubernetes) or the
target revision (cloud-run) and runs the undo with --dry-run=server; nothing changes.
production reads the committed deploy/kubernetes/ files as they are (a rollback must work
even when config/ has moved on); other environments are rendered into a temporary folder.

Environment: NOX_COMMAND (nox command, default "nox"; used for environments other than production).
USAGE
}

DEPLOY_ENV=production
TARGET=kubernetes
REVISION=""
APPLY=no
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) need_value "$1" "${2:-}"; DEPLOY_ENV="$2"; shift 2 ;;
    --target) need_value "$1" "${2:-}"; TARGET="$2"; shift 2 ;;
    --to-revision) need_value "$1" "${2:-}"; REVISION="$2"; shift 2 ;;
    --apply) APPLY=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown option: $1" ;;
  esac
done

case "$TARGET" in
  kubernetes)
    require kubectl "roll back from a machine with cluster access"
    [[ -z "$REVISION" || "$REVISION" =~ ^[0-9]+$ ]] ||
      die 2 "--to-revision for kubernetes is a revision number, not '$REVISION'"
    ;;
  cloud-run)
    require gcloud "roll back from a machine with access to the Google Cloud project"
    [[ -n "$REVISION" ]] || die 2 "a cloud-run rollback needs --to-revision REVISION (list them with: gcloud run revisions list --service SERVICE --region REGION)"
    ;;
  *) die 2 "--target must be kubernetes or cloud-run, not '$TARGET'" ;;
esac
[[ "$DEPLOY_ENV" == production ]] || require_nox

CHECK_COMMITTED=no
render_manifests

if [[ "$TARGET" == kubernetes ]]; then
  deployment="$MANIFESTS/deployment.yaml"
  undo=(kubectl rollout undo -f "$deployment")
  [[ -n "$REVISION" ]] && undo+=("--to-revision=$REVISION")
  if [[ "$APPLY" == yes ]]; then
    run "${undo[@]}"
    run kubectl rollout status -f "$deployment" --timeout=15m
    echo "rolled back $DEPLOY_ENV on Kubernetes"
  else
    run kubectl rollout history -f "$deployment"
    run "${undo[@]}" --dry-run=server
    echo "dry run: nothing was changed; add --apply to roll back $DEPLOY_ENV"
  fi
else
  service_file="$MANIFESTS/cloud-run-service.yaml"
  service="$(manifest_value "$service_file" name)"
  region="$(manifest_value "$service_file" cloud.googleapis.com/location)"
  if [[ "$APPLY" == yes ]]; then
    run gcloud run services update-traffic "$service" --region "$region" --to-revisions "$REVISION=100"
    echo "rolled back $DEPLOY_ENV on Cloud Run: all traffic to $REVISION"
  else
    run gcloud run revisions describe "$REVISION" --region "$region"
    echo "would run: gcloud run services update-traffic $service --region $region --to-revisions $REVISION=100"
    echo "dry run: nothing was changed; add --apply to roll back $DEPLOY_ENV"
  fi
fi
