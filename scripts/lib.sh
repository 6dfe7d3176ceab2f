# Shared by the project's scripts: where caches live, and running as root or via sudo.
MCPCTL_CACHE="${MCPCTL_CACHE:-$HOME/.cache/mcpctl}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MCPCTL_VENV:-$REPO_ROOT/.venv}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

log() { printf '%s %s\n' "[$(date +%H:%M:%S)]" "$*" >&2; }

# A Go toolchain in $GO: GO_BIN, the PATH's, or the usual install places.
find_go() {
    for c in "${GO_BIN:-}" "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [ -n "$c" ] && [ -x "$c" ]; then GO="$c"; return 0; fi
    done
    return 1
}

# go_build_binary CACHE MODULE_DIR BIN WHAT [go build args...]: builds one binary of a module
# in tests/ with module and build caches of its own under CACHE, then drops those caches (they
# only serve a rebuild): the cache keeps the binary alone. CGO_ENABLED comes from the caller.
go_build_binary() {
    local cache=$1 module=$2 bin=$3 what=$4 start
    shift 4
    find_go || { log "no Go toolchain to build $what (install golang-go, or set GO_BIN)"; return 1; }
    mkdir -p "$cache"
    log "building $what from Go modules (once; log: $cache/build.log)"
    start=$(date +%s)
    if ! (cd "$module" &&
        GOPATH="$cache/go" GOMODCACHE="$cache/go/pkg/mod" GOCACHE="$cache/go-build" \
            GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" \
            "$GO" build -trimpath -o "$bin.tmp" "$@" >"$cache/build.log" 2>&1); then
        tail -n 20 "$cache/build.log" >&2
        log "building $what failed (whole log: $cache/build.log)"
        return 1
    fi
    mv "$bin.tmp" "$bin"
    chmod -R u+w "$cache/go" 2>/dev/null || true
    rm -rf "$cache/go" "$cache/go-build"
    log "$what built in $(($(date +%s) - start))s"
}
