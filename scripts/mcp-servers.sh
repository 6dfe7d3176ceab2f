#!/usr/bin/env bash
# Fetches the third-party MCP servers the tests run (from PyPI via uvx, from npm via npx) into
# their own caches, so tests do not wait on downloads. Idempotent; fast when cached.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if ! command -v npx >/dev/null 2>&1; then
    log "installing Node.js and npm from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

start=$(date +%s)
# Closing stdin ends a STDIO server, so each one starts, is cached, and exits.
"$VENV/bin/uvx" mcp-server-time --help >/dev/null
"$VENV/bin/uvx" mcp-server-fetch --help >/dev/null
timeout 300 npx -y @modelcontextprotocol/server-everything stdio </dev/null >/dev/null 2>&1 || true
log "MCP servers cached in $(( $(date +%s) - start ))s"
