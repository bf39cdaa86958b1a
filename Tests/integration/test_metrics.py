"""Prometheus metrics on the HAProxy router, against the real things: deploy v1 then v2, read metrics_url from
deploy.list, send requests through the endpoint and scrape: the live version's server counters move by what was
sent, the warm one's (weight 0) do not, and the endpoint's own /metrics is still the model's (BentoML's)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import urllib.request

import pytest

from deploy_support import TEST_POLICY, answer, example_tags, stop_everything
from test_stop import RouterDeployer, _haproxy_pids

ENV = "metricsqa"  # an environment of its own: endpoint ports derive from (model, environment)
POLICY = {**TEST_POLICY, "environments": {**TEST_POLICY["environments"],
                                          ENV: {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 900}}}


@pytest.fixture
def deployer(spawn_agent, agent_home, openrpc):
    (agent_home / "policy.json").write_text(json.dumps(POLICY))
    d = RouterDeployer("haproxy", spawn_agent, agent_home, example_tags(), openrpc)
    yield d
    for a in spawn_agent.agents:
        a.close()
    stop_everything(agent_home)
    for pid in _haproxy_pids(agent_home):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def scrape(url: str) -> dict[tuple[str, str, str], float]:
    """haproxy_server_http_responses_total by (proxy, server, code)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith("haproxy_server_http_responses_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        parts = dict(kv.split("=", 1) for kv in labels[labels.index("{") + 1:-1].split(","))
        out[(parts["proxy"].strip('"'), parts["server"].strip('"'), parts["code"].strip('"'))] = float(value)
    return out


def test_per_server_counters_move_with_the_traffic_they_serve(deployer):
    v1 = deployer.deploy("v1", ENV)
    v2 = deployer.deploy("v2", ENV)
    assert v1["status"] == "live" and v2["status"] == "live", (v1, v2)
    (row,) = deployer.call("deploy.list", {"environment": ENV})["result"]["live"]
    url = row["metrics_url"]
    assert url and url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), row
    assert url.rsplit(":", 1)[1].split("/")[0] != v2["endpoint_url"].rsplit(":", 1)[1]
    live_slot, warm_slot = row["slot"], row["standby"]["slot"]
    assert (live_slot, warm_slot) == (v2["slot"], v1["slot"])

    before = scrape(url)
    proxies = {proxy for proxy, _, _ in before}
    assert len(proxies) == 1, proxies  # the endpoint's one backend
    (backend,) = proxies
    sent = 25
    for _ in range(sent):
        answer(v2["endpoint_url"])
    after = scrape(url)
    moved = after[(backend, live_slot, "2xx")] - before.get((backend, live_slot, "2xx"), 0)
    assert moved == sent, (before, after)
    assert after.get((backend, warm_slot, "2xx"), 0) == before.get((backend, warm_slot, "2xx"), 0)

    # The model's own /metrics on the endpoint is BentoML's, not HAProxy's.
    host, port = v2["endpoint_url"][len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics")
    own = conn.getresponse()
    body = own.read().decode()
    assert own.status == 200 and "haproxy_" not in body and "bentoml" in body.lower(), body[:300]
