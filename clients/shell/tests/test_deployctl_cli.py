"""deployctl for people: its own --version, per-command help, JSON on a pipe and a table on a terminal,
bash completion that offers what the help documents (issue 14, "Day two")."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import subprocess
from pathlib import Path

import pytest

SHELL = Path(__file__).resolve().parents[1]
DEPLOYCTL = str(SHELL / "deployctl")
COMPLETION = SHELL / "deployctl.bash-completion"
COMMANDS = ("plan", "approve", "execute", "deploy", "abort", "rollback", "stop", "status", "ls", "history", "ping",
            "call")
EXIT_OK, EXIT_USAGE, EXIT_DOMAIN = 0, 1, 3


@pytest.fixture
def agent_bin(agent_bin: str, jq: str) -> str:
    return agent_bin


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DEPLOYCTL, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_version_is_deployctls_own(agent_bin: str) -> None:
    out = run("--version", env={"MODEL_DEPLOYER_BIN": agent_bin})
    assert out.returncode == EXIT_OK, out.stderr
    first, second = out.stdout.splitlines()
    assert re.fullmatch(r"deployctl \d+\.\d+\.\d+", first)
    assert second.startswith("agent: model-deployer ") and agent_bin in second


@pytest.mark.parametrize("command", ["plan", "deploy", "history"])
def test_the_old_model_version_flag_is_refused_with_a_hint(command: str, agent_bin: str, tmp_path: Path) -> None:
    """Before the rename `--version VER` was the model version; a script still using it must not get our
    version on stdout and exit 0."""
    out = run("--home", str(tmp_path), command, "--model", "iris_clf", "--version", "latest", "--env", "staging",
              "--requested-by", "ci", env={"MODEL_DEPLOYER_BIN": agent_bin})
    assert out.returncode == EXIT_USAGE
    assert out.stdout == ""
    assert "--model-version" in out.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(command: str) -> None:
    for args in ((command, "--help"), ("help", command), ("--help", command), (command, "-h")):
        out = run(*args)
        assert out.returncode == EXIT_OK, (args, out.stderr)
        assert out.stdout.startswith(f"usage: deployctl {command}"), (args, out.stdout)
        assert "Commands:" not in out.stdout, f"{args} printed the global help"


def test_help_of_an_unknown_command_is_a_usage_error() -> None:
    out = run("help", "frobnicate")
    assert out.returncode == EXIT_USAGE and "unknown command: frobnicate" in out.stderr


def test_output_table_and_json(agent_bin: str, tmp_path: Path) -> None:
    env = {"MODEL_DEPLOYER_BIN": agent_bin}
    piped = run("--home", str(tmp_path), "history", env=env)
    assert json.loads(piped.stdout) == {"deployments": [], "next_cursor": None}  # a pipe gets JSON by default
    table = run("--home", str(tmp_path), "--output", "table", "history", env=env)
    assert table.returncode == EXIT_OK and table.stdout == "no deployments\n"
    refused = run("--home", str(tmp_path), "-o", "table", "status", "--id", "01900000-0000-7000-8000-000000000000", env=env)
    assert refused.returncode == EXIT_DOMAIN
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in refused.stdout.splitlines()}
    assert rows["reason"] == "deployment_not_found" and rows["code"] == "-32001"
    assert run("--output", "yaml", "ping", env=env).returncode == EXIT_USAGE


def test_a_terminal_gets_a_table(agent_bin: str, tmp_path: Path) -> None:
    """Without --output, stdout on a terminal gets the table; the same command on a pipe got JSON above."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([DEPLOYCTL, "--home", str(tmp_path), "history"], stdout=terminal,
                                stderr=subprocess.PIPE, env={**os.environ, "MODEL_DEPLOYER_BIN": agent_bin})
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == EXIT_OK
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert b"".join(chunks).decode().strip() == "no deployments"


def complete(line: str) -> list[str]:
    """What bash completion offers for `line` (the cursor at its end)."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    script = (
        f"source {shlex.quote(str(COMPLETION))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_deployctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_completion_of_commands_and_values() -> None:
    assert complete("deployctl hi") == ["history"]
    assert set(complete("deployctl ")) == {*COMMANDS, "help"}
    assert complete("deployctl --home /tmp/x st") == ["stop", "status"]  # an option's value is not the command
    assert complete("deployctl stop iris qa --re") == ["--requested-by", "--reason"]
    assert complete("deployctl plan --strategy blu") == ["blue_green"]
    assert complete("deployctl approve --id x --decision ") == ["approve", "reject"]
    assert complete("deployctl -o t") == ["table"]
    assert "--model-version" in complete("deployctl history --mod")
    assert "--approver" not in complete("deployctl history --")


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("ping", "call")])
def test_completion_offers_exactly_the_documented_options(command: str) -> None:
    """The completion file and `deployctl help COMMAND` list the same options, so they cannot drift apart."""
    documented = set(re.findall(r"--[a-z][a-z-]+", run("help", command).stdout.split("\n\n")[0]))
    offered = set(complete(f"deployctl {command} --"))
    global_options = set(complete("deployctl --"))
    assert offered - global_options == documented
