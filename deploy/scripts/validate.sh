#!/usr/bin/env bash
# Check offline that the committed manifests are a fresh, schema-valid render of config/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
usage: deploy/scripts/validate.sh [render_manifests options, such as --env NAME or --output DIR]

Runs `nox -s deployment -- render_manifests --check`: renders every manifest in memory,
validates it (Kubernetes schemas, and our models of the Knative and PrometheusRule
documents) and exits 1, listing the files, when deploy/kubernetes/ differs from the render.
Needs no cluster and no cloud account. Exit 2: a deployment input is invalid.

Environment: NOX_COMMAND (nox command, default "nox").
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac
require_nox
cd "$ROOT"
run "${NOX[@]}" -s deployment -- render_manifests --check "$@"
