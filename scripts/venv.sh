#!/usr/bin/env bash
# Creates .venv and installs mcpctl into it (with the test extras when given "test").
# Idempotent: reinstalls only when pyproject.toml changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
extras="${1:-}"
stamp="$VENV/.installed-$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)${extras:+-$extras}"
if [ -f "$stamp" ]; then exit 0; fi
start=$(date +%s)
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
spec="$REPO_ROOT"
[ -n "$extras" ] && spec="$REPO_ROOT[$extras]"
log "installing mcpctl${extras:+ with [$extras]} into $VENV"
"$VENV/bin/pip" install --quiet -e "$spec"
rm -f "$VENV"/.installed-*
touch "$stamp"
log "installed in $(( $(date +%s) - start ))s"
