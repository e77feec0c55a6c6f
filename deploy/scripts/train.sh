#!/usr/bin/env bash
# Launch the multi-node training job (aiprod-train under torchrun) on Kubernetes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
usage: deploy/scripts/train.sh [--env NAME] [--apply] [--restart] [--no-follow]
       deploy/scripts/train.sh [--env NAME] --logs
       deploy/scripts/train.sh [--env NAME] --delete [--apply]

Launches the training job rendered from config/cloud/training.yaml: a volume claim
(ReadWriteMany) for data and checkpoints, a ConfigMap with the training config, a headless
Service for the rendezvous, and an Indexed Job whose pods each run torchrun on their GPUs.
production uses the committed deploy/kubernetes/training-*.yaml files (which must equal a
fresh render); other environments are rendered into a temporary folder.

Without --apply this is a dry run that changes nothing: kubectl apply --dry-run=server
(the cluster validates, nothing is stored), then the commands --apply would run next.
With --apply the manifests are applied, then every pod's log is followed (prefixed with
its pod name) until the job ends; stopping the script (Ctrl-C) leaves the job running.

  --env NAME   environment whose namespace and image to use (default: production)
  --apply      act instead of a dry run
  --restart    first delete a job of the same name (finished, failed or running: a Job's
               pods cannot be changed); the new one resumes from the last checkpoint in
               the volume, which is kept
  --no-follow  return once the manifests are applied
  --logs       only follow the logs of the running job
  --delete     delete the job, its Service and ConfigMap; the volume and its checkpoints stay

Environment: NOX_COMMAND (nox command, default "nox").
USAGE
}

DEPLOY_ENV=production
APPLY=no
RESTART=no
FOLLOW=yes
ACTION=launch
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) need_value "$1" "${2:-}"; DEPLOY_ENV="$2"; shift 2 ;;
    --apply) APPLY=yes; shift ;;
    --restart) RESTART=yes; shift ;;
    --no-follow) FOLLOW=no; shift ;;
    --logs) ACTION=logs; shift ;;
    --delete) ACTION=delete; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown option: $1" ;;
  esac
done

if [[ "$ACTION" != launch && ("$RESTART" == yes || "$FOLLOW" == no) ]]; then
  die 2 "--restart and --no-follow go with a launch, not with --$ACTION"
fi
require kubectl "run deploy/scripts/validate.sh for an offline check"
if [[ "$DEPLOY_ENV" != production || "$ACTION" == launch ]]; then require_nox; fi

# A launch first checks that the committed files are a fresh render; --logs and --delete
# read them as they are (they must work even when config/ has moved on).
CHECK_COMMITTED=no
if [[ "$ACTION" == launch ]]; then CHECK_COMMITTED=yes; fi
render_manifests

volume="$MANIFESTS/training-volume.yaml"
config="$MANIFESTS/training-config.yaml"
service="$MANIFESTS/training-service.yaml"
job="$MANIFESTS/training-job.yaml"
name="$(manifest_value "$job" name)"
namespace="$(manifest_value "$job" namespace)"
nodes="$(manifest_value "$job" completions)"
follow=(kubectl logs --namespace "$namespace" --selector "batch.kubernetes.io/job-name=$name"
  --follow --prefix --tail=-1 --max-log-requests "$nodes")
ready=(kubectl wait "job/$name" --namespace "$namespace"
  "--for=jsonpath={.status.ready}=$nodes" --timeout=60m)

# follow_logs: wait until every pod of the job runs, then follow all their logs.
follow_logs() {
  run "${ready[@]}" ||
    die 1 "the $nodes pods of job $name did not all start within an hour; see: kubectl describe job $name --namespace $namespace"
  run "${follow[@]}" || true
  run kubectl get job "$name" --namespace "$namespace"
}

case "$ACTION" in
  logs)
    follow_logs
    ;;
  delete)
    remove=(kubectl delete --ignore-not-found -f "$job" -f "$service" -f "$config")
    claim="$(manifest_value "$volume" name)"
    if [[ "$APPLY" == yes ]]; then
      run "${remove[@]}"
      echo "deleted training job $name in $namespace; the volume claim $claim is kept"
    else
      run "${remove[@]}" --dry-run=server
      echo "dry run: nothing was deleted; add --apply to delete training job $name"
    fi
    ;;
  launch)
    replace=(kubectl delete job "$name" --namespace "$namespace" --ignore-not-found)
    apply=(kubectl apply -f "$volume" -f "$config" -f "$service" -f "$job")
    if [[ "$APPLY" == yes ]]; then
      if [[ "$RESTART" == yes ]]; then run "${replace[@]}" --wait=true; fi
      run "${apply[@]}"
      echo "launched training job $name in $namespace ($nodes nodes)"
      if [[ "$FOLLOW" == yes ]]; then follow_logs; fi
    else
      if [[ "$RESTART" == yes ]]; then run "${replace[@]}" --dry-run=server; fi
      run "${apply[@]}" --dry-run=server
      if [[ "$FOLLOW" == yes ]]; then
        echo "would run: ${ready[*]}"
        echo "would run: ${follow[*]}"
      fi
      echo "dry run: nothing was changed; add --apply to launch training in $DEPLOY_ENV"
    fi
    ;;
esac
