#!/usr/bin/env bash
# A throwaway Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) for tests and
# benchmarks. No kubelet, no scheduler, no container runtime: Pods are created but never run.
#
#   scripts/kube-cluster.sh build              build the binaries once per machine (about 12 minutes)
#   scripts/kube-cluster.sh check              exit 0 when the cached binaries are there
#   scripts/kube-cluster.sh start DIR PORT     start on 127.0.0.1:PORT (etcd on PORT+1, PORT+2); prints
#                                              the kubeconfig path (context "model-deployer-test")
#   scripts/kube-cluster.sh stop  DIR          stop what start started and remove DIR
#   scripts/kube-cluster.sh kubectl            print the path of the kubectl this script uses
#
# kube-apiserver and kube-controller-manager come from Debian's `kubernetes` source package (1.20.2),
# built with Debian's Go and cached in $KUBE_CLUSTER_CACHE (default
# ~/.cache/model-deployer-test/kubernetes-1.20.2). kubectl 1.20 is taken from Debian's
# kubernetes-client package, unpacked into the same cache (so it never clashes with another kubectl
# already on the machine). etcd comes from Debian's etcd-server package.
set -euo pipefail

die() { echo "kube-cluster: $*" >&2; exit 1; }
say() { echo "kube-cluster: $*" >&2; }

version=1.20.2
cache=${KUBE_CLUSTER_CACHE:-$HOME/.cache/model-deployer-test/kubernetes-$version}
bin="$cache/bin"
kubectl="$bin/kubectl"
context=model-deployer-test

SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"

have_binaries() {
  [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$kubectl" ]] \
    && command -v etcd >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1
}

apt_install() {
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [[ ${#need[@]} -eq 0 ]] && return 0
  say "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

build() {
  if have_binaries; then say "cached binaries in $bin"; return 0; fi
  apt_install etcd-server openssl golang-go make rsync dpkg-dev ca-certificates
  mkdir -p "$bin"
  if [[ ! -x "$kubectl" ]]; then
    # kubernetes-client ships /usr/bin/kubectl, which clashes with other kubectl packages (Google's);
    # unpacking it into the cache leaves the machine's own kubectl alone.
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null) || die "apt-get download kubernetes-client failed"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tmp/x"
    install -m 0755 "$tmp/x/usr/bin/kubectl" "$kubectl"
    rm -rf "$tmp"
  fi
  if [[ ! -x "$bin/kube-apiserver" || ! -x "$bin/kube-controller-manager" ]]; then
    local src="$cache/src"
    if [[ ! -f "$src/.unpacked" ]]; then
      if ! apt-get source --print-uris kubernetes >/dev/null 2>&1 || \
         [[ -z "$(apt-get source --print-uris kubernetes 2>/dev/null | grep -F .dsc)" ]]; then
        # apt-get source needs a deb-src line; add one for bookworm main next to the deb lines.
        say "adding deb-src for bookworm (/etc/apt/sources.list.d/model-deployer-src.sources)"
        printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm' \
          'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
          | $SUDO tee /etc/apt/sources.list.d/model-deployer-src.sources >/dev/null
        $SUDO apt-get update -qq
      fi
      rm -rf "$src"; mkdir -p "$src"
      (cd "$src" && apt-get source -q kubernetes >"$cache/source.log" 2>&1) \
        || { tail -n 20 "$cache/source.log" >&2; die "apt-get source kubernetes failed"; }
      touch "$src/.unpacked"
    fi
    local tree; tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
    [[ -n "$tree" && -f "$tree/Makefile" ]] || die "no unpacked kubernetes tree under $src"
    say "building kube-apiserver and kube-controller-manager in $tree (about 12 minutes, 1.3 GB)"
    # The tarball has no .git, so the version stamp comes from the environment; GOFLAGS keeps the
    # build inside vendor/ and off the network.
    local envs=(KUBE_GIT_VERSION="v$version" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian
                GOFLAGS=-mod=vendor GO111MODULE=on GOPROXY=off GOCACHE="$cache/gocache" GOPATH="$cache/gopath")
    for what in kube-apiserver kube-controller-manager; do
      (cd "$tree" && env "${envs[@]}" nice make WHAT="cmd/$what" >>"$cache/build.log" 2>&1) \
        || { tail -n 30 "$cache/build.log" >&2; die "make WHAT=cmd/$what failed (log: $cache/build.log)"; }
      local out; out=$(find "$tree/_output" -type f -name "$what" -perm -u+x | head -n 1)
      [[ -n "$out" ]] || die "make WHAT=cmd/$what left no binary"
      install -m 0755 "$out" "$bin/$what"
    done
    # The source tree and Go caches are 2+ GB; the binaries are all later runs need.
    rm -rf "$src" "$cache/gocache" "$cache/gopath"
  fi
  have_binaries || die "build finished but binaries are missing"
  say "binaries cached in $bin"
}

cmd=${1:-}; dir=${2:-}; port=${3:-}

check_dir() {
  [[ -n "$dir" ]] || die "usage: $0 start DIR PORT | stop DIR"
  [[ "$dir" == /* ]] || die "DIR must be an absolute path, got '$dir'"
  [[ "$dir" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "DIR may contain only letters, digits and ._/-"
  [[ "$dir" != "/" ]] || die "refusing DIR=/"
}

marker() { echo "$dir/.kube-cluster"; }

# Stops the process whose pid is in FILE if it is still the one we started (its command line names
# our DIR), then removes FILE.
stop_pidfile() {
  local f=$1 pid
  [[ -f "$f" ]] || return 0
  pid=$(cat "$f")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF "$dir"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    [[ -d /proc/$pid ]] && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

start() {
  check_dir
  [[ "$port" =~ ^[0-9]+$ ]] && (( port > 0 && port < 65534 )) || die "PORT must be 1..65533, got '${port}'"
  have_binaries || die "control plane binaries not built (run: $0 build)"
  local kc="$dir/kubeconfig"
  if [[ -f "$dir/apiserver.pid" && -f "$kc" ]] && "$kubectl" --kubeconfig "$kc" get --raw /readyz >/dev/null 2>&1; then
    echo "$kc"; return 0
  fi
  if [[ -e "$dir" && ! -f "$(marker)" ]] && [[ -n "$(ls -A "$dir")" ]]; then
    die "$dir exists, is not empty and was not made by this script"
  fi
  local pki="$dir/pki" etcd_port=$((port + 1)) etcd_peer=$((port + 2))
  for p in "$port" "$etcd_port" "$etcd_peer"; do
    # A connect that succeeds means someone listens there already.
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (PORT, PORT+1 and PORT+2 must be free)"; fi
  done
  mkdir -p "$dir"; touch "$(marker)"; chmod 700 "$dir"
  mkdir -p "$pki"
  # Throwaway credentials: a self-signed serving cert, a service-account signing key and one static
  # token with cluster-admin rights (group system:masters) for kubectl.
  if [[ ! -f "$pki/serving.crt" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$pki/serving.key" -out "$pki/serving.crt" >/dev/null 2>&1 || die "openssl (serving cert) failed"
    openssl genrsa -out "$pki/sa.key" 2048 >/dev/null 2>&1 || die "openssl (sa key) failed"
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" >/dev/null 2>&1 || die "openssl (sa pub) failed"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pki/token"
    echo "$(cat "$pki/token"),admin,admin,system:masters" >"$pki/tokens.csv"
    chmod 600 "$pki"/*
  fi
  local token; token=$(cat "$pki/token")

  nohup etcd --name kube-test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "kube-test=http://127.0.0.1:$etcd_peer" \
    >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"

  nohup "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --cert-dir "$pki" --profiling=false --logtostderr=true --v=1 \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount \
    --disable-admission-plugins StorageObjectInUseProtection,DefaultStorageClass,PersistentVolumeClaimResize \
    >"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"

  cat >"$kc" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $context
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $pki/serving.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: $context
  context:
    cluster: $context
    user: admin
    namespace: default
current-context: $context
EOF
  chmod 600 "$kc"

  local ok=""
  for _ in $(seq 1 120); do
    if "$kubectl" --kubeconfig "$kc" get --raw /readyz >/dev/null 2>&1; then ok=1; break; fi
    [[ -d /proc/$(cat "$dir/apiserver.pid") ]] || break
    sleep 0.5
  done
  if [[ -z "$ok" ]]; then
    tail -n 20 "$dir/apiserver.log" >&2 || true; tail -n 5 "$dir/etcd.log" >&2 || true
    stop_pidfile "$dir/apiserver.pid"; stop_pidfile "$dir/etcd.pid"
    die "kube-apiserver did not become ready on 127.0.0.1:$port"
  fi

  # The controller manager talks to the API server with the same admin token; a tiny kubeconfig of
  # its own keeps it off the user's ~/.kube.
  nohup "$bin/kube-controller-manager" \
    --kubeconfig "$kc" --bind-address 127.0.0.1 --port 0 --secure-port 0 \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/serving.crt" \
    --controllers '*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-cloud-node-lifecycle,-route,-service,-bootstrapsigner,-tokencleaner,-csrsigning,-csrapproving,-csrcleaner,-ttl' \
    --logtostderr=true --v=1 >"$dir/controller-manager.log" 2>&1 &
  echo $! >"$dir/controller-manager.pid"
  sleep 0.5
  if [[ ! -d /proc/$(cat "$dir/controller-manager.pid") ]]; then
    tail -n 20 "$dir/controller-manager.log" >&2
    stop_pidfile "$dir/apiserver.pid"; stop_pidfile "$dir/etcd.pid"
    die "kube-controller-manager exited"
  fi
  echo "$kc"
}

stop() {
  check_dir
  [[ -e "$dir" ]] || return 0
  [[ -f "$(marker)" ]] || die "$dir was not made by this script; not removing it"
  stop_pidfile "$dir/controller-manager.pid"
  stop_pidfile "$dir/apiserver.pid"
  stop_pidfile "$dir/etcd.pid"
  rm -rf "$dir"
}

case "$cmd" in
  build) build ;;
  check) have_binaries ;;
  start) start ;;
  stop) stop ;;
  kubectl) echo "$kubectl" ;;
  *) die "unknown command '$cmd' (build|check|start DIR PORT|stop DIR|kubectl)" ;;
esac
