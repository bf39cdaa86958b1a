"""Configuration errors are reported when `serve` starts, not on the first deployment."""

from __future__ import annotations

import json
import subprocess


def serve_once(agent_bin, agent_env, *args):
    return subprocess.run([str(agent_bin), "serve", *args], input=b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n',
                          capture_output=True, env=agent_env, timeout=30)


def test_an_invalid_policy_stops_serve_with_exit_2(agent_bin, agent_env, tmp_path):
    cases = {
        "not json": "{ production: ",
        "unknown field": json.dumps({"version": 1, "environments": {"production": {"four_eys": False}}}),
        "wrong type": json.dumps({"version": 1, "environments": {"staging": {"bake_seconds": "soon"}}}),
    }
    for name, text in cases.items():
        policy = tmp_path / f"{name.replace(' ', '_')}.json"
        policy.write_text(text)
        r = serve_once(agent_bin, agent_env, "--policy", str(policy))
        assert r.returncode == 2, (name, r)
        assert r.stdout == b"", (name, r.stdout)          # nothing on the protocol stream
        assert str(policy).encode() in r.stderr, (name, r.stderr)


def test_a_missing_policy_file_is_an_error_and_a_valid_one_serves(agent_bin, agent_env, tmp_path):
    r = serve_once(agent_bin, agent_env, "--policy", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and b"cannot read" in r.stderr
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"version": 1, "environments": {"qa": {"gates": ["deploy"]}}}))
    r = serve_once(agent_bin, agent_env, "--policy", str(ok))
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_the_policy_in_home_is_checked_too(agent_bin, agent_env, agent_home):
    (agent_home / "policy.json").write_text("[]")
    r = serve_once(agent_bin, agent_env)
    assert r.returncode == 2 and b"policy.json" in r.stderr
