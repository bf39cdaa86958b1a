"""End-to-end deployments against the real things: the `model-deployer` binary, BentoML slots serving the
example model, nginx switching traffic, the SQLite ledger. Each test gets its own home (slots, router,
ledger) and stops everything it started."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from deploy_support import (EXPECT, TEST_POLICY, Load, answer, example_tags, slot_processes, smoke,
                            stop_everything, version)

MODEL = "iris_clf"


class Deployer:
    """Drives one agent home through deployments."""

    def __init__(self, spawn_agent, home: Path, tags: dict[str, str], openrpc):
        self.spawn_agent = spawn_agent
        self.home = home
        self.tags = tags
        self.openrpc = openrpc
        self.env = {
            "BENTOML_HOME": os.environ["MODEL_DEPLOYER_TEST_BENTOML_HOME"],
            "MODEL_DEPLOYER_BENTOML": os.environ.get("MODEL_DEPLOYER_BENTOML", "bentoml"),
        }
        self.agent = self.start()

    def start(self):
        return self.spawn_agent(env=self.env)

    def call(self, method: str, params: dict, timeout: float = 180) -> dict:
        resp = self.agent.request(method, params, timeout=timeout)
        if "result" in resp:
            self.openrpc.check_result(method, resp["result"])
        else:
            self.openrpc.check_error(resp["error"], method)
        return resp

    def plan(self, kind: str, env: str, **extra) -> dict:
        params = {"model_name": MODEL, "model_version": version(self.tags, kind), "environment": env,
                  "requested_by": "alice", "smoke_tests": smoke(kind), **extra}
        return self.call("deploy.plan", params)

    def deploy(self, kind: str, env: str = "qa", **extra) -> dict:
        """Plan (+ approve the deploy gate as bob) + execute; returns the execute result."""
        r = self.plan(kind, env, **extra)
        assert "result" in r, r
        d = r["result"]["deployment_id"]
        if r["result"]["status"] == "awaiting_approval":
            a = self.call("deploy.approve", {"deployment_id": d, "approver": "bob", "decision": "approve"})
            assert a["result"]["status"] == "approved", a
        x = self.call("deploy.execute", {"deployment_id": d})
        assert "result" in x, x
        if x["result"]["status"] != "live":
            print("deployment did not go live:", json.dumps(x["result"].get("error")))  # shown when a test fails
        return x["result"]

    def execute_until(self, deployment_id: str, step: str, timeout: float = 120) -> None:
        """Sends deploy.execute (id "exec") and returns once its progress reaches `step`; fails if the
        execution finishes first. Collect the answer later with `agent.wait_response("exec")`."""
        self.agent.send({"jsonrpc": "2.0", "id": "exec", "method": "deploy.execute", "params": {"deployment_id": deployment_id}})
        deadline = time.monotonic() + timeout
        while True:
            f = self.agent.recv(timeout=max(0.1, deadline - time.monotonic()))
            if f.get("method") == "deploy.progress" and f["params"]["step"] == step:
                return
            assert f.get("id") != "exec", f"execute finished before step {step}: {f}"

    def status(self, deployment_id: str) -> dict:
        r = self.call("deploy.status", {"deployment_id": deployment_id})
        assert "result" in r, r
        return r["result"]


@pytest.fixture
def deployer(spawn_agent, agent_home, openrpc):
    tags = example_tags()
    (agent_home / "policy.json").write_text(json.dumps(TEST_POLICY))
    d = Deployer(spawn_agent, agent_home, tags, openrpc)
    yield d
    # The agents first: a running agent repairs a router it finds down, and would restart the nginx
    # that stop_everything stops.
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)


def live_answer(url: str) -> list[int]:
    return json.loads(answer(url))


def test_first_deployment_is_direct_and_serves_v1(deployer):
    out = deployer.deploy("v1")
    assert out["status"] == "live", out
    assert out["deployment_strategy"] == "direct"
    assert out["previous_version"] is None
    assert out["health_check_passed"] is True
    assert set(out["metrics_baseline"]) >= {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "requests_per_second"}
    assert out["metrics_baseline"]["error_rate"] == 0
    assert live_answer(out["endpoint_url"]) == [EXPECT["v1"][0]]
    # Progress was streamed for each step, and the ledger has the whole story.
    steps = [n["params"]["step"] for n in deployer.agent.notifications if n["method"] == "deploy.progress"]
    for step in ("start_slot", "readiness", "smoke_tests", "baseline", "switch", "register"):
        assert step in steps, steps
    for n in deployer.agent.notifications:
        deployer.openrpc.check_notification(n)
    st = deployer.status(out["deployment_id"])
    assert st["deployment"]["status"] == "live"
    assert st["live"]["model_version"] == version(deployer.tags, "v1")
    assert st["slot_alive"] is True
    transitions = [(e["from_status"], e["to_status"]) for e in st["events"] if e["to_status"]]
    assert transitions == [(None, "planned"), ("planned", "deploying"), ("deploying", "validating"),
                           ("validating", "switching"), ("switching", "live")], transitions


def test_blue_green_update_under_load_loses_no_request(deployer):
    v1 = deployer.deploy("v1")
    with Load(v1["endpoint_url"]) as load:
        time.sleep(1)
        v2 = deployer.deploy("v2")
        time.sleep(1.5)
    assert v2["status"] == "live", v2
    assert v2["deployment_strategy"] == "blue_green"
    assert v2["previous_version"] == version(deployer.tags, "v1")
    assert v2["slot"] != v1["slot"]
    assert load.failed == 0, load.failures[:5]
    assert load.ok > 50
    assert load.distinct_answers() == ["[0]", "[10]"], load.distinct_answers()
    # The old version stays warm for rollback.
    procs = slot_processes(deployer.home)
    assert set(procs) == {"blue", "green"}, procs


def test_smoke_test_failure_leaves_live_untouched(deployer):
    v1 = deployer.deploy("v1")
    with Load(v1["endpoint_url"]) as load:
        bad = deployer.deploy("broken")
        time.sleep(0.5)
    assert bad["status"] == "failed", bad
    assert bad["error"]["reason"] == "smoke_test_failed"
    assert bad["error"]["step"] == "smoke_tests"
    assert load.failed == 0, load.failures[:5]
    assert load.distinct_answers() == ["[0]"]
    # The failed slot was torn down; only the live one runs.
    assert set(slot_processes(deployer.home)) == {v1["slot"]}
    st = deployer.status(bad["deployment_id"])
    assert st["live"]["deployment_id"] == v1["deployment_id"]


def test_readiness_failure_leaves_live_untouched(deployer):
    v1 = deployer.deploy("v1", env="tight")    # 1 s startup deadline: BentoML needs several
    assert v1["status"] == "failed", v1
    assert v1["error"]["reason"] == "readiness_failed"
    assert slot_processes(deployer.home) == {}
    # With something live, a version whose process dies while starting changes nothing.
    ok = deployer.deploy("v1", env="qa")
    assert ok["status"] == "live"
    plan = deployer.plan("v2", "qa")["result"]
    new_slot = plan["plan"]["config"]["slot"]
    with Load(ok["endpoint_url"]) as load:
        deployer.execute_until(plan["deployment_id"], "readiness")
        deadline = time.monotonic() + 60
        while new_slot not in slot_processes(deployer.home) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in slot_processes(deployer.home).get(new_slot, []):
            os.kill(pid, signal.SIGKILL)
        x = deployer.agent.wait_response("exec", timeout=120)["result"]
        time.sleep(0.5)
    assert x["status"] == "failed", x
    assert x["error"]["reason"] == "readiness_failed"
    assert load.failed == 0, load.failures[:5]
    assert load.distinct_answers() == ["[0]"]
    assert set(slot_processes(deployer.home)) == {ok["slot"]}


def test_automatic_rollback_when_new_version_dies_during_bake(deployer):
    v1 = deployer.deploy("v1", env="bake")
    assert v1["status"] == "live"
    plan = deployer.plan("v2", "bake")["result"]
    did = plan["deployment_id"]
    # Wait until the bake starts, then kill the new version outright.
    deployer.execute_until(did, "bake")
    new_slot = plan["plan"]["config"]["slot"]
    for pid in slot_processes(deployer.home)[new_slot]:
        os.kill(pid, signal.SIGKILL)
    resp = deployer.agent.wait_response("exec", timeout=120)
    out = resp["result"]
    assert out["status"] == "rolled_back", out
    assert out["error"]["reason"] in ("slot_died", "error_rate_regression"), out
    assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]
    hist = deployer.call("history.query", {"model_name": MODEL, "environment": "bake"})["result"]["deployments"]
    newest = hist[0]
    assert newest["deployment_strategy"] == "rollback" and newest["status"] == "live"
    assert newest["rollback_of"] == did
    assert newest["model_version"] == version(deployer.tags, "v1")


def test_manual_rollback_under_load_is_one_switch(deployer):
    v1 = deployer.deploy("v1")
    v2 = deployer.deploy("v2")
    with Load(v2["endpoint_url"]) as load:
        time.sleep(1)
        t = time.monotonic()
        r = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "qa", "requested_by": "carol",
                                              "reason": "answers look wrong"})
        elapsed = time.monotonic() - t
        time.sleep(1)
    res = r["result"]
    assert res["status"] == "live"
    assert res["deployment_strategy"] == "rollback"
    assert res["rollback_of"] == v2["deployment_id"]
    assert res["to_version"] == version(deployer.tags, "v1")
    assert load.failed == 0, load.failures[:5]
    assert load.distinct_answers() == ["[10]", "[0]"]
    # The figure is reported, not asserted against a wall-clock threshold (see BENCHMARKS.md).
    print(f"rollback: {res['duration_ms']:.0f} ms in the agent, {elapsed * 1000:.0f} ms round trip")
    undone = deployer.status(v2["deployment_id"])["deployment"]
    assert undone["status"] == "rolled_back"
    # Rolling back again must not re-promote v2 (still warm, but rolled back): that is a deployment.
    again = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "qa", "requested_by": "carol"})
    assert again["error"]["data"]["reason"] == "rollback_target_unhealthy", again


def test_rollback_with_nothing_live_is_a_clear_error(deployer):
    r = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "qa", "requested_by": "carol"})
    assert r["error"]["code"] == -32006
    assert r["error"]["data"]["reason"] == "nothing_to_roll_back"
    v1 = deployer.deploy("v1")
    r = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "qa", "requested_by": "carol"})
    assert r["error"]["data"]["reason"] == "nothing_to_roll_back"
    assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]


@pytest.mark.parametrize("step", ["start_slot", "readiness", "smoke_tests", "baseline", "switch"])
def test_kill_9_of_the_agent_mid_step_reconciles(deployer, step):
    v1 = deployer.deploy("v1")
    plan = deployer.plan("v2", "qa")["result"]
    did = plan["deployment_id"]
    agent = deployer.agent
    deployer.execute_until(did, step)
    agent.proc.kill()
    agent.proc.wait()
    # A new agent reconciles on its first call.
    deployer.agent = deployer.start()
    st = deployer.status(did)
    status = st["deployment"]["status"]
    assert status in ("interrupted", "live"), st["deployment"]
    if status == "interrupted":
        assert st["deployment"]["error"]["reason"] == "interrupted"
        assert st["live"]["deployment_id"] == v1["deployment_id"]
        assert set(slot_processes(deployer.home)) == {v1["slot"]}, "the staging slot must be stopped"
        assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]
        assert any(e["step"] == "reconcile" for e in st["events"])
    else:
        assert live_answer(v1["endpoint_url"]) == [EXPECT["v2"][0]]
    # And the next rollout is not blocked.
    nxt = deployer.plan("v2", "qa")
    assert "result" in nxt or nxt["error"]["data"]["reason"] == "already_live", nxt


def test_kill_9_of_the_live_slot_is_reported(deployer):
    v1 = deployer.deploy("v1")
    for pid in slot_processes(deployer.home)[v1["slot"]]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    st = deployer.status(v1["deployment_id"])
    assert st["slot_alive"] is False


def test_gates_four_eyes_and_promotion(deployer):
    r = deployer.plan("v1", "production")["result"]
    assert r["status"] == "awaiting_approval"
    did = r["deployment_id"]
    ex = deployer.call("deploy.execute", {"deployment_id": did})
    assert ex["error"]["data"]["reason"] == "approval_required"
    selfie = deployer.call("deploy.approve", {"deployment_id": did, "approver": "alice", "decision": "approve"})
    assert selfie["error"]["data"]["reason"] == "self_approval_forbidden"
    ok = deployer.call("deploy.approve", {"deployment_id": did, "approver": "bob", "decision": "approve"})
    assert ok["result"]["status"] == "approved"
    twice = deployer.call("deploy.approve", {"deployment_id": did, "approver": "bob", "decision": "approve"})
    assert twice["error"]["data"]["reason"] == "not_awaiting_approval"
    out = deployer.call("deploy.execute", {"deployment_id": did})["result"]
    assert out["status"] == "awaiting_promotion" and out["gate"] == "promote", out
    # Promotion from a second agent process sharing the ledger resumes the rollout.
    other = deployer.start()
    resp = other.request("deploy.approve", {"deployment_id": did, "approver": "bob", "decision": "approve", "gate": "promote"}, timeout=300)
    assert resp["result"]["status"] == "live", resp
    assert resp["result"]["output"]["status"] == "live"
    assert live_answer(resp["result"]["output"]["endpoint_url"]) == [EXPECT["v1"][0]]


def test_second_plan_while_one_is_in_flight_is_refused(deployer):
    first = deployer.plan("v1", "staging")["result"]
    second = deployer.plan("v2", "staging")
    assert second["error"]["code"] == -32002
    assert second["error"]["data"]["reason"] == "rollout_in_progress"
    assert second["error"]["data"]["deployment_id"] == first["deployment_id"]
    rej = deployer.call("deploy.approve", {"deployment_id": first["deployment_id"], "approver": "bob", "decision": "reject"})
    assert rej["result"]["status"] == "rejected"
    again = deployer.call("deploy.approve", {"deployment_id": first["deployment_id"], "approver": "bob", "decision": "approve"})
    assert again["error"]["data"]["reason"] == "not_awaiting_approval"
    assert "result" in deployer.plan("v2", "staging")


def test_cancelling_execute_interrupts_cleanly(deployer):
    v1 = deployer.deploy("v1")
    plan = deployer.plan("v2", "qa")["result"]
    did = plan["deployment_id"]
    agent = deployer.agent
    deployer.execute_until(did, "readiness")
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "exec"}})
    resp = agent.wait_response("exec", timeout=60)
    assert resp["error"]["code"] == -32800, resp
    assert resp["error"]["data"]["reason"] == "cancelled"
    st = deployer.status(did)
    assert st["deployment"]["status"] == "interrupted", st["deployment"]
    assert st["live"]["deployment_id"] == v1["deployment_id"]
    assert set(slot_processes(deployer.home)) == {v1["slot"]}
    assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]


def test_execute_with_the_same_idempotency_key_never_starts_a_second_rollout(deployer):
    plan = deployer.plan("v1", "qa")["result"]
    did = plan["deployment_id"]
    first = deployer.call("deploy.execute", {"deployment_id": did, "idempotency_key": "ci-run-42"})["result"]
    assert first["status"] == "live"
    again = deployer.call("deploy.execute", {"deployment_id": did, "idempotency_key": "ci-run-42"})["result"]
    assert again == first
    other = deployer.call("deploy.execute", {"deployment_id": did, "idempotency_key": "another"})
    assert other["error"]["data"]["reason"] == "not_executable"
    events = deployer.status(did)["events"]
    assert sum(1 for e in events if e["step"] == "execute") == 1
    # The same key on deploy.plan returns the same plan instead of a second one.
    p1 = deployer.plan("v2", "qa", idempotency_key="plan-7")["result"]
    p2 = deployer.plan("v2", "qa", idempotency_key="plan-7")["result"]
    assert p1["deployment_id"] == p2["deployment_id"] and p1["plan_hash"] == p2["plan_hash"]


def test_bad_plans_are_refused_and_leave_nothing_behind(deployer):
    cases = [
        ({"model_name": "no_such_model"}, -32001, "model_not_found"),
        ({"bento": "no_such_bento:abc"}, -32001, "bento_not_found"),
        ({"environment": "moon"}, -32005, "unknown_environment"),
        ({"model_name": "Bad Name"}, -32602, "invalid_params"),
        ({"model_version": "../../etc"}, -32602, "invalid_params"),
        ({"strategy": "canary"}, -32005, "canary_needs_live_version"),
        ({"strategy": "sideways"}, -32602, "invalid_params"),
        ({"smoke_tests": [{"api": "predict"}]}, -32602, "invalid_params"),
        ({"surprise": 1}, -32602, "invalid_params"),
    ]
    for override, code, reason in cases:
        params = {"model_name": MODEL, "model_version": version(deployer.tags, "v1"), "environment": "qa",
                  "requested_by": "alice", **override}
        r = deployer.call("deploy.plan", params)
        assert "error" in r, (override, r)
        assert (r["error"]["code"], r["error"]["data"]["reason"]) == (code, reason), (override, r["error"])
        if code == -32602:
            assert r["error"]["data"]["field"], r["error"]
    hist = deployer.call("history.query", {})["result"]
    assert hist["deployments"] == []
    assert slot_processes(deployer.home) == {}


def test_mcp_tool_call_streams_progress_with_the_callers_token(deployer):
    agent = deployer.agent
    init = agent.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                        "clientInfo": {"name": "test", "version": "1"}})
    assert init["result"]["protocolVersion"] == "2025-06-18"
    agent.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    plan = agent.request("tools/call", {"name": "deploy_plan", "arguments": {
        "model_name": MODEL, "model_version": version(deployer.tags, "v1"), "environment": "qa",
        "requested_by": "agent", "smoke_tests": smoke("v1")}}, timeout=60)["result"]
    assert plan["isError"] is False
    did = plan["structuredContent"]["deployment_id"]
    agent.notifications.clear()
    out = agent.request("tools/call", {"name": "deploy_execute", "arguments": {"deployment_id": did},
                                       "_meta": {"progressToken": 7}}, timeout=180)["result"]
    assert out["isError"] is False
    assert out["structuredContent"]["status"] == "live"
    assert json.loads(out["content"][0]["text"]) == out["structuredContent"]
    progress = [n for n in agent.notifications if n["method"] == "notifications/progress"]
    assert progress, agent.notifications
    assert all(type(n["params"]["progressToken"]) is int and n["params"]["progressToken"] == 7 for n in progress)
    values = [n["params"]["progress"] for n in progress]
    assert values == sorted(values) and values[-1] == 100
    # MCP callers get MCP progress only, not the native notification.
    assert not [n for n in agent.notifications if n["method"] == "deploy.progress"]
    # Approving is not a tool an MCP client (an LLM) gets by default.
    tools = [t["name"] for t in agent.request("tools/list", {})["result"]["tools"]]
    assert "deploy_approve" not in tools
    denied = agent.request("tools/call", {"name": "deploy_approve", "arguments": {}})
    assert denied["error"]["code"] == -32602


def test_an_unanswered_gate_expires_and_frees_the_rollout(deployer):
    first = deployer.plan("v1", "hurry")["result"]        # approval_timeout: 1 s
    assert first["status"] == "awaiting_approval"
    time.sleep(1.5)
    late = deployer.call("deploy.approve", {"deployment_id": first["deployment_id"], "approver": "bob", "decision": "approve"})
    assert late["error"]["code"] == -32004
    assert late["error"]["data"]["reason"] == "approval_expired"
    st = deployer.status(first["deployment_id"])["deployment"]
    assert st["status"] == "expired" and st["error"]["reason"] == "approval_expired"
    # The expired plan no longer holds the (model, environment) rollout lock.
    second = deployer.plan("v1", "hurry")
    assert second["result"]["status"] == "awaiting_approval", second


def test_same_inputs_and_store_give_the_same_plan_hash(deployer):
    first = deployer.plan("v1", "staging")["result"]
    deployer.call("deploy.approve", {"deployment_id": first["deployment_id"], "approver": "bob", "decision": "reject"})
    second = deployer.plan("v1", "staging")["result"]
    assert second["deployment_id"] != first["deployment_id"]
    assert second["plan_hash"] == first["plan_hash"]
    # A different version is a different plan.
    deployer.call("deploy.approve", {"deployment_id": second["deployment_id"], "approver": "bob", "decision": "reject"})
    third = deployer.plan("v2", "staging")["result"]
    assert third["plan_hash"] != first["plan_hash"]


def test_manual_rollback_during_the_bake_wins(deployer):
    v1 = deployer.deploy("v1", env="bake")
    plan = deployer.plan("v2", "bake")["result"]
    did = plan["deployment_id"]
    agent = deployer.agent
    deployer.execute_until(did, "bake")
    rb = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "bake", "requested_by": "carol",
                                           "reason": "looks wrong"})["result"]
    assert rb["status"] == "live" and rb["rollback_of"] == did
    out = agent.wait_response("exec", timeout=120)["result"]
    assert out["status"] == "rolled_back", out
    # The bake noticed and stopped; traffic stays on v1.
    time.sleep(1)
    assert live_answer(v1["endpoint_url"]) == [EXPECT["v1"][0]]
    st = deployer.status(did)
    assert any("bake ended early" in e["message"] for e in st["events"]), [e["message"] for e in st["events"]]


def test_two_rollouts_in_two_environments_run_concurrently(deployer):
    agent = deployer.agent
    ids = {}
    for env in ("qa", "staging"):
        r = deployer.plan("v1", env)["result"]
        if r["status"] == "awaiting_approval":
            deployer.call("deploy.approve", {"deployment_id": r["deployment_id"], "approver": "bob", "decision": "approve"})
        ids[env] = r["deployment_id"]
    for env, did in ids.items():
        agent.send({"jsonrpc": "2.0", "id": f"exec-{env}", "method": "deploy.execute", "params": {"deployment_id": did}})
    outs = {env: agent.wait_response(f"exec-{env}", timeout=180)["result"] for env in ids}
    assert {o["status"] for o in outs.values()} == {"live"}, {env: o.get("error") for env, o in outs.items()}
    assert outs["qa"]["endpoint_url"] != outs["staging"]["endpoint_url"]
    for o in outs.values():
        assert live_answer(o["endpoint_url"]) == [EXPECT["v1"][0]]
    # Each rollout's progress named its own deployment only.
    by_id = {}
    for n in agent.notifications:
        if n["method"] == "deploy.progress":
            by_id.setdefault(n["params"]["deployment_id"], []).append(n["params"]["step"])
    assert set(by_id) >= set(ids.values())
    for did in ids.values():
        st = deployer.status(did)
        assert st["slot_alive"] is True and st["live"]["deployment_id"] == did
