"""deployctl drives a canary with a step gate against the real agent (BentoML slots behind HAProxy, client
traffic on kept connections): plan --strategy canary --step-gates, execute stops at the gate (exit 0, the
approve/abort commands on stderr), approve ID --gate step goes live, status shows the weights per step,
status --watch in another process sees the same table; abort of what is not a canary exits 3.

Skipped unless the agent speaks the canary contract (deploy.abort in its OpenRPC document)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from deployer_fixtures import CANARY_ENV

SHELL = Path(__file__).resolve().parents[1]
DEPLOYCTL = str(SHELL / "deployctl")
EXIT_OK, EXIT_DOMAIN = 0, 3


@pytest.fixture
def agent_bin(agent_bin: str, jq: str) -> str:
    return agent_bin


def test_canary_with_a_step_gate(agent_bin, agent_home, iris_store, smoke_test, traffic) -> None:
    env = {**os.environ, **iris_store.env(), **CANARY_ENV, "MODEL_DEPLOYER_BIN": agent_bin}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DEPLOYCTL, "--home", str(agent_home), *args], capture_output=True, text=True,
                              env=env, timeout=600)

    discover = json.loads(run("call", "rpc.discover").stdout)
    if "deploy.abort" not in {m["name"] for m in discover["methods"]}:
        pytest.skip("this agent has no canary yet (no deploy.abort)")
    model = ("--model", iris_store.model_name, "--env", "clientcanary", "--requested-by", "ci")
    v1 = run("deploy", *model, "--model-version", iris_store.v1, "--approver", "alice",
             "--smoke-test", json.dumps(smoke_test([0])[0]))
    assert v1.returncode == EXIT_OK, v1.stderr
    url = json.loads(v1.stdout)["endpoint_url"]

    not_a_canary = run("abort", json.loads(v1.stdout)["deployment_id"], "--requested-by", "oncall")
    assert not_a_canary.returncode == EXIT_DOMAIN
    assert json.loads(not_a_canary.stdout)["error"]["data"]["reason"] == "not_abortable"

    with traffic(url) as load:
        plan = run("plan", *model, "--model-version", iris_store.v2, "--smoke-test", json.dumps(smoke_test([10])[0]),
                   "--strategy", "canary", "--steps", "30,100", "--step-gates", "--pause", "2", "--min-requests", "10",
                   "--canary", '{"analysis": {"interval_seconds": 1, "min_requests": 5}}')
        assert plan.returncode == EXIT_OK, plan.stderr
        planned = json.loads(plan.stdout)
        assert planned["plan"]["config"]["canary"]["steps"] == [30, 100]
        deployment_id = planned["deployment_id"]

        execute = run("execute", deployment_id)
        assert execute.returncode == EXIT_OK, execute.stderr
        assert json.loads(execute.stdout)["status"] == "awaiting_step"
        assert f"deployctl approve {deployment_id} --gate step" in execute.stderr
        step_lines = [line for line in execute.stderr.splitlines() if " canary_step: " in line]
        assert step_lines and f"{iris_store.v1}=70%" in step_lines[-1] and f"{iris_store.v2}=30%" in step_lines[-1]

        at_gate = run("-o", "table", "status", deployment_id)
        assert at_gate.returncode == EXIT_OK, at_gate.stderr
        table = at_gate.stdout.splitlines()[at_gate.stdout.splitlines().index("canary:") + 1:]
        assert table[0].split()[:3] == ["STEP", "WEIGHT", "WEIGHTS"]
        assert table[1].split()[:2] == ["1", "30%"] and f"{iris_store.v1}=70" in table[1].split()[2:4]

        approve = run("-o", "table", "approve", deployment_id, "--approver", "alice", "--gate", "step")
        assert approve.returncode == EXIT_OK, approve.stderr
        assert any(line.split() == ["status", "live"] for line in approve.stdout.splitlines()), approve.stdout
        assert "canary:" in approve.stdout

    assert load.failed() == [], load.failed()[:5]
    watch = run("-o", "table", "status", deployment_id, "--watch")
    assert watch.returncode == EXIT_OK, watch.stderr
    rows = [line.split() for line in watch.stdout.splitlines()[watch.stdout.splitlines().index("canary:") + 2:]]
    # STEP WEIGHT, two WEIGHTS (stable and candidate), ANALYSIS: "-" marks the step rows
    assert [(r[0], r[1]) for r in rows if r[4] == "-"] == [("1", "30%"), ("2", "100%")]
