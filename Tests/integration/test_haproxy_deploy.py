"""A real blue-green deployment and rollback with `serve` on the HAProxy router (MODEL_DEPLOYER_ROUTER=haproxy):
the binary, BentoML slots serving the example model, HAProxy changing traffic by runtime commands, the SQLite
ledger. Each test gets its own home and stops everything it started, HAProxy processes included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deploy_support import TEST_POLICY, Load, example_tags, stop_everything, version
from test_deploy import MODEL, Deployer


class HAProxyDeployer(Deployer):
    """The end-to-end deployer with the agent on the HAProxy router."""

    def start(self):
        self.env["MODEL_DEPLOYER_ROUTER"] = "haproxy"
        return self.spawn_agent(env=self.env)


def _haproxy_pids(home: Path) -> dict[str, int]:
    """Live HAProxy processes of the endpoints under `home/router`, by pid file name."""
    out = {}
    for pidfile in (home / "router").glob("ep-*.pid"):
        for line in pidfile.read_text().split():
            try:
                cmd = Path(f"/proc/{int(line)}/cmdline").read_bytes().split(b"\0")
            except (ValueError, OSError):
                continue
            if cmd and cmd[0].split(b"/")[-1].startswith(b"haproxy"):
                out[pidfile.name] = int(line)
    return out


@pytest.fixture
def deployer(spawn_agent, agent_home, openrpc):
    tags = example_tags()
    (agent_home / "policy.json").write_text(json.dumps(TEST_POLICY))
    d = HAProxyDeployer(spawn_agent, agent_home, tags, openrpc)
    yield d
    # The agents first: a running agent restarts a router it finds down.
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)
    for pid in _haproxy_pids(agent_home).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_blue_green_and_rollback_on_haproxy_lose_no_request(deployer):
    v1 = deployer.deploy("v1")
    assert v1["status"] == "live", v1
    router = deployer.home / "router"
    # The endpoint is HAProxy's (its state file, one process per endpoint), and no nginx was set up.
    assert (router / "routes.json").is_file()
    assert not (router / "nginx.conf").exists()
    pids = _haproxy_pids(deployer.home)
    assert len(pids) == 1, pids

    with Load(v1["endpoint_url"]) as load:
        time.sleep(1)
        v2 = deployer.deploy("v2")
        time.sleep(1.5)
    assert v2["status"] == "live", v2
    assert v2["deployment_strategy"] == "blue_green"
    assert v2["previous_version"] == version(deployer.tags, "v1")
    assert v2["endpoint_url"] == v1["endpoint_url"]
    assert load.failed == 0, load.failures[:5]
    assert load.ok > 50
    assert load.distinct_answers() == ["[0]", "[10]"], load.distinct_answers()

    with Load(v2["endpoint_url"]) as load:
        time.sleep(1)
        r = deployer.call("deploy.rollback", {"model_name": MODEL, "environment": "qa", "requested_by": "carol",
                                              "reason": "answers look wrong"})
        time.sleep(1)
    assert "result" in r, r
    res = r["result"]
    assert res["status"] == "live", res
    assert res["deployment_strategy"] == "rollback"
    assert res["rollback_of"] == v2["deployment_id"]
    assert res["to_version"] == version(deployer.tags, "v1")
    assert load.failed == 0, load.failures[:5]
    assert load.ok > 50
    assert load.distinct_answers() == ["[10]", "[0]"], load.distinct_answers()
    print(f"rollback on haproxy: {res['duration_ms']:.0f} ms in the agent")

    st = deployer.status(res["deployment_id"])
    assert st["endpoint_alive"] is True
    assert st["live"]["model_version"] == version(deployer.tags, "v1")
    # Both switches were runtime commands to the same HAProxy process: it was never restarted.
    assert _haproxy_pids(deployer.home) == pids
    # The router's own state: the endpoint serves v1's slot, all of the traffic at HAProxy's full weight; v2,
    # warm again, stays a server at weight 0 (a switch back is a weight change, nothing to drain).
    [route] = json.loads((router / "routes.json").read_text())["routes"]
    assert [(b["name"], b["version"], b["weight"]) for b in route["backends"]] == \
        [(v1["slot"], version(deployer.tags, "v1"), 256), (v2["slot"], version(deployer.tags, "v2"), 0)], route


@pytest.mark.parametrize("args,env,expected", [
    (["--router", "envoy"], {}, "--router must be one of nginx, haproxy (got 'envoy')"),
    ([], {"MODEL_DEPLOYER_ROUTER": "HAProxy"}, "MODEL_DEPLOYER_ROUTER must be one of nginx, haproxy (got 'HAProxy')"),
])
def test_an_unknown_router_stops_serve_with_exit_2(agent_bin, agent_env, args, env, expected):
    p = subprocess.run([str(agent_bin), "serve", *args], env={**agent_env, **env}, input=b"", capture_output=True, timeout=30)
    assert p.returncode == 2, p
    assert p.stdout == b""
    assert expected in p.stderr.decode(), p.stderr
