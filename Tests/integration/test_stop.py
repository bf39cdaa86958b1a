"""deploy.stop against the real things, on both routers: the binary, BentoML slots serving the example model,
nginx or HAProxy in front, the SQLite ledger. Deploy v1 and v2, stop: the endpoint's port refuses (or answers
503), every slot process is gone, the ledger records who stopped it, nothing is listed live, a restarted agent
leaves it stopped; a second stop is nothing_deployed, and a deployment after the stop is a first one."""

from __future__ import annotations

import http.client
import json
import os
import signal
from pathlib import Path

import pytest

from deploy_support import EXPECT, TEST_POLICY, example_tags, slot_processes, stop_everything
from test_deploy import MODEL, Deployer, live_answer

ENV = "stopqa"  # an environment of its own: endpoint ports derive from (model, environment)
POLICY = {**TEST_POLICY, "environments": {**TEST_POLICY["environments"],
                                          ENV: {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 900}}}


class RouterDeployer(Deployer):
    def __init__(self, router: str, *args):
        self.router = router
        super().__init__(*args)

    def start(self):
        self.env["MODEL_DEPLOYER_ROUTER"] = self.router
        return self.spawn_agent(env=self.env)


def _haproxy_pids(home: Path) -> list[int]:
    out = []
    for pidfile in (home / "router").glob("ep-*.pid"):
        for line in pidfile.read_text().split():
            try:
                cmd = Path(f"/proc/{int(line)}/cmdline").read_bytes().split(b"\0")
            except (ValueError, OSError):
                continue
            if cmd and cmd[0].split(b"/")[-1].startswith(b"haproxy"):
                out.append(int(line))
    return out


@pytest.fixture(params=["nginx", "haproxy"])
def deployer(request, spawn_agent, agent_home, openrpc):
    (agent_home / "policy.json").write_text(json.dumps(POLICY))
    d = RouterDeployer(request.param, spawn_agent, agent_home, example_tags(), openrpc)
    yield d
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)
    for pid in _haproxy_pids(agent_home):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def endpoint_refuses(url: str) -> bool:
    """True when nothing serves the endpoint: the connection is refused, or the router answers 503."""
    host, port = url[len("http://"):].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/predict", body=json.dumps({"input": [[5.1, 3.5, 1.4, 0.2]]}),
                     headers={"Content-Type": "application/json"})
        return conn.getresponse().status == 503
    except ConnectionRefusedError:
        return True
    finally:
        conn.close()


def stop(deployer, **extra) -> dict:
    return deployer.call("deploy.stop", {"model_name": MODEL, "environment": ENV, "requested_by": "carol", **extra})


def test_stop_takes_the_model_down_and_a_deploy_after_it_works(deployer):
    v1 = deployer.deploy("v1", ENV)
    v2 = deployer.deploy("v2", ENV)
    assert v1["status"] == "live" and v2["status"] == "live", (v1, v2)
    url = v2["endpoint_url"]
    assert live_answer(url) == [EXPECT["v2"][0]]
    assert set(slot_processes(deployer.home)) == {v1["slot"], v2["slot"]}
    if deployer.router == "haproxy":
        assert len(_haproxy_pids(deployer.home)) == 1

    r = stop(deployer, reason="model retired")
    assert "result" in r, r
    out = r["result"]
    assert out["deployment"]["deployment_id"] == v2["deployment_id"] and out["deployment"]["status"] == "stopped"
    assert out["stopped_slots"] == sorted([v1["slot"], v2["slot"]])
    assert endpoint_refuses(url)
    assert slot_processes(deployer.home) == {}   # deploy.stop answers once the processes are gone
    if deployer.router == "haproxy":
        assert _haproxy_pids(deployer.home) == []

    # The ledger: who stopped it and why; nothing live in any view.
    events = deployer.status(v2["deployment_id"])["events"]
    assert (events[-1]["step"], events[-1]["actor"], events[-1]["to_status"]) == ("stop", "carol", "stopped")
    assert events[-1]["data"]["reason"] == "model retired"
    assert deployer.call("deploy.list", {})["result"]["live"] == []
    live = deployer.call("history.query", {"model_name": MODEL, "environment": ENV, "status": "live"})["result"]
    assert live["deployments"] == []

    # A new agent reconciles (and watches the router): it leaves the pair stopped.
    deployer.agent.close()
    deployer.agent = deployer.start()
    assert deployer.call("deploy.list", {})["result"]["live"] == []
    assert endpoint_refuses(url) and slot_processes(deployer.home) == {}

    again = stop(deployer)
    assert again["error"]["code"] == -32006 and again["error"]["data"]["reason"] == "nothing_deployed", again

    v3 = deployer.deploy("v1", ENV)
    assert v3["status"] == "live" and v3["deployment_strategy"] == "direct" and v3["previous_version"] is None, v3
    assert live_answer(v3["endpoint_url"]) == [EXPECT["v1"][0]]
    rows = deployer.call("deploy.list", {})["result"]["live"]
    assert [(row["deployment_id"], row["endpoint_alive"]) for row in rows] == [(v3["deployment_id"], True)]


def test_stop_is_refused_while_a_rollout_waits_at_the_promotion_gate(deployer):
    deployer.deploy("v1", ENV)
    plan = deployer.plan("v2", ENV, gates=["promote"])["result"]
    x = deployer.call("deploy.execute", {"deployment_id": plan["deployment_id"]})["result"]
    assert x["status"] == "awaiting_promotion", x
    r = stop(deployer)
    assert r["error"]["code"] == -32002 and r["error"]["data"]["reason"] == "rollout_in_progress", r
    assert r["error"]["data"]["deployment_id"] == plan["deployment_id"]
