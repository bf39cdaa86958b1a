"""deployctl speaks canary, abort and stop (issue 11): the params each command sends, positional ids,
usage errors, exit codes and the canary table, against a scripted stand-in for the agent
(clients/python/tests/fake_canary_agent.py: it logs every request). The same commands against the real
agent are in test_deployctl_canary_agent.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SHELL = Path(__file__).resolve().parents[1]
DEPLOYCTL = str(SHELL / "deployctl")
FAKE = str(SHELL.parent / "python" / "tests" / "fake_canary_agent.py")
ID = "01930000-0000-7000-8000-00000000c4a7"
EXIT_OK, EXIT_USAGE, EXIT_DOMAIN, EXIT_DEPLOY_FAILED = 0, 1, 3, 4


@pytest.fixture
def fake(tmp_path: Path, jq: str):
    log = tmp_path / "requests.jsonl"

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([DEPLOYCTL, "--bin", FAKE, *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "FAKE_AGENT_LOG": str(log), **env})

    def sent(method: str) -> list[dict]:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [r["params"] for r in lines if r["method"] == method]

    return run, sent


PLAN = ("--model", "iris_clf", "--model-version", "v2", "--env", "canarytest", "--requested-by", "ci-bot")


def test_plan_builds_the_canary_object(fake) -> None:
    run, sent = fake
    out = run("plan", *PLAN, "--strategy", "canary", "--steps", "5,25,50,100", "--step-gates", "--pause", "10",
              "--min-requests", "40", "--canary", '{"pause_seconds": 99, "analysis": {"interval_seconds": 5}}')
    assert out.returncode == EXIT_OK, out.stderr
    assert json.loads(out.stdout)["plan"]["config"]["canary"]["steps"] == [5, 25, 50, 100]
    (params,) = sent("deploy.plan")
    assert params["strategy"] == "canary"
    # the flags win over the same keys of --canary
    assert params["canary"] == {"pause_seconds": 10, "analysis": {"interval_seconds": 5}, "steps": [5, 25, 50, 100],
                                "min_requests": 40, "step_gates": True}
    run("plan", *PLAN)
    assert "canary" not in sent("deploy.plan")[1]  # no flag, no canary object: the policy decides


@pytest.mark.parametrize("args, message", [
    (("plan", *PLAN, "--steps", "5;25"), "--steps needs comma-separated"),
    (("plan", *PLAN, "--steps", "5,25,"), "--steps needs comma-separated"),
    (("plan", *PLAN, "--pause", "1.5"), "--pause needs a whole number"),
    (("plan", *PLAN, "--min-requests", "-1"), "--min-requests needs a whole number"),
    (("plan", *PLAN, "--canary", "[5, 25]"), "--canary must be a JSON object"),
    (("plan", *PLAN, "--canary", "{steps"), "--canary is not valid JSON"),
    (("execute", ID, "--steps", "5,100"), "execute does not take --steps"),
    (("approve", ID, "--approver", "alice", "--gate", "canary"), "--gate must be deploy, promote or step"),
    (("approve", ID, "--id", ID, "--approver", "alice"), "takes the deployment id once"),
    (("abort", ID), "abort needs --requested-by"),
    (("abort", "--requested-by", "oncall"), "abort needs --id"),
    (("stop", "iris_clf", "--requested-by", "oncall"), "stop needs --env"),
    (("stop", "iris_clf", "canarytest", "extra", "--requested-by", "oncall"), "unexpected argument: extra"),
])
def test_usage_errors(fake, args, message) -> None:
    run, sent = fake
    out = run(*args)
    assert out.returncode == EXIT_USAGE, out
    assert message in out.stderr and out.stdout == ""
    assert sent("deploy.plan") == []


def test_step_gates_positional_ids_and_the_canary_table(fake) -> None:
    """One agent session (deployctl deploy) stops at the first step gate; as each deployctl run starts its own
    agent, the fake is driven in one `deploy` run plus its `approve` answers through `call`-free commands:
    here we check what a person sees: the hint, the progress lines with weights, the table."""
    run, sent = fake
    out = run("-o", "table", "deploy", *PLAN, "--approver", "alice", "--strategy", "canary", "--steps", "10,50,100",
              "--step-gates")
    assert out.returncode == EXIT_OK, out.stderr
    assert f"deployctl approve {ID} --gate step --approver WHO" in out.stderr
    assert f"deployctl abort {ID} --requested-by WHO" in out.stderr
    assert "canary canary_step: weight 10% [v1=90% v2=10%]" in out.stderr
    assert "analysis: analysis pass [v1=90% v2=10%] pass: candidate 100/0/4.5ms, stable 900/0/4.0ms" in out.stderr
    lines = out.stdout.splitlines()
    assert "status               awaiting_step" in lines and "waiting at gate      step" in lines
    table = lines[lines.index("canary:") + 1:]
    assert table == [
        "STEP  WEIGHT  WEIGHTS      ANALYSIS  CANDIDATE req/err/p95  STABLE req/err/p95",
        "1     10%     v1=90 v2=10  -",
        "1     10%     v1=90 v2=10  pass      100/0/4.5ms            900/0/4.0ms",
    ]
    # JSON on a pipe: one object, no table
    piped = run("deploy", *PLAN, "--approver", "alice", "--strategy", "canary", "--step-gates")
    assert json.loads(piped.stdout)["status"] == "awaiting_step"


def test_approve_a_step_gate_by_positional_id(fake) -> None:
    run, sent = fake
    # a fresh fake is not at a gate: the refusal is a domain error, and the params were built right
    out = run("approve", ID, "--approver", "alice", "--gate", "step", "--comment", "ok")
    assert out.returncode == EXIT_DOMAIN
    assert json.loads(out.stdout)["error"]["data"]["reason"] == "not_awaiting_approval"
    assert sent("deploy.approve") == [{"deployment_id": ID, "approver": "alice", "decision": "approve", "gate": "step",
                                       "comment": "ok"}]
    run("approve", "--id", ID, "--approver", "bob", "--gate", "step", "--reject")
    assert sent("deploy.approve")[1]["decision"] == "reject"


def test_abort_and_stop(fake) -> None:
    run, sent = fake
    out = run("abort", ID, "--requested-by", "oncall", "--reason", "p95 doubled")
    # a fresh fake has no canary running: not_abortable is a domain error with the status
    assert out.returncode == EXIT_DOMAIN
    err = json.loads(out.stdout)["error"]
    assert err["data"] == {"reason": "not_abortable", "status": None}
    assert sent("deploy.abort") == [{"deployment_id": ID, "requested_by": "oncall", "reason": "p95 doubled"}]

    out = run("-o", "table", "stop", "iris_clf", "canarytest", "--requested-by", "oncall")
    assert out.returncode == EXIT_OK, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split() == ["slots", "stopped", "blue,", "teal"] for line in lines), out.stdout
    assert any(line.split() == ["status", "stopped"] for line in lines), out.stdout
    out = run("stop", "--model", "iris_clf", "--env", "canarytest", "--requested-by", "oncall", "--reason", "retired")
    assert json.loads(out.stdout)["stopped_slots"] == ["blue", "teal"]
    assert sent("deploy.stop") == [
        {"model_name": "iris_clf", "environment": "canarytest", "requested_by": "oncall"},
        {"model_name": "iris_clf", "environment": "canarytest", "requested_by": "oncall", "reason": "retired"},
    ]


def test_watch_shows_the_weights_per_step(fake) -> None:
    run, sent = fake
    out = run("-o", "table", "status", ID, "--watch")
    assert out.returncode == EXIT_OK, out.stderr
    table = out.stdout.splitlines()[out.stdout.splitlines().index("canary:") + 1:]
    assert [line.split()[:3] for line in table] == [
        ["STEP", "WEIGHT", "WEIGHTS"],
        ["1", "5%", "v1=95"], ["1", "5%", "v1=95"], ["2", "25%", "v1=75"], ["2", "25%", "v1=75"],
        ["3", "50%", "v1=50"], ["3", "50%", "v1=50"], ["4", "100%", "v1=0"],
    ]
    assert sent("deploy.follow") == [{"deployment_id": ID}]


def test_a_failed_analysis_exits_4(fake) -> None:
    run, _ = fake
    out = run("deploy", *PLAN, "--approver", "alice", "--strategy", "canary", FAKE_AGENT_FAIL_AT_STEP="1")
    assert out.returncode == EXIT_DEPLOY_FAILED, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "aborted" and result["error"]["reason"] == "analysis_failed"
    assert result["error"]["code"] == -32009  # an int, whatever the agent wrote


def test_history_traffic_at(fake) -> None:
    run, sent = fake
    out = run("-o", "table", "history", "--model", "iris_clf", "--env", "canarytest", "--traffic-at",
              "2026-12-03T10:00:00Z")
    assert out.returncode == EXIT_OK, out.stderr
    assert sent("history.query") == [{"model_name": "iris_clf", "environment": "canarytest",
                                      "traffic_at": "2026-12-03T10:00:00Z"}]
    lines = out.stdout.splitlines()
    assert lines[lines.index("traffic:") + 1:] == [
        "VERSION  WEIGHT  DEPLOYMENT", "v1       75%     d-v1", f"v2       25%     {ID}"]
