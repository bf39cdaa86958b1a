#!/usr/bin/env bash
# Train the iris example models (broken, v1, v2) and build one bento per model version.
# The broken one is built first, so `latest` (the newest by creation time) is always a healthy version
# (v2): a quickstart that plans `latest` must not put a model that answers HTTP 500 live.
# Usage: BENTOML_HOME=/path/to/store examples/iris/build.sh [VENV]   (VENV defaults to <repo>/.venv)
# Prints `model_<kind>=iris_clf:<ver>` and `bento_<kind>=iris_classifier:<ver>` lines on stdout.
# Rerunning trains and builds new versions (model versions are not reused).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${VENV:-$here/../../.venv}}"
: "${BENTOML_HOME:?set BENTOML_HOME to the BentoML store to fill}"
export BENTOML_HOME BENTOML_DO_NOT_TRACK=true
export PATH="$venv/bin:$PATH"   # bentoml build needs uv from the venv
mkdir -p "$BENTOML_HOME"
py="$venv/bin/python"
bentoml="$venv/bin/bentoml"
start=$(date +%s%N)
for kind in broken v1 v2; do
  tag="$("$py" "$here/train.py" "$kind" | tail -n 1)"
  [[ "$tag" == iris_clf:* ]] || { echo "train.py $kind failed" >&2; exit 1; }
  echo "model_${kind}=${tag}"
  out="$(cd "$here" && "$bentoml" build --arg "model_tag=${tag}" \
           --label "model_kind=${kind}" --output tag . 2>&1)" \
    || { echo "$out" >&2; echo "bentoml build $kind failed" >&2; exit 1; }
  btag="$(printf '%s\n' "$out" | grep -Eo '__tag__:[^ ]+' | tail -n 1 | sed 's/^__tag__://')"
  [[ -n "$btag" ]] || btag="$(printf '%s\n' "$out" | grep -Eo 'iris_classifier:[a-z0-9]+' | tail -n 1)"
  [[ -n "$btag" ]] || { echo "$out" >&2; echo "no bento tag for $kind" >&2; exit 1; }
  echo "bento_${kind}=${btag}"
done
end=$(date +%s%N)
echo "build.sh took $(( (end - start) / 1000000 )) ms" >&2
