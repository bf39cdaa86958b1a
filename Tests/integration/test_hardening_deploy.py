"""Hardening of deployments against the real things (the binary, BentoML slots, the router, the SQLite ledger):
rollbacks cannot be gamed, idempotency keys cannot hand out another caller's plan, one damaged ledger row
does not hide the others, and a killed router is noticed and repaired. The router tests that look at nginx's
own processes and files run the agent with `--router nginx` (MODEL_DEPLOYER_ROUTER=nginx), the others on the
default router (HAProxy)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from deploy_support import EXPECT, TEST_POLICY, example_tags, nginx_pids, stop_everything, version
from test_deploy import MODEL, Deployer, deployer, live_answer  # noqa: F401 - the fixture is used by name


@pytest.fixture
def nginx_deployer(spawn_agent, agent_home, openrpc):
    """The end-to-end deployer with the agent on the nginx router (still selectable, and kept tested)."""
    (agent_home / "policy.json").write_text(json.dumps(TEST_POLICY))
    d = Deployer(spawn_agent, agent_home, example_tags(), openrpc, router="nginx")
    yield d
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)


def _rollback(deployer, **extra):
    return deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "qa", "requested_by": "carol", **extra})


def test_a_second_rollback_does_not_repromote_what_was_rolled_back(deployer):
    deployer.deploy("v1")
    v2 = deployer.deploy("v2")
    first = _rollback(deployer, reason="answers look wrong")["result"]
    assert first["to_version"] == version(deployer.tags, "v1")
    assert live_answer(v2["endpoint_url"]) == [EXPECT["v1"][0]]
    # v2 is still warm in its slot, but it was rolled back: rolling back again must not bring it back.
    again = _rollback(deployer)
    assert again["error"]["code"] == -32006, again
    assert again["error"]["data"]["reason"] == "rollback_target_unhealthy"
    assert "deploy.plan" in again["error"]["message"]
    named = _rollback(deployer, to_version=version(deployer.tags, "v2"))
    assert named["error"]["data"]["reason"] == "rollback_target_unhealthy"
    # The same through MCP: a tool result with isError, traffic untouched.
    agent = deployer.agent
    agent.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
    mcp = agent.request("tools/call", {"name": "deploy_rollback", "arguments": {
        "model_name": MODEL, "environment": "qa", "requested_by": "agent"}})
    assert mcp["result"]["isError"] is True
    assert "rollback_target_unhealthy" in json.dumps(mcp["result"])
    assert live_answer(v2["endpoint_url"]) == [EXPECT["v1"][0]]
    # Bringing v2 back is a deployment, with its plan (and gates, where the environment has them).
    back = deployer.deploy("v2")
    assert back["status"] == "live" and back["deployment_strategy"] == "blue_green"


def test_cold_rollback_finds_the_version_behind_a_warm_switch_record(deployer):
    v1 = deployer.deploy("v1")
    deployer.deploy("v2")
    _rollback(deployer)                       # v1 live again through a warm-switch record (short plan)
    deployer.deploy("v2")                     # v2 live again; v1's newest row is that warm-switch record
    broken = deployer.plan("broken", "qa")["result"]
    failed = deployer.call("deploy.execute", {"deployment_id": broken["deployment_id"]})["result"]
    assert failed["status"] == "failed"
    assert isinstance(failed["error"]["code"], int), failed["error"]
    r = _rollback(deployer, to_version=version(deployer.tags, "v1"))
    assert "result" in r, r
    assert r["result"]["status"] == "live"
    assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]


def test_an_idempotency_key_reused_with_other_content_is_refused(deployer):
    key = "ci-pipeline-17"
    alice = deployer.plan("v1", "qa", idempotency_key=key)["result"]
    same = deployer.plan("v1", "qa", idempotency_key=key)["result"]
    assert same["deployment_id"] == alice["deployment_id"]
    mallory = deployer.call("deploy.plan", {"model_name": MODEL, "model_version": version(deployer.tags, "v2"),
                                            "environment": "qa", "requested_by": "mallory", "idempotency_key": key})
    assert mallory["error"]["code"] == -32002, mallory
    assert mallory["error"]["data"]["reason"] == "idempotency_key_conflict"
    assert mallory["error"]["data"]["deployment_id"] == alice["deployment_id"]
    # Other smoke tests under the same key are another request too.
    other = deployer.plan("v1", "qa", idempotency_key=key, smoke_tests=[{"api": "predict", "input": {"input": [[1, 2, 3, 4]]}}])
    assert other["error"]["data"]["reason"] == "idempotency_key_conflict"
    # Concurrently: two different requests with one fresh key; one wins, the other is refused.
    agent = deployer.agent
    base = {"model_name": MODEL, "environment": "bake", "idempotency_key": "race-1"}
    agent.send({"jsonrpc": "2.0", "id": "a", "method": "deploy.plan",
                "params": {**base, "model_version": version(deployer.tags, "v1"), "requested_by": "alice"}})
    agent.send({"jsonrpc": "2.0", "id": "b", "method": "deploy.plan",
                "params": {**base, "model_version": version(deployer.tags, "v2"), "requested_by": "mallory"}})
    answers = {i: agent.wait_response(i, timeout=60) for i in ("a", "b")}
    outcomes = sorted("result" if "result" in a else a["error"]["data"]["reason"] for a in answers.values())
    assert outcomes in (["idempotency_key_conflict", "result"], ["result", "rollout_in_progress"]), answers


def test_one_undecodable_row_does_not_fail_the_history_page(deployer):
    a = deployer.plan("v1", "qa")["result"]
    b = deployer.plan("v1", "bake")["result"]
    db = sqlite3.connect(deployer.home / "deployer.db")
    with db:
        db.execute("UPDATE ml_deployments SET status = 'paused_by_a_newer_agent' WHERE deployment_id = ?", (a["deployment_id"],))
    db.close()
    page = deployer.call("history.query", {"include_events": True})["result"]
    assert [d["deployment_id"] for d in page["deployments"]] == [b["deployment_id"]]
    assert [u["deployment_id"] for u in page["unreadable"]] == [a["deployment_id"]]
    assert "status" in page["unreadable"][0]["problem"]
    # The agent's log names it too.
    assert a["deployment_id"] in deployer.agent.stderr_path.read_text()


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_killed_router_is_noticed_and_repaired(nginx_deployer):
    deployer = nginx_deployer
    v1 = deployer.deploy("v1")
    v2 = deployer.deploy("v2")
    master = int((deployer.home / "router" / "run" / "nginx.pid").read_text())
    # Only the master is killed: its orphaned worker keeps the port (and the old routes).
    os.kill(master, signal.SIGKILL)
    # The running agent notices by itself (it checks every 2 s) and restarts the router; the wait is
    # bounded generously for a loaded machine, the figure is not asserted.
    t = time.monotonic()
    new_master = _wait_for(lambda: _alive_master(deployer.home, other_than=master), 30, "a new nginx master")
    print(f"router repaired {time.monotonic() - t:.1f} s after the kill")
    assert live_answer(v2["endpoint_url"]) == [EXPECT["v2"][0]]
    assert all(p == new_master or _parent(p) == new_master for p in nginx_pids(deployer.home)), "an orphan survived"
    st = deployer.status(v2["deployment_id"])
    assert st["endpoint_alive"] is True
    assert any(e["step"] == "router_repair" for e in st["events"])
    # A switch works on the repaired router (before, it failed with "Address already in use").
    r = _rollback(deployer)
    assert r["result"]["status"] == "live", r
    assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]


def test_status_says_when_the_endpoint_does_not_answer(deployer):
    v1 = deployer.deploy("v1")
    assert deployer.status(v1["deployment_id"])["endpoint_alive"] is True
    from deploy_support import slot_processes
    for pid in slot_processes(deployer.home)[v1["slot"]]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    st = deployer.status(v1["deployment_id"])
    assert st["slot_alive"] is False and st["endpoint_alive"] is False


def test_a_rollback_that_fails_at_the_switch_is_recorded(nginx_deployer):
    deployer = nginx_deployer
    deployer.deploy("v1")
    v2 = deployer.deploy("v2")
    # Someone leaves a broken file in the router's config: nginx -t refuses every change from now on.
    (deployer.home / "router" / "conf.d" / "zz-broken.conf").write_text("this is not nginx configuration;\n")
    r = _rollback(deployer, reason="drill")
    assert r["error"]["code"] == -32008, r
    failed_id = r["error"]["data"]["deployment_id"]
    rec = deployer.status(failed_id)["deployment"]
    assert rec["status"] == "failed" and rec["deployment_strategy"] == "rollback"
    assert rec["rollback_of"] == v2["deployment_id"]
    assert rec["error"]["step"] == "switch" and rec["error"]["code"] == -32008
    # Traffic never moved.
    assert live_answer(v2["endpoint_url"]) == [EXPECT["v2"][0]]
    (deployer.home / "router" / "conf.d" / "zz-broken.conf").unlink()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _alive_master(home: Path, other_than: int) -> int | None:
    try:
        pid = int((home / "router" / "run" / "nginx.pid").read_text())
    except (OSError, ValueError):
        return None
    if pid == other_than or not Path(f"/proc/{pid}").exists():
        return None
    return pid
