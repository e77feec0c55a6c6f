# shellcheck shell=bash
# Helpers shared by deploy/scripts/*.sh. Sourced by them, not run on its own.
#
# NOX_COMMAND: the nox command (default "nox"; may hold words, such as "uvx nox"). The
# scripts render manifests through `$NOX_COMMAND -s deployment -- render_manifests ...`.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMMITTED_DIR="$ROOT/deploy/kubernetes"
read -r -a NOX <<< "${NOX_COMMAND:-nox}"

# die CODE MESSAGE: print "error: MESSAGE" on stderr and exit with CODE.
die() {
  local code="$1"
  shift
  printf 'error: %s\n' "$*" >&2
  exit "$code"
}

# require TOOL HINT: exit 127 with a clear message when TOOL is not on PATH.
require() {
  command -v "$1" > /dev/null 2>&1 || die 127 "$1 not found; install it or $2"
}

# require_nox: the nox command must exist.
require_nox() {
  [[ ${#NOX[@]} -gt 0 ]] || die 2 "NOX_COMMAND is empty; unset it or name the nox command"
  require "${NOX[0]}" "set NOX_COMMAND to the nox command to use"
}

# run CMD...: print the command, then run it.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

# render_manifests: set MANIFESTS to a folder holding the manifests of $DEPLOY_ENV.
# The production manifests are the committed ones in deploy/kubernetes/; with
# CHECK_COMMITTED=yes they must equal a fresh render first. Other environments, and a
# --gpu/--no-gpu override ($GPU_FLAG), are rendered into a temporary folder.
render_manifests() {
  if [[ "$DEPLOY_ENV" == production && -z "${GPU_FLAG:-}" ]]; then
    MANIFESTS="$COMMITTED_DIR"
    if [[ "${CHECK_COMMITTED:-no}" == yes ]]; then
      (cd "$ROOT" && run "${NOX[@]}" -s deployment -- render_manifests --check) ||
        die 1 "the committed manifests are not a fresh render of config/; see above"
    fi
    return
  fi
  MANIFESTS="$(mktemp -d "${TMPDIR:-/tmp}/aiprod-manifests.XXXXXX")"
  trap 'rm -rf -- "$MANIFESTS"' EXIT
  local args=(--env "$DEPLOY_ENV" --output "$MANIFESTS")
  [[ -n "${GPU_FLAG:-}" ]] && args+=("$GPU_FLAG")
  (cd "$ROOT" && run "${NOX[@]}" -s deployment -- render_manifests "${args[@]}") ||
    die 1 "rendering the $DEPLOY_ENV manifests failed; see above"
}

# manifest_value FILE KEY: the value of the first "KEY: value" line of a rendered manifest.
manifest_value() {
  local value
  value="$(awk -v key="$2:" '$1 == key { v = $2; gsub(/["'\'']/, "", v); print v; exit }' "$1")"
  [[ -n "$value" ]] || die 1 "$1 has no $2; render the manifests again"
  printf '%s\n' "$value"
}

# need_value OPTION VALUE: an option that takes a value must have one.
need_value() {
  [[ -n "${2:-}" && "$2" != --* ]] || die 2 "$1 needs a value (see --help)"
}
