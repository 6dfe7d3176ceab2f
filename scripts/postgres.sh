#!/usr/bin/env bash
# A private PostgreSQL for the tests: installs Debian's server if missing, keeps its data under
# the cache, listens on 127.0.0.1 only. `start` prints the SQLAlchemy URL; `stop` stops it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PGPORT="${MCPCTL_PG_PORT:-15432}"
# Not under $HOME: as root, the postgres user could not reach /root.
PGROOT="${MCPCTL_PG_DIR:-/var/tmp/mcpctl-$(id -un)/postgres}"
DATA="$PGROOT/data"
URL="postgresql+psycopg://mcpctl@127.0.0.1:$PGPORT/mcpctl"

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    [ -n "$dir" ] && echo "$dir"
}

install_server() {
    if [ -n "$(pg_bin)" ]; then return; fi
    log "installing PostgreSQL from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

run_pg() {
    # PostgreSQL refuses to run as root: use the package's postgres user then.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    install_server
    local bin
    bin=$(pg_bin)
    mkdir -p "$PGROOT"
    if [ "$(id -u)" = 0 ]; then chown postgres "$PGROOT"; fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        run_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! run_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        run_pg "$bin/pg_ctl" -D "$DATA" -l "$PGROOT/server.log" -w -t 60 start \
            -o "-h 127.0.0.1 -p $PGPORT -k $PGROOT -c fsync=off -c synchronous_commit=off" >/dev/null
    fi
    local psql=("$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -qtA)
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='mcpctl'")" ]; then
        "${psql[@]}" -c "CREATE ROLE mcpctl LOGIN CREATEDB" >/dev/null
    fi
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='mcpctl'")" ]; then
        "${psql[@]}" -c "CREATE DATABASE mcpctl OWNER mcpctl" >/dev/null
    fi
    echo "$URL"
}

stop() {
    local bin
    bin=$(pg_bin) || exit 0
    if [ -f "$DATA/PG_VERSION" ]; then
        run_pg "$bin/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
