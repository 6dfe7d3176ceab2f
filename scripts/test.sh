#!/usr/bin/env bash
# The whole suite from a fresh machine: installs what the tests need (idempotently, cached),
# starts PostgreSQL and the Kubernetes test control plane, runs the linters and every test tier.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
suite_start=$(date +%s)

"$REPO_ROOT/scripts/venv.sh" test
export PATH="$VENV/bin:$PATH"

log "lint: ruff, format, mypy, import layers"
ruff check mcpctl tests bench
ruff format --check mcpctl tests bench
mypy
lint-imports --no-cache >/dev/null

"$REPO_ROOT/scripts/mcp-servers.sh"
MCPCTL_HELM="$("$REPO_ROOT/scripts/helm.sh")"
export MCPCTL_HELM
MCPCTL_TEST_POSTGRES_URL="$("$REPO_ROOT/scripts/postgres.sh" start)"
export MCPCTL_TEST_POSTGRES_URL
# The OpenID provider of the OAuth tests (Ory Hydra, built once and cached).
eval "$("$REPO_ROOT/scripts/idp.sh" start)"
# The trace backend of the tracing tests (Jaeger all-in-one, built once and cached).
eval "$("$REPO_ROOT/scripts/jaeger.sh" start)"

cleanup() {
    if [ -x "$REPO_ROOT/scripts/k8s/cluster.sh" ] && [ -n "${KUBECONFIG:-}" ]; then
        "$REPO_ROOT/scripts/k8s/cluster.sh" down || true
    fi
    "$REPO_ROOT/scripts/postgres.sh" stop || true
    "$REPO_ROOT/scripts/idp.sh" stop || true
    "$REPO_ROOT/scripts/jaeger.sh" stop || true
}
trap cleanup EXIT

if [ -x "$REPO_ROOT/scripts/k8s/cluster.sh" ] && [ "${MCPCTL_SKIP_K8S:-0}" != 1 ]; then
    "$REPO_ROOT/scripts/k8s/cluster.sh" up
    eval "$("$REPO_ROOT/scripts/k8s/cluster.sh" env)"
fi

log "pytest"
set +e
python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
log "suite finished in $(( $(date +%s) - suite_start ))s"
exit $status
