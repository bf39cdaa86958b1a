"""Each editor config starts the real agent through the real `mcp` SDK; LSP framing works as LSP.md says.

The configs name the binary with a documented placeholder (see clients/README.md, "Editors"):
`${workspaceFolder}/.build/release/model-deployer` (VS Code, Cursor) or `/usr/local/bin/model-deployer`
(Claude Desktop, Zed). The test substitutes the binary under test for exactly those strings and
otherwise runs the command, args and env the config names.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

EDITORS = Path(__file__).resolve().parents[1]
REPO = EDITORS.parents[1]

PLACEHOLDERS = ("${workspaceFolder}/.build/release/model-deployer", "/usr/local/bin/model-deployer")

# file -> path to its server table
CONFIGS = {
    "vscode-mcp.json": ("servers",),
    "cursor-mcp.json": ("mcpServers",),
    "claude_desktop_config.json": ("mcpServers",),
    "zed-settings.json": ("context_servers",),
}

DEFAULT_TOOLS = {"deploy_plan", "deploy_execute", "deploy_abort", "deploy_rollback", "deploy_status", "deploy_list", "deploy_follow", "history_query"}


def server_entry(name: str) -> dict:
    config = json.loads((EDITORS / name).read_text())
    table = config
    for key in CONFIGS[name]:
        table = table[key]
    assert list(table) == ["model-deployer"], f"{name}: one server named model-deployer"
    return table["model-deployer"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_starts_the_agent_through_the_mcp_sdk(name: str, agent_bin: str, tmp_path: Path) -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    entry = server_entry(name)
    if name == "vscode-mcp.json":
        assert entry["type"] == "stdio"
    if name == "zed-settings.json":
        assert entry["source"] == "custom"
    command = entry["command"]
    assert command in PLACEHOLDERS, f"{name}: command must be a documented placeholder, got {command}"
    assert entry["args"] == ["serve"]
    assert "--mcp-allow-approve" not in entry["args"]  # an LLM must not approve its own deployment
    env = {**entry.get("env", {}), "MODEL_DEPLOYER_HOME": str(tmp_path / "home")}
    assert all("${" not in v for v in env.values()), "env values must not need editor-specific expansion"

    params = StdioServerParameters(command=agent_bin, args=list(entry["args"]), env=env)

    async def main() -> tuple[str, set[str]]:
        with open(tmp_path / "agent.stderr", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    tools = await session.list_tools()
                    return init.serverInfo.name, {t.name for t in tools.tools}

    server_name, tools = asyncio.run(main())
    assert server_name
    assert tools == DEFAULT_TOOLS


def test_lsp_content_length_framing(agent_bin: str, tmp_path: Path) -> None:
    """The exchange shown in LSP.md: Content-Length in, Content-Length out."""
    agent = subprocess.Popen(
        [agent_bin, "serve", "--home", str(tmp_path / "home")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert agent.stdin and agent.stdout
        for request_id, method in ((1, "ping"), (2, "tools/list")):
            body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method}).encode()
            agent.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            agent.stdin.flush()
            header = agent.stdout.readline()
            assert header.startswith(b"Content-Length: ") and header.endswith(b"\r\n")
            assert agent.stdout.readline() == b"\r\n"
            answer = json.loads(agent.stdout.read(int(header.split(b":")[1])))
            assert answer["id"] == request_id
            if method == "ping":
                assert answer["result"] == {}
            else:
                assert {t["name"] for t in answer["result"]["tools"]} == DEFAULT_TOOLS
    finally:
        agent.stdin.close()
        assert agent.wait(10) == 0
