#!/usr/bin/env bash
# Verify the weights an environment serves and upload them to its models bucket; with
# --database, also migrate the job store the servers share.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
usage: deploy/scripts/migrate.sh [--env NAME] [--models-dir DIR] [--database] [--no-weights] [--apply]

Run before deploying a release that serves a new model or changes the job store. The
deployed server reads its weights from the environment's Cloud Storage bucket, mounted
read-only at models/; this script moves the served model there from the local models/
folder:

  1. reads from the rendered deployment.yaml which model the environment serves
     (aiprod.dev/model, aiprod.dev/model-object: its path below models/), its expected
     sha256 (aiprod.dev/model-sha256, from the registry in config/AIPROD.json) and the
     bucket (bucketName);
  2. checks that DIR/<model-object> exists and, when the registry has a sha256, that the
     file matches it;
  3. uploads it to gs://<bucket>/<model-object> (only with --apply; otherwise prints the
     command).

With --database it then brings the job store's schema up to date: the PostgreSQL
database of AIPROD_DATABASE_URL (a secret: export it, never pass it as an argument).
Without --apply it lists the pending migrations (exit 1 while some are pending); with
--apply it applies them. The servers apply them at start-up too; running them first
keeps a rollout's first replicas from doing it.

  --env NAME        environment (default: production, from the committed manifests)
  --models-dir DIR  local models folder (default: models/ of the repository)
  --database        also migrate the job store (python -m aiprod_pipelines.server.store.migrate)
  --no-weights      skip the weights (steps 1-3), e.g. with --database
  --apply           upload and migrate instead of a dry run (needs gcloud for the weights)

Environment: NOX_COMMAND (nox command, default "nox"; used for environments other than
production); PYTHON (a Python with aiprod-pipelines[server], default python3; e.g.
.venv/bin/python after `nox -s develop`); AIPROD_DATABASE_URL (with --database).
USAGE
}

DEPLOY_ENV=production
MODELS_DIR="$ROOT/models"
APPLY=no
DATABASE=no
WEIGHTS=yes
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) need_value "$1" "${2:-}"; DEPLOY_ENV="$2"; shift 2 ;;
    --models-dir) need_value "$1" "${2:-}"; MODELS_DIR="$2"; shift 2 ;;
    --database) DATABASE=yes; shift ;;
    --no-weights) WEIGHTS=no; shift ;;
    --apply) APPLY=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown option: $1" ;;
  esac
done

[[ "$WEIGHTS" == yes || "$DATABASE" == yes ]] || die 2 "--no-weights without --database leaves nothing to do"
read -r -a PYTHON_CMD <<< "${PYTHON:-python3}"
if [[ "$DATABASE" == yes ]]; then
  [[ -n "${AIPROD_DATABASE_URL:-}" ]] ||
    die 2 "--database needs AIPROD_DATABASE_URL (postgresql://user:password@host:5432/db) in the environment"
  [[ ${#PYTHON_CMD[@]} -gt 0 ]] || die 2 "PYTHON is empty; unset it or name a Python"
  require "${PYTHON_CMD[0]}" "set PYTHON to a Python with aiprod-pipelines[server] installed"
fi

# migrate_database: list (dry run) or apply the job store's migrations.
migrate_database() {
  local args=()
  [[ "$APPLY" == yes ]] || args+=(--check)
  run "${PYTHON_CMD[@]}" -m aiprod_pipelines.server.store.migrate "${args[@]}"
}

if [[ "$WEIGHTS" == no ]]; then
  migrate_database
  exit
fi

[[ "$APPLY" == yes ]] && require gcloud "run without --apply to only verify the weights"
[[ "$DEPLOY_ENV" == production ]] || require_nox

CHECK_COMMITTED=no
render_manifests

deployment="$MANIFESTS/deployment.yaml"
model="$(manifest_value "$deployment" aiprod.dev/model)"
object="$(manifest_value "$deployment" aiprod.dev/model-object)"
bucket="$(manifest_value "$deployment" bucketName)"
expected="$(awk '$1 == "aiprod.dev/model-sha256:" { v = $2; gsub(/["'\'']/, "", v); print v; exit }' "$deployment")"
local_file="$MODELS_DIR/$object"

[[ -f "$local_file" ]] || die 1 "$local_file not found: $DEPLOY_ENV serves $model; obtain it as the registry entry in config/AIPROD.json says, or pass --models-dir"

if [[ -n "$expected" ]]; then
  require sha256sum "install coreutils"
  actual="$(sha256sum "$local_file" | awk '{ print $1 }')"
  [[ "$actual" == "$expected" ]] ||
    die 1 "$local_file has sha256 $actual, but the registry expects $expected for $model"
  echo "verified $local_file (sha256 $actual)"
else
  echo "note: the registry has no sha256 for $model; uploading without a checksum check"
fi

destination="gs://$bucket/$object"
if [[ "$APPLY" == yes ]]; then
  run gcloud storage cp "$local_file" "$destination"
  echo "uploaded $model for $DEPLOY_ENV to $destination"
else
  echo "would run: gcloud storage cp $local_file $destination"
  echo "dry run: nothing was uploaded; add --apply to upload"
fi

if [[ "$DATABASE" == yes ]]; then
  migrate_database
fi
