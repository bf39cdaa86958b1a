#!/usr/bin/env bash
# Train the iris example models (broken, flaky, slow, v1, v2) and build one bento per model version.
# The faulty ones (broken; flaky: 30 % HTTP 500; slow: +300 ms on half the requests) are built first, so
# `latest` (the newest by creation time, for iris_clf and iris_classifier alike) is always a healthy
# version (v2): a quickstart that plans `latest` must not put a faulty model live.
# Usage: BENTOML_HOME=/path/to/store examples/iris/build.sh [VENV]   (VENV defaults to <repo>/.venv)
# Prints `model_<kind>=iris_clf:<ver>` and `bento_<kind>=iris_classifier:<ver>` lines on stdout, kind in
# broken, flaky, slow, v1, v2 (read them by key: the order of the lines is not part of the format).
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
# Fault injection is a bento argument (see service.py), recorded in the bento: the agent serves it as built.
fault_args() {
  case "$1" in
    flaky) echo "--arg fault_error_rate=0.3" ;;
    slow)  echo "--arg fault_delay_ms=300 --arg fault_delay_rate=0.5" ;;
    *)     echo "" ;;
  esac
}
for kind in broken flaky slow v1 v2; do
  tag="$("$py" "$here/train.py" "$kind" | tail -n 1)"
  [[ "$tag" == iris_clf:* ]] || { echo "train.py $kind failed" >&2; exit 1; }
  echo "model_${kind}=${tag}"
  # shellcheck disable=SC2046  # fault_args is a word list on purpose
  out="$(cd "$here" && "$bentoml" build --arg "model_tag=${tag}" $(fault_args "$kind") \
           --label "model_kind=${kind}" --output tag . 2>&1)" \
    || { echo "$out" >&2; echo "bentoml build $kind failed" >&2; exit 1; }
  btag="$(printf '%s\n' "$out" | grep -Eo '__tag__:[^ ]+' | tail -n 1 | sed 's/^__tag__://')"
  [[ -n "$btag" ]] || btag="$(printf '%s\n' "$out" | grep -Eo 'iris_classifier:[a-z0-9]+' | tail -n 1)"
  [[ -n "$btag" ]] || { echo "$out" >&2; echo "no bento tag for $kind" >&2; exit 1; }
  echo "bento_${kind}=${btag}"
done
end=$(date +%s%N)
echo "build.sh took $(( (end - start) / 1000000 )) ms" >&2
