"""The official MCP Python SDK and langchain-mcp-adapters talk to `model-deployer serve` over stdio."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

UNKNOWN_ID = "01900000-0000-7000-8000-000000000000"
DEFAULT_TOOLS = {"deploy_plan", "deploy_execute", "deploy_abort", "deploy_rollback", "deploy_status", "deploy_list", "deploy_follow", "history_query"}


def server_params(agent_bin, agent_env, *args):
    return StdioServerParameters(command=str(agent_bin), args=["serve", *args], env=agent_env)


def run(coro_fn, timeout=60):
    async def main():
        with anyio.fail_after(timeout):
            return await coro_fn()
    return anyio.run(main)


def test_sdk_initializes_lists_tools_and_calls_them(agent_bin, agent_env):
    progress_seen = []

    async def on_progress(progress, total, message):
        progress_seen.append((progress, total, message))

    async def scenario():
        async with stdio_client(server_params(agent_bin, agent_env)) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.serverInfo.name == "model-deployer"
                assert init.protocolVersion  # the SDK refuses versions it does not support
                assert init.capabilities.tools is not None

                await session.send_ping()

                tools = (await session.list_tools()).tools
                names = {t.name for t in tools}
                assert names == DEFAULT_TOOLS, names
                for t in tools:
                    assert t.inputSchema["type"] == "object"
                    assert t.outputSchema is not None and t.outputSchema.get("type") == "object", t.name
                    assert t.description

                # A successful call: structuredContent is validated by the SDK against outputSchema.
                r = await session.call_tool("history_query", {})
                assert r.isError is False, r
                assert r.structuredContent == {"deployments": [], "next_cursor": None}
                assert json.loads(r.content[0].text) == r.structuredContent

                r = await session.call_tool("history_query", {"model_name": "iris", "limit": 5})
                assert r.isError is False and r.structuredContent["deployments"] == []

                # A domain failure is a tool result with isError, not a protocol error.
                r = await session.call_tool("deploy_status", {"deployment_id": UNKNOWN_ID},
                                            progress_callback=on_progress)
                assert r.isError is True, r
                text = r.content[0].text
                assert "deployment_not_found" in text, text

                # Bad arguments are a tool execution error the model can read and correct (MCP 2025-11-25,
                # SEP-1303): isError, with the code, reason and offending field.
                r = await session.call_tool("history_query", {"limit": "ten"})
                assert r.isError is True, r
                assert r.structuredContent["error"]["code"] == -32602
                assert r.structuredContent["error"]["reason"] == "invalid_params"
                assert r.structuredContent["error"]["field"] == "limit"
                assert json.loads(r.content[0].text) == r.structuredContent
                r = await session.call_tool("deploy_plan", {"model_name": "iris", "model_version": "1", "environment": "staging",
                                                            "requested_by": "alice", "requirements": {"memory_mb": 1e19}})
                assert r.isError is True and r.structuredContent["error"]["field"] == "requirements.memory_mb", r
                # An unknown tool stays a protocol error, raised by the SDK as McpError.
                from mcp.shared.exceptions import McpError
                with pytest.raises(McpError) as e:
                    await session.call_tool("no_such_tool", {})
                assert e.value.error.code == -32602

    run(scenario)
    # deploy_status of an unknown id finishes at once: no progress is expected, and none may be malformed.
    for progress, total, message in progress_seen:
        assert 0 <= progress <= 100 and total == 100


def test_sdk_sees_deploy_approve_only_when_allowed(agent_bin, agent_env):
    async def scenario():
        async with stdio_client(server_params(agent_bin, agent_env, "--mcp-allow-approve")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return {t.name for t in (await session.list_tools()).tools}

    assert run(scenario) == DEFAULT_TOOLS | {"deploy_approve"}


def test_langchain_mcp_adapters_load_and_invoke_a_tool(agent_bin, agent_env):
    from langchain_mcp_adapters.tools import load_mcp_tools

    async def scenario():
        async with stdio_client(server_params(agent_bin, agent_env)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await load_mcp_tools(session)
                by_name = {t.name: t for t in tools}
                assert set(by_name) == DEFAULT_TOOLS
                out = await by_name["history_query"].ainvoke({"limit": 3})
                # content_and_artifact tools return the content: text blocks (or a string) carrying the JSON.
                if isinstance(out, list):
                    text = "".join(b["text"] if isinstance(b, dict) else getattr(b, "text", str(b)) for b in out)
                else:
                    text = str(out)
                assert json.loads(text) == {"deployments": [], "next_cursor": None}

                # A domain failure reaches the model as an error message it can read (handle_tool_errors).
                err = await by_name["deploy_status"].ainvoke({"deployment_id": UNKNOWN_ID})
                assert "deployment_not_found" in json.dumps(err, default=str)

                # The tool schema the model sees comes from the contract.
                schema = by_name["deploy_plan"].args_schema
                schema = schema if isinstance(schema, dict) else schema.model_json_schema()
                assert {"model_name", "model_version", "environment", "requested_by"} <= set(schema["required"])

    run(scenario)
