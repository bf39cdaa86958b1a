"""What the LangGraph flow does with its input: the schema tools read, bad input, refusals, and new input on a
thread that already ran (issue 14, "Day two")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import MemorySaver
from langgraph.types import Command

from model_deployer_client import DeployerClient
from model_deployer_client.graph import build_deployment_graph, pending_gate


def test_input_and_output_schemas_can_be_produced() -> None:
    """Tools that read graph schemas call these; on Python < 3.12 a typing.TypedDict state made pydantic refuse."""

    def no_agent() -> DeployerClient:  # the schemas need no agent; a node would fail loudly
        raise AssertionError("no node should run")

    graph = build_deployment_graph(no_agent, checkpointer=MemorySaver())
    schema = graph.get_input_jsonschema()
    assert set(schema["required"]) == {"model_name", "model_version", "environment", "requested_by"}
    assert set(schema["properties"]) == {"model_name", "model_version", "environment", "requested_by", "options"}
    output = graph.get_output_jsonschema()
    assert "refused" in output["properties"]["outcome"]["anyOf"][0]["enum"]


def test_missing_input_is_refused_in_the_state(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            state = await graph.ainvoke(
                {"model_name": "iris_clf", "environment": "staging"}, {"configurable": {"thread_id": "t-missing"}}
            )
            assert state["outcome"] == "refused"
            error = state["error"]
            assert error["code"] == -32602 and error["reason"] == "invalid_params"
            assert error["data"]["missing"] == ["model_version", "requested_by"]
            assert "model_version" in error["message"]
            assert "deployment_id" not in state
            assert (await client.history())["deployments"] == []  # nothing reached the ledger

    asyncio.run(main())


def test_model_not_found_lands_in_the_state(agent_bin: str, agent_home: Path, tmp_path: Path) -> None:
    empty_store = tmp_path / "bentoml"
    empty_store.mkdir()

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env={"BENTOML_HOME": str(empty_store)}) as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            request = {"model_name": "nosuch", "model_version": "latest", "environment": "staging", "requested_by": "ci"}
            state = await graph.ainvoke(request, {"configurable": {"thread_id": "t-notfound"}})
            assert state["outcome"] == "refused"
            assert state["error"]["reason"] == "model_not_found"
            assert state["error"]["code"] == -32001 and isinstance(state["error"]["code"], int)
            assert "__interrupt__" not in state

    asyncio.run(main())


def test_new_input_on_a_thread_that_ran(agent_bin, agent_home, iris_store, smoke_test) -> None:
    """A finished run (refused, then live) is followed by a new run on new input: a new plan, a new deployment.
    New input while the thread's deployment waits at its gate is not taken: the gate asks again, says why."""

    def request(version: str, **options) -> dict:
        return {"model_name": iris_store.model_name, "model_version": version, "environment": "clienttest",
                "requested_by": "ci-bot", "options": options}

    approve = Command(resume={"approver": "alice", "decision": "approve"})

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            config = {"configurable": {"thread_id": "t-reuse"}}

            refused = await graph.ainvoke({**request("latest"), "model_name": "nosuch"}, config)
            assert refused["outcome"] == "refused" and refused["error"]["reason"] == "model_not_found"

            gate = (await graph.ainvoke(request(iris_store.v1, smoke_tests=smoke_test([0])), config))["__interrupt__"]
            assert gate[0].value["model_version"] == iris_store.v1
            first = await graph.ainvoke(approve, config)
            assert first["outcome"] == "live", first
            assert first["error"] is None and first["run"] == 2

            second_gate = await graph.ainvoke(request(iris_store.v2, smoke_tests=smoke_test([10])), config)
            payload = second_gate["__interrupt__"][0].value
            assert payload["gate"] == "deploy" and payload["model_version"] == iris_store.v2
            assert payload["previous_version"] == iris_store.v1
            second_id = second_gate["deployment_id"]
            assert second_id != first["deployment_id"]
            assert "outcome" not in second_gate or second_gate["outcome"] is None  # the old outcome is gone

            busy = await graph.ainvoke(request(iris_store.broken), config)  # the v2 deployment is still at its gate
            payload = busy["__interrupt__"][0].value
            assert payload["error"]["reason"] == "thread_busy"
            assert payload["error"]["ignored_input"] == {"model_version": iris_store.broken}
            assert payload["deployment_id"] == second_id and payload["model_version"] == iris_store.v2
            assert pending_gate(graph.get_state(config))["deployment_id"] == second_id

            done = await graph.ainvoke(approve, config)
            assert done["outcome"] == "live", done
            assert done["deployment_id"] == second_id and done["run"] == 3
            assert done["output"]["previous_version"] == iris_store.v1
            assert done["request"]["model_version"] == iris_store.v2
            history = await client.history(model_name=iris_store.model_name, environment="clienttest")
            assert {d["model_version"] for d in history["deployments"]} == {iris_store.v1, iris_store.v2}

    asyncio.run(main())
