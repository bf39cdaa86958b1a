#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs the whole test suite against the real things:
#   1. swift test: unit tests of the pure modules, the ledger conformance suite against SQLite and
#      against a throwaway PostgreSQL cluster started here, runtime tests with real BentoML, HAProxy and nginx;
#   2. pytest: the protocol contract and JSON-RPC behaviour against the real binary, the MCP SDK,
#      end-to-end deployments (BentoML slots behind HAProxy, the default router; the nginx router's own
#      tests pass --router nginx), crash recovery, and the clients.
# Services are started here and stopped on exit. Exit code: non-zero if any suite failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# nginx too: it is no longer the default router, but it stays selectable and tested.
scripts/setup.sh --with-nginx >/dev/null || { echo "test: setup failed" >&2; exit 1; }
export PATH="/opt/swift/usr/bin:$PATH"

state="$(mktemp -d /tmp/model-deployer-test.XXXXXX)"
chmod 755 "$state"
pg_dir="$state/pg"
kube_dir="$state/kube"
cleanup() {
  say "stopping test services"
  scripts/pg-cluster.sh stop "$pg_dir" >/dev/null 2>&1 || true
  scripts/kube-cluster.sh stop "$kube_dir" >/dev/null 2>&1 || true
  # Anything a failed test left running under the test state (BentoML slots, HAProxy and nginx routers).
  for pidfile in $(find "$state" -name '*.pid' -o -name 'pid.json' 2>/dev/null); do :; done
  pkill -f "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

say "example model store (trains v1, v2, broken; builds their bentos)"
export BENTOML_DO_NOT_TRACK=true
export MODEL_DEPLOYER_TEST_BENTOML_HOME="$state/bentoml"
BENTOML_HOME="$MODEL_DEPLOYER_TEST_BENTOML_HOME" examples/iris/build.sh "$root/.venv" > "$state/example-tags.txt" || { echo "test: example build failed" >&2; exit 1; }
export MODEL_DEPLOYER_TEST_EXAMPLE_TAGS="$state/example-tags.txt"
export MODEL_DEPLOYER_BENTOML="$root/.venv/bin/bentoml"
export MODEL_DEPLOYER_BIN="$root/.build/release/model-deployer"
export MODEL_DEPLOYER_TEST_STATE="$state"

say "throwaway PostgreSQL cluster"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MODEL_DEPLOYER_TEST_DATABASE_URL="$(scripts/pg-cluster.sh start "$pg_dir" "$pg_port")" || { echo "test: postgres did not start" >&2; exit 1; }
export MODEL_DEPLOYER_TEST_DATABASE_URL
export MODEL_DEPLOYER_TEST_PG_DIR="$pg_dir" MODEL_DEPLOYER_TEST_PG_PORT="$pg_port"

say "throwaway Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager; no kubelet)"
# Built once per machine (about 12 minutes the first time), cached under ~/.cache/model-deployer-test.
kube_status=0
export MODEL_DEPLOYER_TEST_KUBERNETES_VALIDATE="$root/.venv/bin/kubernetes-validate"
if scripts/kube-cluster.sh build >"$state/kube-build.log" 2>&1; then
  # The script needs PORT, PORT+1 and PORT+2 free; a random PORT may collide, so try a few.
  for _ in 1 2 3; do
    kube_port=$(python3 -c 'import random; print(random.randint(20000, 60000))')
    MODEL_DEPLOYER_TEST_KUBECONFIG="$(scripts/kube-cluster.sh start "$kube_dir" "$kube_port")" && break
    MODEL_DEPLOYER_TEST_KUBECONFIG=""
    scripts/kube-cluster.sh stop "$kube_dir" >/dev/null 2>&1 || true
  done
  if [ -n "$MODEL_DEPLOYER_TEST_KUBECONFIG" ]; then
    export MODEL_DEPLOYER_TEST_KUBECONFIG
    export MODEL_DEPLOYER_KUBECTL="$(scripts/kube-cluster.sh kubectl)"
  else
    echo "test: the Kubernetes control plane did not start" >&2; kube_status=1
  fi
elif [ "${CI:-}" = "true" ]; then
  tail -n 20 "$state/kube-build.log" >&2
  echo "test: the Kubernetes control plane binaries could not be built (CI: not skipping)" >&2; kube_status=1
else
  tail -n 5 "$state/kube-build.log" >&2
  echo "test: SKIPPING the Kubernetes tests: the control plane binaries could not be built (log above)" >&2
fi

status=$kube_status
say "swift test"
swift test 2>&1 | tee "$state/swift-test.log" | grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Linking|Write|Build|Planning)' 
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Two sessions: each suite has its own conftest.py, and one session would import only one of them.
say "pytest: protocol, JSON-RPC, MCP, deployments (Tests/integration)"
.venv/bin/python -m pytest -q -p no:cacheprovider Tests/integration 2>&1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
say "pytest: clients (Python, LangGraph, deployctl, editors, README blocks)"
.venv/bin/python -m pytest -q -p no:cacheprovider clients 2>&1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

if [ $status -eq 0 ]; then say "all test suites passed"; else say "some tests failed"; fi
exit $status
