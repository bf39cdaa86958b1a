#!/usr/bin/env bash
# Installs what model-deployer needs on a Debian 12 machine and builds it. Idempotent: a second run
# only checks. Used by the README's two commands (scripts/demo.sh, scripts/test.sh) and by CI.
#   apt: haproxy (the router), postgresql, libpq-dev, libsqlite3-dev, jq, curl, etcd-server, openssl
#        and, with --with-nginx (scripts/test.sh), nginx-light: the nginx router stays selectable
#        (serve --router nginx) and its tests keep running
#   venv (<repo>/.venv): bentoml, scikit-learn, uv, mcp, langgraph, ... and clients/python
#   swift: a release build with the Swift runtime linked statically (fast cold start)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

with_nginx=false
for arg in "$@"; do
  case "$arg" in
    --with-nginx) with_nginx=true ;;
    *) echo "usage: scripts/setup.sh [--with-nginx]" >&2; exit 2 ;;
  esac
done

need_apt=()
if $with_nginx; then
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
fi
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
[ -f /usr/include/postgresql/libpq-fe.h ] || need_apt+=(libpq-dev)
[ -f /usr/include/sqlite3.h ] || need_apt+=(libsqlite3-dev)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
# The Kubernetes runtime's tests: etcd beside a kube-apiserver that scripts/kube-cluster.sh builds once.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's haproxy (and nginx) packages may start a system service on its default config; model-deployer
# runs its own processes, with their own config, under its home.

if ! python3 -m venv --help >/dev/null 2>&1; then
  say "apt-get install python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
stamp=".venv/.model-deployer-requirements"
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements.txt "$stamp" 2>/dev/null; then
  say "Python venv .venv (bentoml, scikit-learn, mcp, langgraph, ...): about a minute the first time"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt "$stamp"
fi
if ! .venv/bin/python -c 'import model_deployer_client' >/dev/null 2>&1 || [ clients/python/pyproject.toml -nt "$stamp" ]; then
  # Editable: the venv always runs the client in this checkout.
  .venv/bin/pip install -q --disable-pip-version-check -e ./clients/python
  touch "$stamp"
fi

if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
fi
command -v swift >/dev/null 2>&1 || { echo "setup: Swift 6 is required (https://swift.org/install); not found on PATH" >&2; exit 1; }
say "swift build -c release (static Swift runtime)"
swift build -c release --static-swift-stdlib --product model-deployer 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' >&2 || { echo "setup: swift build failed" >&2; exit 1; }
echo "$root/.build/release/model-deployer"
