#!/usr/bin/env bash
# A real OpenID provider for the OAuth tests: Ory Hydra, built once from Go modules
# (tests/idp/go.mod) and cached, with the headless login/consent app of tests/idp. In-memory
# store: every start is a fresh provider (new signing keys, no clients). Listens on 127.0.0.1.
#   start  builds if needed, starts both (idempotent: a running one is kept), prints `env`
#   stop   stops both
#   env    prints the exports tests read (MCPCTL_TEST_OIDC_*)
# Settings: MCPCTL_IDP_PORT (public port, default 14444; admin +1, login app +2).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HYDRA_VERSION=v2.3.0
PORT="${MCPCTL_IDP_PORT:-14444}"
ADMIN_PORT=$((PORT + 1))
LOGIN_PORT=$((PORT + 2))
CACHE="$MCPCTL_CACHE/idp"
BIN="$CACHE/hydra-$HYDRA_VERSION"
RUN="$CACHE/run-$PORT"
ISSUER="http://127.0.0.1:$PORT"

die() { log "idp: $*"; exit 1; }

build() {
    [ -x "$BIN" ] && return 0
    if ! command -v cc >/dev/null 2>&1; then
        log "installing a C compiler (Hydra's SQLite store needs cgo)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
    fi
    # Hydra's own go.mod replaces gobuffalo/pop with Ory's fork: tests/idp/go.mod repeats that.
    CGO_ENABLED=1 go_build_binary "$CACHE" "$REPO_ROOT/tests/idp" "$BIN" "Ory Hydra $HYDRA_VERSION" \
        -p "${MCPCTL_IDP_BUILD_JOBS:-2}" -tags sqlite,sqlite_omit_load_extension \
        github.com/ory/hydra/v2 || exit 1
}

ready() { curl -sf -o /dev/null "$1"; }

wait_ready() {
    local url=$1 pidfile=$2 what=$3
    for _ in $(seq 200); do
        ready "$url" && return 0
        kill -0 "$(cat "$pidfile")" 2>/dev/null || die "$what exited; see $RUN/$what.log"
        sleep 0.1
    done
    die "$what not ready in 20 s; see $RUN/$what.log"
}

config() {
    cat <<EOF
dsn: memory
serve:
  public: {host: 127.0.0.1, port: $PORT}
  admin: {host: 127.0.0.1, port: $ADMIN_PORT}
urls:
  self: {issuer: $ISSUER}
  login: http://127.0.0.1:$LOGIN_PORT/login
  consent: http://127.0.0.1:$LOGIN_PORT/consent
strategies:
  access_token: jwt
oidc:
  dynamic_client_registration:
    enabled: true
webfinger:
  oidc_discovery:
    client_registration_url: $ISSUER/oauth2/register
oauth2:
  allowed_top_level_claims: [email, email_verified, name, groups]
  mirror_top_level_claims: false
ttl:
  access_token: 1h
secrets:
  system: [$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')]
log:
  level: warn
EOF
}

start() {
    local began
    began=$(date +%s%N)
    build
    mkdir -p "$RUN"
    if ! ready "$ISSUER/health/ready"; then
        config >"$RUN/hydra.yml"
        setsid "$BIN" serve all --dev --sqa-opt-out -c "$RUN/hydra.yml" \
            >"$RUN/hydra.log" 2>&1 </dev/null &
        echo $! >"$RUN/hydra.pid"
        wait_ready "$ISSUER/health/ready" "$RUN/hydra.pid" hydra
    fi
    if ! ready "http://127.0.0.1:$LOGIN_PORT/health"; then
        # exec: the pid is the app's, and nothing holds the caller's stdout open.
        (cd "$REPO_ROOT" && exec setsid "$VENV/bin/python" -m tests.idp.login_consent \
            --port "$LOGIN_PORT" --admin "http://127.0.0.1:$ADMIN_PORT" \
            >"$RUN/login.log" 2>&1 </dev/null) &
        echo $! >"$RUN/login.pid"
        wait_ready "http://127.0.0.1:$LOGIN_PORT/health" "$RUN/login.pid" login
    fi
    log "IdP ready at $ISSUER in $((($(date +%s%N) - began) / 1000000)) ms"
    env_lines
}

stop() {
    local pidfile
    for pidfile in "$RUN/login.pid" "$RUN/hydra.pid"; do
        [ -f "$pidfile" ] || continue
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

env_lines() {
    echo "export MCPCTL_TEST_OIDC_ISSUER=$ISSUER"
    echo "export MCPCTL_TEST_OIDC_ADMIN=http://127.0.0.1:$ADMIN_PORT"
    echo "export MCPCTL_TEST_OIDC_LOGIN=http://127.0.0.1:$LOGIN_PORT"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
