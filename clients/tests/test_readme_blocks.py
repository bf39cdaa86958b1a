"""Every code block of the READMEs runs, so the docs cannot drift from the code (issue 14, "Day two").

Files: README.md, clients/README.md, clients/*/README.md, examples/iris/README.md.

- ``python`` blocks run as scripts (cwd: a temp directory), ``sh``/``bash`` blocks run with ``bash -e -o
  pipefail`` (cwd: the repository), both against the real agent and the iris example store, each in a fresh
  agent home ($MODEL_DEPLOYER_HOME) with the built-in approval policy; `model-deployer`, `deployctl` and the
  venv's `python` are on PATH. Afterwards every deployment the block made must have carried a smoke test and
  must not have failed: a README example puts only a version that works live.
- ``json`` blocks parse; a policy file (an ``environments`` key) must also be accepted by ``serve --policy``.
- A block preceded by ``<!-- excerpt: REASON -->`` is not run (it installs things, needs a Postgres, names a
  placeholder, ...); it must still be valid (``bash -n``, Python syntax, JSON).
- Blocks without a language (diagrams, file trees) are prose.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployer_fixtures import REPO, VENV_BIN, agent_binary, teardown_home

DOCS = sorted(
    {REPO / "README.md", REPO / "clients" / "README.md", REPO / "examples" / "iris" / "README.md",
     *(REPO / "clients").glob("*/README.md")}
)
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
EXCERPT = re.compile(r"^<!--\s*excerpt:\s*(.*?)\s*-->\s*$")
RUNNABLE = {"python", "sh", "bash", "json"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str
    excerpt: str | None
    """Why the block does not run (from its marker), or None."""

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        end = start + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        assert end < len(lines), f"{path}:{start + 1}: the code block is never closed"
        marker = EXCERPT.match(lines[start - 1]) if start > 0 else None
        found.append(Block(path, start + 1, match.group(1), "\n".join(lines[start + 1:end]) + "\n",
                           marker.group(1) if marker else None))
        i = end + 1
    return found


ALL_BLOCKS = [block for path in DOCS for block in blocks_of(path)]
CODE_BLOCKS = [block for block in ALL_BLOCKS if block.language]


def test_the_readmes_have_blocks_and_every_block_is_understood() -> None:
    assert {b.path for b in CODE_BLOCKS} == set(DOCS), "a README without code blocks: is the parser broken?"
    assert sum(1 for b in CODE_BLOCKS if b.excerpt is None and b.language != "json") >= 8
    for block in CODE_BLOCKS:
        assert block.language in RUNNABLE or block.excerpt is not None, (
            f"{block.name}: ```{block.language} blocks cannot run here: mark it <!-- excerpt: why -->"
        )
        assert block.excerpt is None or block.excerpt, f"{block.name}: an excerpt marker needs its reason"


@pytest.mark.parametrize("block", [b for b in CODE_BLOCKS if b.excerpt is not None], ids=lambda b: b.name)
def test_excerpts_are_still_valid(block: Block) -> None:
    if block.language == "python":
        compile(block.text, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    elif block.language in ("sh", "bash"):
        out = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        assert out.returncode == 0, f"{block.name}: {out.stderr}"
    elif block.language == "json":
        json.loads(block.text)


@pytest.mark.parametrize("block", [b for b in CODE_BLOCKS if b.language == "json"], ids=lambda b: b.name)
def test_json_blocks(block: Block, tmp_path: Path) -> None:
    document = json.loads(block.text)
    # A policy file the agent must take; an excerpt's policy may name host files (its marker says so).
    if isinstance(document, dict) and "environments" in document and block.excerpt is None:
        policy = tmp_path / "policy.json"
        policy.write_text(block.text)
        out = subprocess.run(
            [agent_binary(), "serve", "--home", str(tmp_path / "home"), "--policy", str(policy)],
            input='{"jsonrpc":"2.0","id":1,"method":"ping"}\n', capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, f"{block.name}: the agent refused the policy: {out.stderr}"
        assert json.loads(out.stdout) == {"jsonrpc": "2.0", "id": 1, "result": {}}


def ledger_of(agent_bin: str, home: Path, env: dict[str, str]) -> list[dict]:
    if not (home / "deployer.db").exists():
        return []
    out = subprocess.run(
        [agent_bin, "serve", "--home", str(home)],
        input='{"jsonrpc":"2.0","id":1,"method":"history.query","params":{"limit":100}}\n',
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["result"]["deployments"]


RUN_BLOCKS = [b for b in CODE_BLOCKS if b.excerpt is None and b.language in ("python", "sh", "bash")]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.name)
def test_block_runs(block: Block, agent_bin: str, iris_store, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, **iris_store.env()}
    env.pop("MODEL_DEPLOYER_DATABASE_URL", None)  # the blocks use the home's SQLite ledger
    env.update({
        "MODEL_DEPLOYER_HOME": str(home),
        "MODEL_DEPLOYER_BIN": agent_bin,
        "PATH": os.pathsep.join([str(Path(agent_bin).parent), str(REPO / "clients" / "shell"), str(VENV_BIN),
                                 env["PATH"]]),
    })
    if block.language == "python":
        script = work / "block.py"
        script.write_text(block.text)
        argv, cwd = [sys.executable, str(script)], work
    else:
        argv, cwd = ["bash", "-e", "-o", "pipefail", "-c", block.text], REPO
    try:
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (
            f"{block.name} exited {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr[-4000:]}"
        )
        for deployment in ledger_of(agent_bin, home, env):
            what = f"{block.name}: deployment {deployment['deployment_id']} ({deployment['model_version']})"
            assert deployment["status"] not in ("failed", "rolled_back", "interrupted"), f"{what}: {deployment}"
            if deployment["deployment_strategy"] != "rollback":
                assert deployment["plan"]["config"]["smoke_tests"], f"{what} was planned without a smoke test"
    finally:
        teardown_home(home)
