"""Three slots per (model, environment) against the real things (the binary, BentoML slots serving the example
model, the default router, the SQLite ledger): a candidate never takes the live slot nor the warm previous one,
so after failed attempts a rollback is still one switch to a version that kept running, with no slot started."""

from __future__ import annotations

import json
import socket
import time

import pytest

from deploy_support import EXPECT, TEST_POLICY, Load, example_tags, slot_processes, stop_everything, version
from test_deploy import MODEL, Deployer, live_answer

ENV = "slots3"  # an environment of its own: its ports do not meet other tests' endpoints
ENV_SHORT = "slots3w"  # the same with a short keep-warm time: the warm version retires within the test


@pytest.fixture
def deployer(spawn_agent, agent_home, openrpc):
    policy = json.loads(json.dumps(TEST_POLICY))
    policy["environments"][ENV] = {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 900}
    policy["environments"][ENV_SHORT] = {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 3}
    (agent_home / "policy.json").write_text(json.dumps(policy))
    d = Deployer(spawn_agent, agent_home, example_tags(), openrpc)
    yield d
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)


def test_failed_attempts_keep_the_warm_version_and_rollback_is_one_switch(deployer):
    v1 = deployer.deploy("v1", env=ENV)
    assert v1["status"] == "live" and v1["slot"] == "blue", v1
    url = v1["endpoint_url"]
    with Load(url) as load:
        time.sleep(1)
        v2 = deployer.deploy("v2", env=ENV)
        assert v2["status"] == "live" and v2["slot"] == "green", v2
        warm = slot_processes(deployer.home)
        assert set(warm) == {"blue", "green"}, warm

        # Two failed attempts (the broken version fails its smoke test): each runs in teal and only teal stops.
        for attempt in (1, 2):
            planned = deployer.plan("broken", ENV)["result"]
            assert planned["plan"]["config"]["slot"] == "teal", planned["plan"]["config"]
            reasons = planned["plan"]["reasons"]
            assert any(r.startswith("slots: the rollout keeps 3 slots running at once (live ") for r in reasons), reasons
            bad = deployer.call("deploy.execute", {"deployment_id": planned["deployment_id"]})["result"]
            assert bad["status"] == "failed" and bad["error"]["reason"] == "smoke_test_failed", (attempt, bad)
            assert slot_processes(deployer.home) == warm, f"attempt {attempt} touched a kept slot"

        listed = deployer.call("deploy.list", {"model_name": MODEL, "environment": ENV})["result"]["live"]
        assert [(e["model_version"], e["slot"], e["standby"]["slot"]) for e in listed] == \
            [(version(deployer.tags, "v2"), "green", "blue")], listed

        # The rollback is one switch back to blue, which kept running through both attempts.
        t = time.monotonic()
        r = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": ENV, "requested_by": "carol",
                                              "reason": "after two failed attempts"})
        elapsed = time.monotonic() - t
        time.sleep(1)
    res = r["result"]
    assert res["status"] == "live" and res["to_version"] == version(deployer.tags, "v1"), res
    print(f"rollback after two failed attempts: {res['duration_ms']:.1f} ms in the agent, {elapsed * 1000:.1f} ms round trip")
    rec = deployer.status(res["deployment_id"])
    assert rec["deployment"]["slot"] == "blue" and rec["deployment"]["plan"]["kind"] == "switch_to_warm", rec["deployment"]
    assert not any(e["step"] in ("start_slot", "readiness") for e in rec["events"]), rec["events"]
    # The same processes serve: nothing was started or restarted for the rollback.
    assert slot_processes(deployer.home) == warm
    assert load.failed == 0, load.failures[:5]
    assert load.ok > 50
    assert [a for _, a in load.answers][-1] == "[0]"
    assert live_answer(url) == [EXPECT["v1"][0]]


def test_going_live_retires_the_older_warm_version(deployer):
    """v1 (blue) -> v2 (green) -> rolled back to v1 (blue live, v2 warm in green) -> v2 again takes teal; once it
    is live, v1 in blue is the warm version and green (the older warm one) is stopped."""
    v1 = deployer.deploy("v1", env=ENV)
    deployer.deploy("v2", env=ENV)
    r = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": ENV, "requested_by": "carol"})
    assert r["result"]["status"] == "live", r
    with Load(v1["endpoint_url"]) as load:
        time.sleep(0.5)
        again = deployer.deploy("v2", env=ENV)
        time.sleep(1)
    assert again["status"] == "live" and again["slot"] == "teal", again
    assert set(slot_processes(deployer.home)) == {"blue", "teal"}
    st = deployer.status(again["deployment_id"])
    assert st["live"]["previous_version"] == version(deployer.tags, "v1")
    assert any(e["step"] == "retire_previous" and e["message"].startswith("stopped slot green") for e in st["events"]), st["events"]
    assert load.failed == 0, load.failures[:5]
    assert [a for _, a in load.answers][-1] == "[10]"


def _haproxy_servers(home, port: int) -> list[tuple[str, int]]:
    """(server, weight) of the endpoint's backend as its running HAProxy has them (`show servers state`)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(str(home / "router" / f"ep-{port}.sock"))
        c.sendall(b"show servers state\n")
        text = b""
        while chunk := c.recv(65536):
            text += chunk
    lines = text.decode().splitlines()
    header = next(l for l in lines if l.startswith("# be_id")).lstrip("# ").split()
    rows = [dict(zip(header, l.split())) for l in lines if l and not l.startswith("#") and len(l.split()) > 5]
    return [(r["srv_name"], int(r["srv_uweight"])) for r in rows]


def test_a_retired_warm_version_leaves_the_router(deployer):
    """v1 (blue) -> v2 (green): v1 stays warm, attached at weight 0. When its keep-warm time is over its slot is
    stopped and its server leaves HAProxy's backend and routes.json, with no request lost."""
    v1 = deployer.deploy("v1", env=ENV_SHORT)
    url = v1["endpoint_url"]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    routes = deployer.home / "router" / "routes.json"
    with Load(url) as load:
        time.sleep(0.5)
        v2 = deployer.deploy("v2", env=ENV_SHORT)
        assert v2["status"] == "live" and v2["slot"] == "green", v2
        # Right after the switch: blue is the warm version, a server at weight 0.
        assert sorted(_haproxy_servers(deployer.home, port)) == [("blue", 0), ("green", 256)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "blue" in slot_processes(deployer.home):
            time.sleep(0.2)
        assert set(slot_processes(deployer.home)) == {"green"}
        # The server leaves right after its slot stopped (the same timer).
        while time.monotonic() < deadline and len(_haproxy_servers(deployer.home, port)) > 1:
            time.sleep(0.1)
        time.sleep(0.5)
    assert _haproxy_servers(deployer.home, port) == [("green", 256)]
    [route] = [r for r in json.loads(routes.read_text())["routes"] if r["environment"] == ENV_SHORT]
    assert [(b["name"], b["weight"]) for b in route["backends"]] == [("green", 256)], route
    st = deployer.status(v2["deployment_id"])
    assert st["live"]["previous_slot"] is None, st["live"]
    assert any(e["step"] == "retire_previous" and e["message"] == "stopped the previous slot blue after 3 s warm; its server left the router"
               for e in st["events"]), st["events"]
    assert load.failed == 0, load.failures[:5]
    assert [a for _, a in load.answers][-1] == "[10]"
