"""The agent's MCP tools through langchain-mcp-adapters, over one explicit ClientSession (real agent)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_mcp_adapters")

from model_deployer_client.mcp_tools import deployer_session, load_deployer_tools, server_parameters, tool_result  # noqa: E402

@pytest.fixture
def errlog(tmp_path):
    """The agent's stderr (the MCP SDK needs a real file)."""
    with open(tmp_path / "agent.stderr", "w") as f:
        yield f


DEFAULT_TOOLS = {"deploy_plan", "deploy_execute", "deploy_abort", "deploy_rollback", "deploy_status", "deploy_list", "deploy_follow", "history_query"}


def test_tools_over_one_session(agent_bin, agent_home, errlog) -> None:
    async def main() -> None:
        async with deployer_session(agent_bin, home=agent_home, errlog=errlog) as session:
            tools = {t.name: t for t in await load_deployer_tools(session)}
            assert set(tools) == DEFAULT_TOOLS  # no deploy_approve unless allowed
            assert "model_name" in tools["deploy_plan"].args_schema["properties"]
            page = tool_result(await tools["history_query"].ainvoke({"limit": 5}))
            assert page == {"deployments": [], "next_cursor": None}
            # Errors are tool results (isError), with the agent's reason.
            error = tool_result(await tools["deploy_status"].ainvoke({"deployment_id": "01900000-0000-7000-8000-000000000000"}))["error"]
            assert error["data"]["reason"] == "deployment_not_found"
            # A tool call (ToolMessage form) carries the structured result as its artifact.
            message = await tools["history_query"].ainvoke(
                {"name": "history_query", "args": {"limit": 1}, "id": "call-1", "type": "tool_call"}
            )
            assert message.tool_call_id == "call-1"
            assert tool_result(message) == {"deployments": [], "next_cursor": None}

    asyncio.run(main())


def test_allow_approve_lists_deploy_approve(agent_bin, agent_home, errlog) -> None:
    async def main() -> None:
        async with deployer_session(agent_bin, home=agent_home, allow_approve=True, errlog=errlog) as session:
            names = {t.name for t in await load_deployer_tools(session)}
            assert names == DEFAULT_TOOLS | {"deploy_approve"}

    asyncio.run(main())


def test_server_parameters_pass_the_environment(agent_bin, agent_home, monkeypatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", "/somewhere/bentoml")
    params = server_parameters(agent_bin, home=agent_home, database_url="postgres://x/y", env={"EXTRA": "1"})
    assert params.command == agent_bin
    assert params.args == ["serve", "--home", str(agent_home), "--database-url", "postgres://x/y"]
    assert params.env["BENTOML_HOME"] == "/somewhere/bentoml"
    assert params.env["EXTRA"] == "1"


def test_a_whole_deployment_through_tools(agent_bin, agent_home, iris_store, smoke_test, monkeypatch, errlog) -> None:
    """plan -> approve -> execute -> status, all tool calls in the same session (one agent process:
    the plan made by the first call is what the later calls act on)."""
    for key, value in iris_store.env().items():
        monkeypatch.setenv(key, value)

    async def main() -> None:
        async with deployer_session(agent_bin, home=agent_home, allow_approve=True, errlog=errlog) as session:
            tools = {t.name: t for t in await load_deployer_tools(session)}
            plan = tool_result(
                await tools["deploy_plan"].ainvoke(
                    {
                        "model_name": iris_store.model_name,
                        "model_version": iris_store.v1,
                        "environment": "clienttest",
                        "requested_by": "llm-agent",
                        "smoke_tests": smoke_test([0]),
                    }
                )
            )
            assert plan["status"] == "awaiting_approval"
            refused = tool_result(
                await tools["deploy_approve"].ainvoke({"deployment_id": plan["deployment_id"], "approver": "llm-agent", "decision": "approve"})
            )
            assert refused["error"]["data"]["reason"] == "self_approval_forbidden"
            approved = tool_result(
                await tools["deploy_approve"].ainvoke({"deployment_id": plan["deployment_id"], "approver": "alice", "decision": "approve"})
            )
            assert approved["status"] == "approved"
            out = tool_result(await tools["deploy_execute"].ainvoke({"deployment_id": plan["deployment_id"]}))
            assert out["status"] == "live", out
            assert out["health_check_passed"] is True
            status = tool_result(await tools["deploy_status"].ainvoke({"deployment_id": plan["deployment_id"]}))
            assert status["live"]["deployment_id"] == plan["deployment_id"]

    asyncio.run(main())
