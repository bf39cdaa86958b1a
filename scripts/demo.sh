#!/usr/bin/env bash
# The main job: installs and builds everything (scripts/setup.sh), builds the example model's store,
# then deploys v1, v2 blue-green under client traffic, rolls back, shows a broken version failing its smoke
# test, v2 again as a canary with a step gate (approved as a person would), and a faulty version aborted by
# the canary's analysis, with the embedded SQLite ledger and the HAProxy router. State lives in
# <repo>/.state/demo.
#   scripts/demo.sh [--keep]   leave the last deployment serving
#   scripts/demo.sh --stop     stop what a --keep run left serving
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
state="$root/.state/demo"
if [ "${1:-}" = "--stop" ]; then
  exec .venv/bin/python examples/demo.py --home "$state/home" --tags /dev/null --stop
fi
bin="$(scripts/setup.sh)"
export PATH="$(dirname "$bin"):$PATH" MODEL_DEPLOYER_BIN="$bin"
export BENTOML_HOME="$state/bentoml" BENTOML_DO_NOT_TRACK=true MODEL_DEPLOYER_BENTOML="$root/.venv/bin/bentoml"
export MODEL_DEPLOYER_ROUTER="${MODEL_DEPLOYER_ROUTER:-haproxy}"   # the canary needs a router with weights
mkdir -p "$state"
# (Re)build when there is no store yet, or one from before the faulty canary versions existed.
if [ ! -s "$state/tags.txt" ] || ! grep -q '^model_flaky=' "$state/tags.txt"; then
  say "training the example model (broken, flaky, slow, v1, v2) and building its bentos into $BENTOML_HOME"
  examples/iris/build.sh "$root/.venv" > "$state/tags.txt.new"
  mv "$state/tags.txt.new" "$state/tags.txt"
fi
# A fresh ledger and home each run, so the story starts from nothing live.
.venv/bin/python examples/demo.py --home "$state/home" --tags /dev/null --stop 2>/dev/null || true
rm -rf "$state/home"
say "deploying (ledger: $state/home/deployer.db)"
exec .venv/bin/python examples/demo.py --home "$state/home" --tags "$state/tags.txt" "$@"
