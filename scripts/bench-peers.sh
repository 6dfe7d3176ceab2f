#!/usr/bin/env bash
# Installs what bench/load.py needs to compare mcpd with its peers, cached under
# $MCPCTL_CACHE/bench: wrk and curl (Debian; the load generator), mcp-proxy (PyPI, in a venv of
# its own because it needs mcp<2), supergateway 4 (npm); and has npx cache
# @modelcontextprotocol/server-everything, the server behind every bridge.
# Idempotent; fast when cached. Prints the tools' paths on stdout as name=path lines.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MCP_PROXY_VERSION="${MCP_PROXY_VERSION:-0.13.0}"
SUPERGATEWAY_VERSION="${SUPERGATEWAY_VERSION:-4.0.0}"
BENCH_CACHE="$MCPCTL_CACHE/bench"
start=$(date +%s)
mkdir -p "$BENCH_CACHE"

# wrk is the load generator; bench/mcp.lua opens each thread's MCP session with curl.
missing=""
for tool in wrk curl; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
    log "installing$missing from Debian"
    as_root apt-get update -qq
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
if ! command -v npx >/dev/null 2>&1; then
    log "installing Node.js and npm from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

proxy_venv="$BENCH_CACHE/mcp-proxy-venv"
proxy_stamp="$proxy_venv/.installed-mcp-proxy-$MCP_PROXY_VERSION"
if [ ! -f "$proxy_stamp" ]; then
    log "installing mcp-proxy $MCP_PROXY_VERSION into $proxy_venv"
    rm -rf "$proxy_venv"
    if [ -x "$VENV/bin/uv" ]; then
        "$VENV/bin/uv" venv --quiet --python python3 "$proxy_venv"
        "$VENV/bin/uv" pip install --quiet --python "$proxy_venv/bin/python" \
            "mcp-proxy==$MCP_PROXY_VERSION" "mcp<2"
    else
        python3 -m venv "$proxy_venv"
        "$proxy_venv/bin/pip" install --quiet "mcp-proxy==$MCP_PROXY_VERSION" "mcp<2"
    fi
    touch "$proxy_stamp"
fi

node_dir="$BENCH_CACHE/supergateway"
node_stamp="$node_dir/.installed-supergateway-$SUPERGATEWAY_VERSION"
if [ ! -f "$node_stamp" ]; then
    log "installing supergateway $SUPERGATEWAY_VERSION into $node_dir"
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    npm install --silent --no-audit --no-fund --prefix "$node_dir" \
        "supergateway@$SUPERGATEWAY_VERSION" >/dev/null
    touch "$node_stamp"
fi

# The server every bridge runs: started once so npx has it cached (closing stdin ends it).
timeout 300 npx -y @modelcontextprotocol/server-everything stdio </dev/null >/dev/null 2>&1 || true

log "bench peers ready in $(( $(date +%s) - start ))s"
echo "wrk=$(command -v wrk)"
echo "mcp_proxy=$proxy_venv/bin/mcp-proxy"
echo "supergateway=$node_dir/node_modules/.bin/supergateway"
