"""`deployctl stop MODEL ENV` against the real agent and the iris example: the model goes down (route and slot
processes gone, `ls` empty, the stop in history with who), a second stop is a domain error (exit 3)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from deployer_fixtures import slot_pids
from test_deployctl import EXIT_DOMAIN, EXIT_OK, EXIT_USAGE, deployctl, one_json

ENV = "clientstop"  # its own environment: endpoint ports derive from (model, environment)


def refused_or_503(url: str) -> bool:
    host, port = url[len("http://"):].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 503
    except ConnectionRefusedError:
        return True
    finally:
        conn.close()


def test_stop_takes_the_model_down(agent_bin: str, agent_home: Path, iris_store) -> None:
    (agent_home / "policy.json").write_text(json.dumps({"environments": {ENV: {"gates": [], "bake_seconds": 0}}}))
    env = iris_store.env()

    def run(*args: str):
        return deployctl(*args, agent_bin=agent_bin, home=agent_home, env=env)

    usage = run("stop", iris_store.model_name, ENV)  # who stops it is required
    assert usage.returncode == EXIT_USAGE and "--requested-by" in usage.stderr

    up = run("deploy", "--model", iris_store.model_name, "--model-version", iris_store.v1, "--env", ENV,
             "--requested-by", "ci", "--approver", "alice")
    assert up.returncode == EXIT_OK, up.stderr
    live = one_json(up.stdout)
    assert live["status"] == "live"
    assert slot_pids(agent_home, live["slot"])

    down = run("-o", "table", "stop", iris_store.model_name, ENV, "--requested-by", "carol", "--reason", "retired")
    assert down.returncode == EXIT_OK, down.stderr
    lines = down.stdout.splitlines()
    assert any(line.split() == ["status", "stopped"] for line in lines), down.stdout
    assert any(line.split() == ["slots", "stopped", live["slot"]] for line in lines), down.stdout
    assert refused_or_503(live["endpoint_url"])
    assert slot_pids(agent_home, live["slot"]) == []

    ls = run("ls")
    assert ls.returncode == EXIT_OK and one_json(ls.stdout) == {"live": []}
    history = run("history", "--model", iris_store.model_name, "--env", ENV, "--status", "stopped", "--events")
    (row,) = one_json(history.stdout)["deployments"]
    assert row["deployment_id"] == live["deployment_id"]
    assert [(e["step"], e["actor"]) for e in row["events"]][-1] == ("stop", "carol")

    again = run("stop", "--model", iris_store.model_name, "--env", ENV, "--requested-by", "carol")
    assert again.returncode == EXIT_DOMAIN, again.stderr
    assert one_json(again.stdout)["error"]["data"]["reason"] == "nothing_deployed"
