"""Day-two views against the real things: what is live now (deploy.list) with real liveness, and following a
rollout that another agent process executes (deploy.follow), reading the shared ledger: SQLite (the follower
polls) and Postgres (the follower is woken by LISTEN/NOTIFY)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from deploy_support import EXPECT, slot_processes, version
from test_deploy import MODEL, deployer, live_answer  # noqa: F401 - the fixture is used by name


def test_list_shows_what_is_live_with_its_standby_and_real_liveness(deployer):
    v1 = deployer.deploy("v1")
    v2 = deployer.deploy("v2")
    rows = deployer.call("deploy.list", {})["result"]["live"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["model_name"], row["environment"], row["model_version"]) == (MODEL, "qa", version(deployer.tags, "v2"))
    assert row["deployment_id"] == v2["deployment_id"] and row["endpoint_url"] == v2["endpoint_url"]
    assert row["slot_alive"] is True and row["endpoint_alive"] is True
    assert row["standby"]["model_version"] == version(deployer.tags, "v1")
    assert row["standby"]["deployment_id"] == v1["deployment_id"] and row["standby"]["alive"] is True
    assert row["in_flight"] is None
    plan = deployer.plan("v1", "qa")["result"]
    row = deployer.call("deploy.list", {"model_name": MODEL, "environment": "qa"})["result"]["live"][0]
    assert row["in_flight"]["deployment_id"] == plan["deployment_id"]
    assert deployer.call("deploy.list", {"environment": "production"})["result"]["live"] == []
    # A killed live slot shows at once: the listing checks the processes and the endpoint, not the ledger.
    for pid in slot_processes(deployer.home)[v2["slot"]]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    row = deployer.call("deploy.list", {})["result"]["live"][0]
    assert row["slot_alive"] is False and row["endpoint_alive"] is False


class PostgresLedger:
    """A database of its own on the test server, for agents to share (MODEL_DEPLOYER_DATABASE_URL)."""

    def __init__(self, base: str):
        self.base = base
        self.name = "follow_" + uuid.uuid4().hex[:12]
        self.url = base.rsplit("/", 1)[0] + "/" + self.name
        subprocess.run(["psql", base, "-X", "-q", "-c", f"CREATE DATABASE {self.name}"], check=True)

    def listeners(self) -> int:
        """Sessions of this database listening for ledger events (a follower on Postgres holds one)."""
        out = subprocess.run(["psql", self.base, "-XAtc",
                              "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'model-deployer-listen'"
                              f" AND datname = '{self.name}'"], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())

    def wait_listeners(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.listeners() != n:
            assert time.monotonic() < deadline, f"expected {n} listening session(s), have {self.listeners()}"
            time.sleep(0.1)

    def drop(self) -> None:
        subprocess.run(["psql", self.base, "-X", "-q", "-c", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"], check=False)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, deployer):
    """The deployer's agents on an SQLite ledger (None), or moved onto a Postgres ledger of their own."""
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get("MODEL_DEPLOYER_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("MODEL_DEPLOYER_TEST_DATABASE_URL unset under CI")
        pytest.skip("needs a Postgres: set MODEL_DEPLOYER_TEST_DATABASE_URL (scripts/test.sh does)")
    pg = PostgresLedger(base)
    try:
        deployer.agent.close()
        deployer.env["MODEL_DEPLOYER_DATABASE_URL"] = pg.url
        deployer.agent = deployer.start()
        yield pg
        for a in deployer.spawn_agent.agents:
            a.close()
    finally:
        pg.drop()


def test_follow_sees_a_rollout_executed_by_another_agent(deployer, ledger):
    deployer.deploy("v1")
    plan = deployer.plan("v2", "qa")["result"]
    did = plan["deployment_id"]
    watcher = deployer.spawn_agent(env=deployer.env)     # a second process, sharing the ledger
    watcher.send({"jsonrpc": "2.0", "id": "follow", "method": "deploy.follow", "params": {"deployment_id": did}})
    if ledger:
        ledger.wait_listeners(1)                         # the follower waits on LISTEN, not on a poll
    else:
        time.sleep(0.5)
    out = deployer.call("deploy.execute", {"deployment_id": did})["result"]
    assert out["status"] == "live"
    answer = watcher.wait_response("follow", timeout=60)
    deployer.openrpc.check_result("deploy.follow", answer["result"])
    assert answer["result"]["deployment"]["status"] == "live"
    seen = [f for f in watcher.notifications if f.get("method") == "deploy.progress"]
    for n in seen:
        deployer.openrpc.check_notification(n)
    steps = [n["params"]["step"] for n in seen]
    assert steps[0] == "plan", steps
    # Every event the executing agent recorded reached the follower, once each and in order.
    recorded = deployer.status(did)["events"]
    assert answer["result"]["last_seq"] == recorded[-1]["seq"]
    assert [(n["params"]["step"], n["params"]["message"]) for n in seen] == [(e["step"], e["message"]) for e in recorded]
    if ledger:
        ledger.wait_listeners(0)                         # the listening connection ends with the follow
    for step in ("execute", "switch"):
        assert step in steps, steps
    assert seen[-1]["params"]["progress"] == 100
    # Each event carries the status in effect when it happened, so progress never goes back.
    values = [n["params"]["progress"] for n in seen]
    assert values == sorted(values), [(n["params"]["step"], n["params"]["status"], n["params"]["progress"]) for n in seen]
    assert live_answer(out["endpoint_url"]) == [EXPECT["v2"][0]]
    # Resuming after the last event sends nothing more and answers at once.
    again = watcher.request("deploy.follow", {"deployment_id": did, "after_seq": answer["result"]["last_seq"]})
    assert again["result"]["last_seq"] == answer["result"]["last_seq"]


def test_follow_can_be_cancelled_while_a_gate_waits(deployer, ledger):
    plan = deployer.plan("v1", "hurry")["result"]
    assert plan["status"] == "awaiting_approval"
    agent = deployer.agent
    agent.send({"jsonrpc": "2.0", "id": "f", "method": "deploy.follow", "params": {"deployment_id": plan["deployment_id"]}})
    if ledger:
        ledger.wait_listeners(1)                         # cancellation must reach a follower blocked on LISTEN
    else:
        time.sleep(0.6)
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "f"}})
    r = agent.wait_response("f", timeout=10)
    assert r["error"]["code"] == -32800
    if ledger:
        ledger.wait_listeners(0)


def test_mcp_tools_list_the_known_environments_and_say_who_approves(deployer):
    agent = deployer.agent
    agent.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
    tools = {t["name"]: t for t in agent.request("tools/list", {})["result"]["tools"]}
    known = sorted({"production", "staging", "development", "qa", "bake", "tight", "hurry"})
    assert tools["deploy_plan"]["inputSchema"]["properties"]["environment"]["enum"] == known
    assert tools["deploy_list"]["inputSchema"]["properties"]["environment"]["enum"] == known
    r = agent.request("tools/call", {"name": "deploy_plan", "arguments": {
        "model_name": MODEL, "model_version": version(deployer.tags, "v1"), "environment": "hurry",
        "requested_by": "agent", "smoke_tests": [{"api": "predict", "input": {"input": [[5.1, 3.5, 1.4, 0.2]]}}]}}, timeout=60)["result"]
    assert r["isError"] is False and r["structuredContent"]["status"] == "awaiting_approval"
    did = r["structuredContent"]["deployment_id"]
    guidance = r["content"][1]["text"]
    assert f"deployctl approve --id {did} --gate deploy" in guidance
    assert "You cannot approve it" in guidance
    # An unknown environment is a tool error the model can read and correct.
    bad = agent.request("tools/call", {"name": "deploy_plan", "arguments": {
        "model_name": MODEL, "model_version": "latest", "environment": "moon", "requested_by": "agent"}})["result"]
    assert bad["isError"] is True and bad["structuredContent"]["error"]["reason"] == "unknown_environment"


def test_follow_sees_each_bake_window(deployer):
    deployer.deploy("v1", "bake")
    plan = deployer.plan("v2", "bake")["result"]             # the "bake" environment bakes for 25 s
    did = plan["deployment_id"]
    watcher = deployer.spawn_agent(env=deployer.env)
    watcher.send({"jsonrpc": "2.0", "id": "follow", "method": "deploy.follow", "params": {"deployment_id": did}})
    out = deployer.call("deploy.execute", {"deployment_id": did})["result"]
    assert out["status"] == "live", out.get("error")
    answer = watcher.wait_response("follow", timeout=120)
    assert answer["result"]["deployment"]["status"] == "live"
    windows = [n["params"] for n in watcher.notifications
               if n.get("method") == "deploy.progress" and n["params"]["message"].startswith("bake window:")]
    assert len(windows) >= 3, windows
    for w in windows:
        assert w["step"] == "bake_window" and "(limit " in w["message"] and "p95" in w["message"]
    # The bake's end follows its windows.
    steps = [n["params"]["message"] for n in watcher.notifications if n.get("method") == "deploy.progress"]
    assert any(m.startswith("bake passed") for m in steps[steps.index(windows[-1]["message"]):]), steps[-5:]
