#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for mcpctl's test suite.
#
#   scripts/k8s/cluster.sh build   build (once, cached) etcd, kube-apiserver,
#                                  kube-controller-manager, kube-scheduler and
#                                  the test kubelet
#   scripts/k8s/cluster.sh up      build if needed, start everything, wait until
#                                  ready; a no-op when already running
#   scripts/k8s/cluster.sh down    stop everything it started, and the pods'
#                                  processes
#   scripts/k8s/cluster.sh env     print `export KUBECONFIG=...`
#   scripts/k8s/cluster.sh status  show what runs
#
# The Kubernetes release is the k8s.io/kubernetes version in tests/cluster/go.mod;
# everything is built from Go modules into
#   ${MCPCTL_CACHE:-$HOME/.cache/mcpctl}/k8s/<version>/bin
# and runs from ${MCPCTL_CACHE:-$HOME/.cache/mcpctl}/k8s/run (logs in run/logs).
#
# Environment:
#   MCPCTL_CACHE                 cache root (default ~/.cache/mcpctl)
#   MCPCTL_K8S_APISERVER_PORT    default 16443
#   MCPCTL_K8S_ETCD_PORT         default 12379 (peer port: +1)
#   MCPCTL_K8S_KUBELET_PORT      default 16250
#   MCPCTL_K8S_IMAGES            more image tables for the test kubelet
#                                (comma-separated; loaded after, and winning
#                                over, tests/cluster/images.yaml)
#   MCPCTL_K8S_BUILD_JOBS        go build -p (default 2)
#   MCPCTL_K8S_KEEP_DATA=1       `up` keeps the etcd data of the last run
#                                (default: every `up` starts from an empty cluster)
#   MCPCTL_K8S_POD_CIDR          addresses of sandboxed pods (default 10.244.0.0/24;
#                                "none": no pod sandboxes); see README.md
#   MCPCTL_K8S_SERVICE_CIDR      ClusterIPs (default 10.96.0.0/16)
#   MCPCTL_K8S_BRIDGE            the pod network's bridge (default mcpk<kubelet port>)
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT=$(cd "$(dirname "$SELF")/../.." && pwd)
SRC="$ROOT/tests/cluster"
CACHE="${MCPCTL_CACHE:-$HOME/.cache/mcpctl}/k8s"
RUN="$CACHE/run"
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$SRC/go.mod")
[ -n "$K8S_VERSION" ] || { echo "cannot find the k8s.io/kubernetes version in $SRC/go.mod" >&2; exit 1; }
BIN="$CACHE/$K8S_VERSION/bin"

APISERVER_PORT=${MCPCTL_K8S_APISERVER_PORT:-16443}
ETCD_PORT=${MCPCTL_K8S_ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KUBELET_PORT=${MCPCTL_K8S_KUBELET_PORT:-16250}
KCM_PORT=$((APISERVER_PORT + 1))
SCHED_PORT=$((APISERVER_PORT + 2))
NODE_NAME=mcpctl-node-0
CONTEXT=mcpctl-test
IMAGES="$SRC/images.yaml${MCPCTL_K8S_IMAGES:+,$MCPCTL_K8S_IMAGES}"
JOBS=${MCPCTL_K8S_BUILD_JOBS:-2}
POD_CIDR=${MCPCTL_K8S_POD_CIDR:-10.244.0.0/24}
SERVICE_CIDR=${MCPCTL_K8S_SERVICE_CIDR:-10.96.0.0/16}
BRIDGE=${MCPCTL_K8S_BRIDGE:-mcpk$KUBELET_PORT}
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler kubelet"

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- tools ----

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  log "installing $* with apt-get"
  as_root apt-get update -qq >/dev/null 2>&1 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_cmds() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v setsid >/dev/null || missing+=(util-linux)
  command -v python3 >/dev/null || missing+=(python3)
  if [ "$POD_CIDR" != none ] && [ "$(id -u)" = 0 ]; then
    command -v ip >/dev/null || missing+=(iproute2)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || die "please install: ${missing[*]}"
  fi
}

# A Go toolchain: any go >= 1.21 fetches the go line of tests/cluster/go.mod by
# itself (GOTOOLCHAIN=auto, through the Go module proxy).
GO=""
find_go() {
  local c v
  for c in "${GO_BIN:-}" "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$("$c" env GOVERSION 2>/dev/null | sed -n 's/^go\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [ -n "$v" ] || continue
    set -- $v
    if [ "$1" -gt 1 ] || [ "$2" -ge 21 ]; then GO=$c; return 0; fi
  done
  return 1
}

ensure_go() {
  find_go && return 0
  # Debian's newest golang-1.NN-go that can switch toolchains.
  local pkg
  pkg=$(apt-cache pkgnames golang-1. 2>/dev/null | grep -E '^golang-1\.[0-9]+-go$' | sort -t. -k2 -n | tail -1 || true)
  if [ -n "$pkg" ]; then
    apt_install "$pkg" || true
    for c in /usr/lib/go-1.*/bin/go; do GO_BIN=$c find_go && return 0; done
  fi
  die "no Go toolchain >= 1.21 found (install Go, or set GO_BIN)"
}

# ---------------------------------------------------------------- build ----

go_env() {
  export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go-build"
  export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
  export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
}

# go build in tests/cluster; its output goes to $CACHE/build.log
gobuild() {
  echo "+ go build $*" >> "$CACHE/build.log"
  if ! (cd "$SRC" && "$GO" build -p "$JOBS" -trimpath "$@") >> "$CACHE/build.log" 2>&1; then
    tail -n 40 "$CACHE/build.log" >&2
    die "go build failed (whole log: $CACHE/build.log)"
  fi
}

hash_files() { cat "$@" | sha256sum | cut -c1-16; }

cp_source_stamp() { hash_files "$SRC/go.mod" "$SRC/go.sum"; }
kl_source_stamp() { hash_files "$SRC/go.mod" "$SRC/go.sum" "$SRC"/kubelet/*.go; }

build() {
  ensure_cmds
  local cp_stamp kl_stamp need_cp=0 need_kl=0 t0 c
  cp_stamp=$(cp_source_stamp)
  kl_stamp=$(kl_source_stamp)
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$BIN/$c" ] || need_cp=1
  done
  [ "$(cat "$BIN/.controlplane.stamp" 2>/dev/null)" = "$cp_stamp" ] || need_cp=1
  [ -x "$BIN/mcpctl-test-kubelet" ] && [ "$(cat "$BIN/.kubelet.stamp" 2>/dev/null)" = "$kl_stamp" ] || need_kl=1
  [ $need_cp = 1 ] || [ $need_kl = 1 ] || return 0

  ensure_go
  go_env
  mkdir -p "$BIN"
  : > "$CACHE/build.log"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local vflags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  if [ $need_cp = 1 ]; then
    log "building Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler) and etcd with $("$GO" env GOVERSION), -p $JOBS; this takes several minutes the first time"
    t0=$(now)
    local tmp="$BIN/.tmp"
    rm -rf "$tmp"; mkdir -p "$tmp"
    gobuild -ldflags "-s -w $vflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler
    gobuild -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
    mv "$tmp"/* "$BIN/"
    rmdir "$tmp"
    echo "$cp_stamp" > "$BIN/.controlplane.stamp"
    log "control plane built in $(elapsed "$t0")s"
    echo "$(elapsed "$t0")" > "$BIN/.controlplane.build-seconds"
  fi
  if [ $need_kl = 1 ]; then
    t0=$(now)
    gobuild -ldflags "-s -w" -o "$BIN/mcpctl-test-kubelet.tmp" ./kubelet
    mv "$BIN/mcpctl-test-kubelet.tmp" "$BIN/mcpctl-test-kubelet"
    echo "$kl_stamp" > "$BIN/.kubelet.stamp"
    log "test kubelet built in $(elapsed "$t0")s"
  fi
}

# ----------------------------------------------------------------- pki -----

PKI="$RUN/pki"

cert() { # name subject [san]
  local name=$1 subj=$2 san=${3:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } > "$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# the first address of the Service range: the `kubernetes` Service's ClusterIP
service_ip() { python3 -c 'import ipaddress, sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$SERVICE_CIDR"; }

make_pki() {
  if [ "$(cat "$PKI/done-v3" 2>/dev/null)" = "$(service_ip)" ]; then return 0; fi
  rm -rf "$PKI"; mkdir -p "$PKI"; chmod 700 "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=mcpctl-test-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$(service_ip)"
  cert kubelet "/CN=$NODE_NAME" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1"
  cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=mcpctl-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert front-proxy-client "/CN=front-proxy-client"
  cert kube-proxy "/CN=system:kube-proxy" # the kubelet's service proxy (ClusterRole system:node-proxier)
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  service_ip > "$PKI/done-v3"
}

b64() { base64 -w0 < "$1"; }

kubeconfig() { # file user
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CONTEXT
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: $CONTEXT
  context:
    cluster: $CONTEXT
    user: $2
    namespace: default
current-context: $CONTEXT
EOF
  chmod 600 "$1"
}

# ----------------------------------------------------------- processes -----
#
# `up` starts one detached holder process (this script, `_hold`). The holder
# starts every component as its own child, waits until the cluster is ready,
# and then stays: it reaps the components when they exit, and on SIGTERM
# (`down`) stops them in order (kubelet first, so pods stop cleanly). This
# keeps zombies away even where PID 1 does not reap orphans.

pidfile() { echo "$RUN/pids/$1.pid"; }

binary_of() {
  case $1 in
    kubelet) echo "$BIN/mcpctl-test-kubelet" ;;
    *) echo "$BIN/$1" ;;
  esac
}

# pid_running PID: exists and is not a zombie
pid_running() {
  local state
  state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# alive NAME: the process in the pid file runs and is ours
alive() {
  local f pid exe
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && pid_running "$pid" || return 1
  [ "$1" = holder ] && return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case $exe in "$CACHE"/*) return 0 ;; esac
  return 1
}

api() { # path -> body; fails on HTTP errors
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

node_ready() {
  api "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
node = json.load(sys.stdin)
ok = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
taints = [t for t in node["spec"].get("taints", []) if t.get("effect") in ("NoSchedule", "NoExecute")]
sys.exit(0 if ok and not taints else 1)'
}

# Pod processes carry MCPCTL_TEST_KUBELET_RUN=<run dir> in their environment;
# stop any the kubelet left behind.
sweep_pods() {
  local marker="MCPCTL_TEST_KUBELET_RUN=$RUN" p pid n=0
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = $$ ] && continue
    if { tr '\0' '\n' < "$p/environ"; } 2>/dev/null | grep -qxF "$marker"; then
      kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
    fi
  done
  [ $n = 0 ] || log "stopped $n leftover pod processes"
}

# The kubelet's pod sandboxes (own network namespace, address, /etc/hosts,
# volumes) need root; without it, or with MCPCTL_K8S_POD_CIDR=none, pods asking
# for one wait with CreatePodSandboxError.
pod_network_flags() {
  [ "$POD_CIDR" != none ] || return 0
  echo "--pod-cidr $POD_CIDR --pod-bridge $BRIDGE --proxy-kubeconfig $RUN/kubeconfig-proxy"
}

# What the kubelet makes for sandboxed pods, if it could not remove it itself.
sweep_network() {
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null || return 0
  local ns n=0
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    case $ns in "$BRIDGE"-*) ip netns del "$ns" 2>/dev/null && n=$((n + 1)) ;; esac
  done
  ip link del "$BRIDGE" 2>/dev/null && log "removed bridge $BRIDGE" || true
  rm -rf "/dev/shm/mcpctl-$BRIDGE"
  [ $n = 0 ] || log "removed $n leftover pod network namespaces"
}

# ---- inside the holder ----

STOPPING=0

h_start() { # name args...
  local name=$1; shift
  "$(binary_of "$name")" "$@" < /dev/null >> "$RUN/logs/$name.log" 2>&1 &
  echo $! > "$(pidfile "$name")"
  log "started $name (pid $!)"
}

h_wait() { # description timeout command...
  local what=$1 timeout=$2 t0; shift 2
  t0=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    [ $STOPPING = 0 ] || return 1
    if [ $(( $(date +%s) - t0 )) -ge "$timeout" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

h_stop() { # name timeout: SIGTERM, SIGKILL after timeout, reap
  local name=$1 timeout=$2 f pid i
  f=$(pidfile "$name")
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      pid_running "$pid" || break
      sleep 0.1
    done
    if pid_running "$pid"; then
      log "$name did not stop in ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$f"
  log "stopped $name"
}

h_stop_all() {
  h_stop kubelet 30 # first: it stops the pods' processes
  h_stop kube-scheduler 10
  h_stop kube-controller-manager 10
  h_stop kube-apiserver 15
  h_stop etcd 10
  sweep_pods
  sweep_network
}

h_fail() {
  log "$1"
  echo "$1" > "$RUN/failed"
  h_stop_all
  exit 1
}

hold() {
  trap 'STOPPING=1' TERM INT HUP
  log "holder $$ starting Kubernetes $K8S_VERSION"
  h_start etcd --name mcpctl-test --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "mcpctl-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  h_wait "etcd" 30 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" || h_fail "etcd did not start"

  h_start kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --requestheader-client-ca-file "$PKI/ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --cert-dir "$PKI/apiserver-generated" \
    --event-ttl 1h \
    --profiling=false \
    --v=1
  h_wait "kube-apiserver /readyz" 90 api /readyz || h_fail "kube-apiserver did not become ready"

  h_start kube-controller-manager \
    --kubeconfig "$RUN/kubeconfig-controller-manager" \
    --authentication-kubeconfig "$RUN/kubeconfig-controller-manager" \
    --authorization-kubeconfig "$RUN/kubeconfig-controller-manager" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --cert-dir "$PKI/controller-manager-generated" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --cluster-name mcpctl-test \
    --profiling=false \
    --v=1
  h_start kube-scheduler \
    --kubeconfig "$RUN/kubeconfig-scheduler" \
    --authentication-kubeconfig "$RUN/kubeconfig-scheduler" \
    --authorization-kubeconfig "$RUN/kubeconfig-scheduler" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" \
    --cert-dir "$PKI/scheduler-generated" \
    --leader-elect=false \
    --profiling=false \
    --v=1
  h_start kubelet \
    --kubeconfig "$RUN/kubeconfig-node" \
    --node-name "$NODE_NAME" \
    --address 127.0.0.1 --port "$KUBELET_PORT" \
    --tls-cert-file "$PKI/kubelet.crt" --tls-private-key-file "$PKI/kubelet.key" \
    --client-ca-file "$PKI/ca.crt" \
    --run-dir "$RUN" \
    --images "$IMAGES" \
    --apiserver-port "$APISERVER_PORT" \
    --kubelet-version "$K8S_VERSION" \
    $(pod_network_flags)

  h_wait "the default ServiceAccount" 90 api /api/v1/namespaces/default/serviceaccounts/default \
    || h_fail "the default ServiceAccount was not created"
  h_wait "node $NODE_NAME to be Ready" 60 node_ready || h_fail "node $NODE_NAME is not Ready"
  local c
  for c in $COMPONENTS; do alive "$c" || h_fail "$c exited"; done
  touch "$RUN/ready"
  log "ready"

  # Stay, reaping; a component that dies is logged (status shows it).
  local any
  while [ $STOPPING = 0 ]; do
    wait -n 2>/dev/null || true
    [ $STOPPING = 0 ] || break
    any=0
    for c in $COMPONENTS; do
      if alive "$c"; then
        any=1
      elif [ -f "$(pidfile "$c")" ]; then
        log "$c exited unexpectedly"
        rm -f "$(pidfile "$c")"
      fi
    done
    [ $any = 1 ] || { log "every component exited"; break; }
  done
  h_stop_all
  log "holder exits"
}

# ---- the commands ----

running() {
  local c
  alive holder || return 1
  for c in $COMPONENTS; do alive "$c" || return 1; done
  api /readyz >/dev/null 2>&1
}

any_running() {
  local c
  for c in holder $COMPONENTS; do alive "$c" && return 0; done
  return 1
}

show_logs() {
  local c
  for c in cluster $COMPONENTS; do
    if [ -f "$RUN/logs/$c.log" ]; then
      echo "---- last lines of $RUN/logs/$c.log" >&2
      tail -n 15 "$RUN/logs/$c.log" >&2
    fi
  done
}

up() {
  if running; then
    if [ "$(cat "$RUN/sources.stamp" 2>/dev/null)" = "$(cp_source_stamp) $(kl_source_stamp)" ]; then
      log "already running (kubeconfig: $RUN/kubeconfig)"
      return 0
    fi
    log "tests/cluster changed since the cluster started: rebuilding and restarting"
    down
  fi
  any_running && { log "partly running: restarting"; down; }
  build
  local t0; t0=$(now)
  mkdir -p "$RUN"
  rm -rf "$RUN/pods" "$RUN/logs.old" "$RUN/ready" "$RUN/failed"
  echo "$(cp_source_stamp) $(kl_source_stamp)" > "$RUN/sources.stamp"
  [ -d "$RUN/logs" ] && mv "$RUN/logs" "$RUN/logs.old"
  mkdir -p "$RUN/logs" "$RUN/pids" "$RUN/pods"
  [ "${MCPCTL_K8S_KEEP_DATA:-0}" = 1 ] || rm -rf "$RUN/etcd"
  make_pki
  kubeconfig "$RUN/kubeconfig" admin
  kubeconfig "$RUN/kubeconfig-controller-manager" controller-manager
  kubeconfig "$RUN/kubeconfig-scheduler" scheduler
  kubeconfig "$RUN/kubeconfig-node" node
  kubeconfig "$RUN/kubeconfig-proxy" kube-proxy

  # detached: its own session, no terminal, not holding the caller's pipes
  setsid "$SELF" _hold < /dev/null >> "$RUN/logs/cluster.log" 2>&1 &
  echo $! > "$(pidfile holder)"
  local deadline=$(( $(date +%s) + 300 ))
  until [ -f "$RUN/ready" ]; do
    if [ -f "$RUN/failed" ] || ! alive holder || [ "$(date +%s)" -ge $deadline ]; then
      log "the cluster did not start: $(cat "$RUN/failed" 2>/dev/null || echo 'holder exited or timed out')"
      show_logs
      down >/dev/null 2>&1 || true
      exit 1
    fi
    sleep 0.2
  done
  log "Kubernetes $K8S_VERSION ready in $(elapsed "$t0")s on https://127.0.0.1:$APISERVER_PORT (context $CONTEXT)"
  echo "$(elapsed "$t0")" > "$RUN/start-seconds"
  log "kubeconfig: $RUN/kubeconfig   (eval \"\$($0 env)\")"
}

down() {
  local f pid c i
  f=$(pidfile holder)
  if alive holder; then
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 900; i++)); do # the holder gives the kubelet up to 30s, the rest 45s
      pid_running "$pid" || break
      sleep 0.1
    done
    if pid_running "$pid"; then
      log "holder did not stop: SIGKILL to its process group"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
  # whatever is left (the holder was killed hard, or is from an older run)
  for c in kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if alive "$c"; then
      pid=$(cat "$(pidfile "$c")")
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do pid_running "$pid" || break; sleep 0.1; done
      pid_running "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pidfile "$c")"
  done
  sweep_pods
  sweep_network
  rm -f "$RUN/ready"
  log "stopped"
}

status() {
  local c pid rss total=0
  for c in holder $COMPONENTS; do
    if alive "$c"; then
      pid=$(cat "$(pidfile "$c")")
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      total=$((total + rss))
      printf '%-24s running  pid %-8s rss %6s MiB\n' "$c" "$pid" "$((rss / 1024))"
    else
      printf '%-24s stopped\n' "$c"
    fi
  done
  printf '%-24s          %-12s rss %6s MiB\n' total "" "$((total / 1024))"
  if running; then echo "ready: https://127.0.0.1:$APISERVER_PORT  KUBECONFIG=$RUN/kubeconfig"; fi
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  env) echo "export KUBECONFIG=$RUN/kubeconfig" ;;
  status) status ;;
  kubeconfig) echo "$RUN/kubeconfig" ;;
  _hold) hold ;;
  *) echo "usage: $0 build|up|down|env|status|kubeconfig" >&2; exit 2 ;;
esac
