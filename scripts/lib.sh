# Shared by the project's scripts: where caches live, and running as root or via sudo.
MCPCTL_CACHE="${MCPCTL_CACHE:-$HOME/.cache/mcpctl}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MCPCTL_VENV:-$REPO_ROOT/.venv}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

log() { printf '%s %s\n' "[$(date +%H:%M:%S)]" "$*" >&2; }
