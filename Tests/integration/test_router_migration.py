"""Upgrading a home whose endpoints nginx serves (the release before HAProxy became the default router): the
agent started with the default router on that home moves each endpoint to HAProxy once, on the same port with
the same live slot, then stops nginx. Real BentoML, nginx and HAProxy."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from deploy_support import TEST_POLICY, Load, example_tags, haproxy_pids, nginx_pids, stop_everything, version
from test_deploy import MODEL, Deployer

ENV = "migrate"


@pytest.fixture
def home_with_nginx(spawn_agent, agent_home):
    tags = example_tags()
    policy = json.loads(json.dumps(TEST_POLICY))
    policy["environments"][ENV] = {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 900}
    (agent_home / "policy.json").write_text(json.dumps(policy))
    yield tags
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)


def _udp_port_holder(port: int) -> set[int]:
    """Pids holding a UDP socket bound to 127.0.0.1:`port`."""
    inodes = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == f"0100007F:{port:04X}":
            inodes.add(f"socket:[{f[9]}]")
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if any(os.readlink(f"/proc/{d}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{d}/fd")):
                    out.add(int(d))
            except OSError:
                pass
    return out


def test_an_nginx_home_moves_to_haproxy_once_and_then_deploys_and_rolls_back(spawn_agent, agent_home, openrpc, home_with_nginx):
    tags = home_with_nginx
    # The home as the release before left it: v1 live behind the home's nginx, the agent gone, nginx serving.
    old = Deployer(spawn_agent, agent_home, tags, openrpc, router="nginx")
    v1 = old.deploy("v1", ENV)
    assert v1["status"] == "live", v1
    url = v1["endpoint_url"]
    old.agent.close()
    assert nginx_pids(agent_home), "the home's nginx should outlive its agent"
    assert not (agent_home / "router" / "routes.json").exists()

    # The new agent, default router, with a client on the endpoint throughout its start.
    with Load(url, threads=1, keep_alive=False) as probe, Load(url) as load0:
        time.sleep(0.5)
        new = Deployer(spawn_agent, agent_home, tags, openrpc)
        listed = new.call("deploy.list", {})
        time.sleep(0.5)
    assert load0.failed == 0, load0.failures[:5]
    assert load0.distinct_answers() == ["[0]"], load0.distinct_answers()
    # Every answer is v1's, and none failed: HAProxy bound the port beside nginx before nginx let go of it.
    print(f"takeover: {probe.ok + probe.failed} probes on new connections, {probe.failed} failed {sorted(set(probe.failures))}")
    assert probe.ok > 0 and probe.distinct_answers() == ["[0]"], probe.distinct_answers()
    assert probe.failed == 0, sorted(set(probe.failures))

    live = [e for e in listed["result"]["live"] if e["environment"] == ENV]
    assert len(live) == 1, listed
    assert live[0]["endpoint_url"] == url
    assert live[0]["model_version"] == version(tags, "v1")
    assert live[0]["endpoint_alive"] is True
    assert live[0]["metrics_url"], live[0]          # HAProxy's exporter: the endpoint is HAProxy's now
    assert len(haproxy_pids(agent_home)) == 1
    assert nginx_pids(agent_home) == [], "the home's nginx is stopped once HAProxy serves its endpoints"
    err = new.agent.stderr_tail(20000)
    moved = [json.loads(l) for l in err.splitlines() if "endpoint moved from nginx to HAProxy" in l]
    assert len(moved) == 1 and moved[0]["port"] == url.rsplit(":", 1)[1], err[-3000:]
    print("log line:", json.dumps(moved[0]))
    assert moved[0]["refused_ms"] == "0" and moved[0]["slot"] == "blue" and moved[0]["version"] == version(tags, "v1"), moved
    # The ledger records the move on the live deployment (written once the agent opened its ledger).
    events = new.status(v1["deployment_id"])["events"]
    takeover = [e for e in events if e["step"] == "router_takeover"]
    assert len(takeover) == 1, events
    assert takeover[0]["data"] == {"port": int(url.rsplit(":", 1)[1]), "slot": "blue", "from": "nginx", "to": "haproxy",
                                   "refused_ms": 0}, takeover

    # Blue-green to v2, then rollback, under load: nothing fails.
    with Load(url) as load:
        time.sleep(1)
        v2 = new.deploy("v2", ENV)
        time.sleep(1)
    assert v2["status"] == "live", v2
    assert v2["endpoint_url"] == url
    # The HAProxy started at the takeover sends its request log (the bake's and the canary's per-version
    # figures) to the port the agent's engine reads.
    log_port = int((agent_home / "router" / "log.port").read_text())
    configs = list((agent_home / "router").glob("ep-*.cfg"))
    assert configs and all(f"log 127.0.0.1:{log_port} " in c.read_text() for c in configs)
    assert _udp_port_holder(log_port) == {new.agent.proc.pid}
    assert load.failed == 0, load.failures[:5]
    assert load.distinct_answers() == ["[0]", "[10]"], load.distinct_answers()
    with Load(url) as load:
        time.sleep(1)
        rb = new.call("deploy.rollback", {"model_name": MODEL, "environment": ENV, "requested_by": "carol", "reason": "upgrade check"})
        time.sleep(1)
    assert "result" in rb, rb
    assert rb["result"]["status"] == "live", rb
    assert rb["result"]["to_version"] == version(tags, "v1")
    assert load.failed == 0, load.failures[:5]
    assert load.distinct_answers() == ["[10]", "[0]"], load.distinct_answers()
    assert nginx_pids(agent_home) == []

    # A second start finds nothing to move (the takeover is once).
    new.agent.close()
    again = Deployer(spawn_agent, agent_home, tags, openrpc)
    again.call("deploy.list", {})
    assert "nginx to HAProxy" not in again.agent.stderr_tail(20000)
    again.agent.close()

    # The other way round is refused, clearly: nginx cannot take HAProxy's endpoints.
    back = spawn_agent(env={**again.env, "MODEL_DEPLOYER_ROUTER": "nginx"})
    assert back.wait(timeout=30) == 2
    assert "--router haproxy" in back.stderr_tail()
    assert nginx_pids(agent_home) == []
