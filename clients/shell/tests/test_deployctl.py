"""deployctl against the real agent: JSON on stdout, documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SHELL = Path(__file__).resolve().parents[1]
REPO = SHELL.parents[1]
DEPLOYCTL = str(SHELL / "deployctl")

EXIT_OK, EXIT_USAGE, EXIT_AGENT, EXIT_DOMAIN, EXIT_DEPLOY_FAILED = 0, 1, 2, 3, 4


@pytest.fixture
def agent_bin(agent_bin: str, jq: str) -> str:  # the shared fixture, plus jq
    return agent_bin


def deployctl(*args: str, agent_bin: str, home: Path, env: dict[str, str] | None = None, timeout: float = 600):
    full_env = {**os.environ, "MODEL_DEPLOYER_BIN": agent_bin, **(env or {})}
    return subprocess.run(
        [DEPLOYCTL, "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def one_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON object on stdout, got {stdout!r}"
    return json.loads(lines[0])


def test_help_documents_every_exit_code(tmp_path: Path) -> None:
    out = subprocess.run([DEPLOYCTL, "--help"], capture_output=True, text=True)
    assert out.returncode == EXIT_OK
    for code in ("0 ", "1 ", "2 ", "3 ", "4 "):
        assert f"\n  {code}" in out.stdout
    for command in ("plan", "approve", "execute", "rollback", "status", "history"):
        assert f"\n  {command}" in out.stdout


def test_ping(agent_bin: str, tmp_path: Path) -> None:
    out = deployctl("ping", agent_bin=agent_bin, home=tmp_path)
    assert out.returncode == EXIT_OK, out.stderr
    assert one_json(out.stdout) == {}


def test_history_on_an_empty_ledger(agent_bin: str, tmp_path: Path) -> None:
    out = deployctl("history", "--env", "staging", "--limit", "5", agent_bin=agent_bin, home=tmp_path)
    assert out.returncode == EXIT_OK, out.stderr
    assert one_json(out.stdout) == {"deployments": [], "next_cursor": None}


def test_status_of_an_unknown_deployment_is_a_domain_error(agent_bin: str, tmp_path: Path) -> None:
    out = deployctl("status", "--id", "dep_unknown", agent_bin=agent_bin, home=tmp_path)
    assert out.returncode == EXIT_DOMAIN, out.stderr
    error = one_json(out.stdout)["error"]
    assert error["code"] in (-32001, -32602)
    assert "status failed" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--bogus"),
        ("frobnicate",),
        ("status",),  # missing --id
        ("plan", "--model", "iris_clf"),  # missing --version/--env/--requested-by
        ("history", "--limit", "many"),
        ("approve", "--id", "x", "--approver", "a", "--decision", "maybe"),
        ("plan", "--model", "m", "--model-version", "1", "--env", "e", "--requested-by", "r", "--requirements", "{nope"),
        ("status", "--id", "x", "--approver", "a"),  # an option the command does not take
    ],
)
def test_usage_errors_exit_1(args: tuple[str, ...], agent_bin: str, tmp_path: Path) -> None:
    out = deployctl(*args, agent_bin=agent_bin, home=tmp_path)
    assert out.returncode == EXIT_USAGE, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert "deployctl" in out.stderr


def test_invalid_params_from_the_agent_are_domain_errors(agent_bin: str, tmp_path: Path) -> None:
    out = deployctl(
        "plan", "--model", "Bad Name", "--model-version", "1", "--env", "staging", "--requested-by", "ci",
        agent_bin=agent_bin, home=tmp_path,
    )
    assert out.returncode == EXIT_DOMAIN, out.stderr
    assert one_json(out.stdout)["error"]["data"]["reason"] == "invalid_params"


def test_unknown_method_is_an_agent_error(agent_bin: str, tmp_path: Path) -> None:
    out = deployctl("call", "no.such.method", agent_bin=agent_bin, home=tmp_path)
    assert out.returncode == EXIT_AGENT
    assert one_json(out.stdout)["error"]["code"] == -32601


def test_raw_call(agent_bin: str, tmp_path: Path) -> None:
    out = deployctl("call", "history.query", '{"limit": 1}', agent_bin=agent_bin, home=tmp_path)
    assert out.returncode == EXIT_OK, out.stderr
    assert one_json(out.stdout)["deployments"] == []


def test_missing_agent_exits_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [DEPLOYCTL, "--bin", str(tmp_path / "nope"), "ping"], capture_output=True, text=True
    )
    assert out.returncode == EXIT_AGENT
    error = one_json(out.stdout)["error"]
    assert error["data"]["reason"] == "agent_not_found"
    assert error["code"] == -32603  # an integer, like every error code (issue 14: it was null)
    assert str(tmp_path / "nope") in error["message"] and "--bin" in error["message"]


def test_agent_not_on_path_is_a_proper_error(tmp_path: Path, jq: str) -> None:
    env = {"PATH": f"{Path(jq).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}  # no model-deployer there
    out = subprocess.run([DEPLOYCTL, "ping"], capture_output=True, text=True, env=env)
    assert out.returncode == EXIT_AGENT
    error = one_json(out.stdout)["error"]
    assert error == {"code": -32603, "message": error["message"], "data": {"reason": "agent_not_found", "path": None}}
    assert "MODEL_DEPLOYER_BIN" in error["message"]


def test_agent_that_never_answers_times_out(tmp_path: Path) -> None:
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\ncat >/dev/null\n")  # reads requests, answers none, leaves at EOF
    silent.chmod(0o755)
    out = subprocess.run([DEPLOYCTL, "--bin", str(silent), "--timeout", "0.5", "ping"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == EXIT_AGENT
    error = one_json(out.stdout)["error"]
    assert error["data"]["reason"] == "agent_timeout" and error["code"] == -32603


def test_agent_that_dies_exits_2(tmp_path: Path) -> None:
    fake = tmp_path / "dies"
    fake.write_text("#!/bin/sh\necho 'boom: cannot start' >&2\nexit 7\n")
    fake.chmod(0o755)
    out = subprocess.run([DEPLOYCTL, "--bin", str(fake), "ping"], capture_output=True, text=True, timeout=30)
    assert out.returncode == EXIT_AGENT
    error = one_json(out.stdout)["error"]
    assert error["data"]["reason"] == "agent_died" and error["code"] == -32603
    assert "boom: cannot start" in out.stderr  # the agent's stderr tail explains why


def test_pipe_only_example_from_the_readme(agent_bin: str, tmp_path: Path) -> None:
    """README: `printf '...' | model-deployer serve` is all it takes."""
    out = subprocess.run(
        [agent_bin, "serve", "--home", str(tmp_path)],
        input='{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":2,"method":"history.query","params":{"limit":1}}\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert answers[0] == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert answers[1]["result"]["deployments"] == []


def test_scripted_deploys_end_to_end(agent_bin: str, agent_home: Path, iris_store, smoke_test) -> None:
    """plan/approve/execute/status/history/rollback with the iris example; failed rollout exits 4."""
    env = iris_store.env()

    def run(*args: str):
        return deployctl(*args, agent_bin=agent_bin, home=agent_home, env=env)

    smoke_v1 = json.dumps(smoke_test([0])[0])
    plan = run("plan", "--model", iris_store.model_name, "--model-version", iris_store.v1, "--env", "clienttest",
               "--requested-by", "ci", "--smoke-test", smoke_v1)
    assert plan.returncode == EXIT_OK, plan.stderr
    plan_result = one_json(plan.stdout)
    deployment_id = plan_result["deployment_id"]
    assert plan_result["status"] == "awaiting_approval"

    early = run("execute", "--id", deployment_id)  # not approved yet
    assert early.returncode == EXIT_DOMAIN, early.stderr
    assert one_json(early.stdout)["error"]["data"]["reason"] == "approval_required"

    selfish = run("approve", "--id", deployment_id, "--approver", "ci")
    assert selfish.returncode == EXIT_DOMAIN
    assert one_json(selfish.stdout)["error"]["data"]["reason"] == "self_approval_forbidden"

    approve = run("approve", "--id", deployment_id, "--approver", "alice", "--comment", "ok")
    assert approve.returncode == EXIT_OK, approve.stderr
    assert one_json(approve.stdout)["status"] == "approved"

    execute = run("execute", "--id", deployment_id)
    assert execute.returncode == EXIT_OK, execute.stderr
    out = one_json(execute.stdout)
    assert out["status"] == "live" and out["health_check_passed"] is True
    assert "%]" in execute.stderr  # human progress lines on stderr

    nothing = run("rollback", "--model", iris_store.model_name, "--env", "clienttest", "--requested-by", "ci")
    assert nothing.returncode == EXIT_DOMAIN
    assert one_json(nothing.stdout)["error"]["data"]["reason"] == "nothing_to_roll_back"

    broken = run("deploy", "--model", iris_store.model_name, "--model-version", iris_store.broken, "--env",
                 "clienttest", "--requested-by", "ci", "--approver", "alice", "--smoke-test", smoke_v1)
    assert broken.returncode == EXIT_DEPLOY_FAILED, broken.stderr
    failed = one_json(broken.stdout)
    assert failed["status"] in ("failed", "rolled_back")
    assert isinstance(failed["error"]["code"], int), failed["error"]  # one type for error.code (issue 14)

    v2 = run("deploy", "--model", iris_store.model_name, "--model-version", iris_store.v2, "--env", "clienttest",
             "--requested-by", "ci", "--approver", "alice")
    assert v2.returncode == EXIT_OK, v2.stderr
    assert one_json(v2.stdout)["previous_version"] == iris_store.v1

    back = run("rollback", "--model", iris_store.model_name, "--env", "clienttest", "--requested-by", "ci",
               "--reason", "scripted test")
    assert back.returncode == EXIT_OK, back.stderr
    rollback = one_json(back.stdout)
    assert rollback["to_version"] == iris_store.v1 and rollback["deployment_strategy"] == "rollback"

    status = run("status", "--id", rollback["deployment_id"])
    assert status.returncode == EXIT_OK
    assert one_json(status.stdout)["live"]["model_version"] == iris_store.v1

    table = run("--output", "table", "status", "--id", rollback["deployment_id"])
    assert table.returncode == EXIT_OK, table.stderr
    lines = table.stdout.splitlines()
    assert any(line.split() == ["status", "live"] for line in lines), table.stdout
    assert any(line.startswith("live now") and iris_store.v1 in line for line in lines), table.stdout
    assert any(line.split()[:2] == ["AT", "CHANGE"] for line in lines), "the events table"

    failed_rows = run("-o", "table", "history", "--model", iris_store.model_name, "--status", "failed")
    assert failed_rows.returncode == EXIT_OK, failed_rows.stderr
    header, *rows = failed_rows.stdout.splitlines()
    assert header.split() == ["DEPLOYMENT", "MODEL", "VERSION", "ENVIRONMENT", "STRATEGY", "STATUS", "CREATED"]
    assert rows and all(row.split()[5] == "failed" for row in rows)

    history = run("history", "--model", iris_store.model_name, "--env", "clienttest", "--status", "failed",
                  "--status", "rolled_back", "--events")
    assert history.returncode == EXIT_OK, history.stderr
    rows = one_json(history.stdout)["deployments"]
    assert {row["model_version"] for row in rows} >= {iris_store.broken}
    assert all(row["events"] for row in rows)
