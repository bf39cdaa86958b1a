"""deployctl status --watch and deployctl ls against the real agent (issue 14, "Day two"): one deployctl follows a
deployment that other processes approve and execute, and exits with its outcome code; ls shows what is live, the
warm standby and real liveness."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

from deployer_fixtures import kill_slot

from model_deployer_client import SyncDeployerClient

SHELL = Path(__file__).resolve().parents[1]
DEPLOYCTL = str(SHELL / "deployctl")
EXIT_OK, EXIT_DEPLOY_FAILED = 0, 4


def deployctl(*args: str, agent_bin: str, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([DEPLOYCTL, "--home", str(home), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MODEL_DEPLOYER_BIN": agent_bin, **env})


def one_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON object on stdout, got {stdout!r}"
    return json.loads(lines[0])


class Watcher:
    """`deployctl status --id ID --watch` in its own process; its stderr lines are collected as they arrive."""

    def __init__(self, deployment_id: str, *, agent_bin: str, home: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [DEPLOYCTL, "--home", str(home), "status", "--id", deployment_id, "--watch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MODEL_DEPLOYER_BIN": agent_bin, **env},
        )
        self.lines: list[str] = []
        self.first_line = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self.first_line.set()
        self.first_line.set()

    def wait_until_following(self) -> None:
        """Returns once the watcher has printed the deployment's first event (so it is following now)."""
        assert self.first_line.wait(120), "the watcher printed nothing"
        assert self.proc.poll() is None, f"the watcher ended early: {self.lines}"

    def finish(self) -> tuple[int, str, list[str]]:
        assert self.proc.stdout is not None
        stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout=300)
        self._reader.join(30)
        return code, stdout, self.lines


def statuses(lines: list[str]) -> list[str]:
    """The status column of deployctl's progress lines (`[ 40%] validating readiness: ...`)."""
    return [line.split("] ", 1)[1].split()[0] for line in lines if line.startswith("[") and "%] " in line]


def test_watch_follows_a_deployment_run_by_other_processes_to_live(agent_bin, agent_home, iris_store, smoke_test,
                                                                   jq) -> None:
    env = iris_store.env()

    def run(*args: str) -> subprocess.CompletedProcess:
        return deployctl(*args, agent_bin=agent_bin, home=agent_home, env=env)

    plan = run("plan", "--model", iris_store.model_name, "--model-version", iris_store.v1, "--env", "clienttest",
               "--requested-by", "ci", "--smoke-test", json.dumps(smoke_test([0])[0]))
    assert plan.returncode == EXIT_OK, plan.stderr
    deployment_id = one_json(plan.stdout)["deployment_id"]

    watcher = Watcher(deployment_id, agent_bin=agent_bin, home=agent_home, env=env)
    watcher.wait_until_following()  # it waits at the deploy gate: nothing has been approved yet
    assert statuses(watcher.lines) == ["awaiting_approval"]

    approve = run("approve", "--id", deployment_id, "--approver", "alice")
    assert approve.returncode == EXIT_OK, approve.stderr
    execute = run("execute", "--id", deployment_id)
    assert execute.returncode == EXIT_OK, execute.stderr

    code, stdout, lines = watcher.finish()
    assert code == EXIT_OK, lines
    final = one_json(stdout)  # the deployment's ledger row, JSON on a pipe
    assert final["deployment_id"] == deployment_id and final["status"] == "live"
    assert final["model_version"] == iris_store.v1 and final["approved_by"] == "alice"
    seen = statuses(lines)
    assert seen[0] == "awaiting_approval" and seen[-1] == "live"
    assert {"approved", "deploying", "validating"} <= set(seen), lines
    assert any("smoke_tests:" in line for line in lines), lines

    again = run("-q", "status", "--id", deployment_id, "--watch")  # already over: answers at once, same code
    assert again.returncode == EXIT_OK and again.stderr == ""
    assert one_json(again.stdout)["status"] == "live"


def test_watch_exits_with_the_failure_code_when_the_version_fails(agent_bin, agent_home, iris_store, smoke_test,
                                                                  jq) -> None:
    """The broken example answers 500 to predict: its smoke test fails, the rollout fails, the watcher exits 4."""
    env = iris_store.env()
    with SyncDeployerClient(agent_bin, home=agent_home, env=env, progress="off") as client:
        plan = client.plan(iris_store.model_name, iris_store.broken, "development", "ci", smoke_tests=smoke_test([0]))
        deployment_id = plan["deployment_id"]
        watcher = Watcher(deployment_id, agent_bin=agent_bin, home=agent_home, env=env)
        watcher.wait_until_following()
        out = client.execute(deployment_id)  # executed by the Python client, in another agent process
        assert out["status"] in ("failed", "rolled_back"), out

    code, stdout, lines = watcher.finish()
    assert code == EXIT_DEPLOY_FAILED, lines
    final = one_json(stdout)
    assert final["deployment_id"] == deployment_id and final["status"] == out["status"]
    assert isinstance(final["error"]["code"], int) and final["error"]["reason"]
    assert statuses(lines)[-1] in ("failed", "rolled_back")
    assert lines[-1].startswith(f"deployctl: deployment {deployment_id} {out['status']}")


def test_ls_shows_live_standby_and_a_killed_slot(agent_bin, agent_home, iris_store, smoke_test, jq) -> None:
    env = iris_store.env()

    def run(*args: str) -> subprocess.CompletedProcess:
        return deployctl(*args, agent_bin=agent_bin, home=agent_home, env=env)

    empty = run("ls")
    assert empty.returncode == EXIT_OK and one_json(empty.stdout) == {"live": []}
    ids = {}
    for version, answer in ((iris_store.v1, [0]), (iris_store.v2, [10])):
        deploy = run("deploy", "--model", iris_store.model_name, "--model-version", version, "--env", "clientwarm",
                     "--requested-by", "ci", "--approver", "alice", "--smoke-test", json.dumps(smoke_test(answer)[0]))
        assert deploy.returncode == EXIT_OK, deploy.stderr
        ids[version] = one_json(deploy.stdout)["deployment_id"]

    listed = run("ls")  # piped: JSON
    assert listed.returncode == EXIT_OK, listed.stderr
    (row,) = one_json(listed.stdout)["live"]
    assert (row["model_name"], row["environment"], row["model_version"]) == (iris_store.model_name, "clientwarm",
                                                                            iris_store.v2)
    assert row["deployment_id"] == ids[iris_store.v2]
    assert row["slot_alive"] is True and row["endpoint_alive"] is True and row["in_flight"] is None
    standby = row["standby"]
    assert standby["model_version"] == iris_store.v1 and standby["deployment_id"] == ids[iris_store.v1]
    assert standby["alive"] is True and standby["slot"] != row["slot"]

    assert one_json(run("ls", "--env", "clienttest").stdout) == {"live": []}
    assert one_json(run("ls", "--model", iris_store.model_name, "--env", "clientwarm").stdout)["live"] == [row]

    table = run("-o", "table", "ls")
    header, line = table.stdout.splitlines()
    assert header.split() == ["MODEL", "ENV", "VERSION", "ENDPOINT", "LIVE(slot/endpoint)", "STANDBY", "IN-FLIGHT", "METRICS"]
    assert line.split() == [iris_store.model_name, "clientwarm", iris_store.v2, row["endpoint_url"], "up/up",
                            iris_store.v1, "(up)", "-", row["metrics_url"] or "-"]

    kill_slot(agent_home, row["slot"])
    after = one_json(run("ls").stdout)["live"]
    assert [r["model_version"] for r in after] == [iris_store.v2]  # still the registered version...
    assert after[0]["slot_alive"] is False  # ...but its slot is gone, and ls says so
    assert after[0]["standby"]["alive"] is True
    assert run("-o", "table", "ls").stdout.splitlines()[1].split()[4].startswith("DOWN/")
