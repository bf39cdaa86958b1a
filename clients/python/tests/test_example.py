"""The README's example script runs against the real agent and the iris example (needs BentoML)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deploy_example.py"


@pytest.mark.parametrize("mode", [[], ["--graph"]], ids=["client", "graph"])
def test_example_deploys(mode, agent_bin, agent_home, iris_store, smoke_test) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), *mode, "--model", iris_store.model_name, "--model-version", iris_store.v1,
         "--env", "clienttest", "--requested-by", "ci", "--approver", "alice", "--home", str(agent_home),
         "--smoke", json.dumps(smoke_test([0]))],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, **iris_store.env(), "MODEL_DEPLOYER_BIN": agent_bin},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    status = result["output"]["status"] if mode else result["status"]
    assert status == "live"
    assert "%]" in out.stderr and "live" in out.stderr  # progress lines
