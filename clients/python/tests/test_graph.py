"""The LangGraph deployment flow end to end with the real agent, BentoML and nginx (the iris example).

Skipped unless MODEL_DEPLOYER_TEST_BENTOML_HOME names a BentoML store (see clients/README.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import MemorySaver
from langgraph.types import Command

from model_deployer_client import DeployerClient
from model_deployer_client.graph import build_deployment_graph, pending_gate

HERE = Path(__file__).resolve().parent


def predict(endpoint: str, body: dict) -> object:
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/predict", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def request_for(store, version: str, env: str = "clienttest", **options) -> dict:
    return {
        "model_name": store.model_name,
        "model_version": version,
        "environment": env,
        "requested_by": "ci-bot",
        "options": options,
    }


def interrupt_of(result: dict) -> dict:
    assert "__interrupt__" in result, f"expected the graph to wait at a gate, got {result}"
    return result["__interrupt__"][0].value


async def deploy_v1(client: DeployerClient, store, smoke_test) -> dict:
    """Puts v1 live with the plain client (no graph) so later tests have something to replace."""
    plan = await client.plan(store.model_name, store.v1, "clienttest", "ci-bot", smoke_tests=smoke_test([0]))
    await client.approve(plan["deployment_id"], "alice")
    out = await client.execute(plan["deployment_id"])
    assert out["status"] == "live", out
    return out


def test_whole_flow_with_both_gates(agent_bin, agent_home, iris_store, smoke_test) -> None:
    """clientprod has a deploy and a promote gate: plan -> gate -> (self-approval refused) -> gate -> execute
    -> promote gate -> live -> verify; progress reaches the callback and stream_mode="custom"."""
    notes: list[dict] = []

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver(), on_progress=notes.append)
            config = {"configurable": {"thread_id": "e2e-1"}}
            first = await graph.ainvoke(
                request_for(iris_store, iris_store.v1, "clientprod", smoke_tests=smoke_test([0])), config
            )
            gate = interrupt_of(first)
            assert gate["gate"] == "deploy"
            assert gate["deployment_id"] == first["deployment_id"]
            assert gate["model_version"] == iris_store.v1
            assert gate["reasons"], "the gate shows the plan's reasons to the approver"
            assert pending_gate(graph.get_state(config)) == gate

            # Four eyes: the requester cannot approve; the graph asks again and says why.
            again = await graph.ainvoke(Command(resume={"approver": "ci-bot", "decision": "approve"}), config)
            gate = interrupt_of(again)
            assert gate["gate"] == "deploy"
            assert gate["error"]["reason"] == "self_approval_forbidden"

            custom: list[dict] = []
            final_state = None
            async for mode, chunk in graph.astream(
                Command(resume={"approver": "alice", "decision": "approve", "comment": "lgtm"}),
                config,
                stream_mode=["custom", "values"],
            ):
                if mode == "custom":
                    custom.append(chunk)
                else:
                    final_state = chunk
            gate = pending_gate(graph.get_state(config))
            assert gate is not None and gate["gate"] == "promote"
            assert gate["health_check_passed"] is True
            assert final_state["status"] == "awaiting_promotion"

            done = await graph.ainvoke(Command(resume={"approver": "bob", "decision": "approve"}), config)
            assert "__interrupt__" not in done
            assert done["outcome"] == "live", done
            assert done["verification"]["passed"] is True
            output = done["output"]
            assert isinstance(output["deployment_timestamp"], datetime)
            assert output["health_check_passed"] is True
            assert output["deployment_id"] == done["deployment_id"]
            assert predict(output["endpoint_url"], {"input": [[5.1, 3.5, 1.4, 0.2]]}) == [0]

            assert any(c.get("deploy.progress", {}).get("deployment_id") == done["deployment_id"] for c in custom)
            assert notes and all(n["deployment_id"] == done["deployment_id"] for n in notes)
            assert notes[-1]["status"] == "live"

            status = await client.status(done["deployment_id"])
            assert status["deployment"]["status"] == "live"
            assert status["deployment"]["approved_by"] in ("alice", "bob")
            assert status["live"]["deployment_id"] == done["deployment_id"]

    asyncio.run(main())


def test_rejection_at_the_gate(agent_bin, agent_home, iris_store) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            config = {"configurable": {"thread_id": "reject-1"}}
            interrupt_of(await graph.ainvoke(request_for(iris_store, iris_store.v1), config))
            done = await graph.ainvoke(
                Command(resume={"approver": "alice", "decision": "reject", "comment": "not today"}), config
            )
            assert done["outcome"] == "rejected"
            assert "output" not in done
            status = await client.status(done["deployment_id"])
            assert status["deployment"]["status"] == "rejected"
            assert status["live"] is None
            assert not list(agent_home.glob("slots/*/*/*/slot.json")), "a rejected deployment starts nothing"

    asyncio.run(main())


def test_failed_rollout_leaves_the_live_version_serving(agent_bin, agent_home, iris_store, smoke_test) -> None:
    """The broken model fails its smoke test: the graph ends `failed`, v1 keeps serving."""

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            v1 = await deploy_v1(client, iris_store, smoke_test)
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            config = {"configurable": {"thread_id": "broken-1"}}
            interrupt_of(
                await graph.ainvoke(request_for(iris_store, iris_store.broken, smoke_tests=smoke_test([0])), config)
            )
            done = await graph.ainvoke(Command(resume={"approver": "alice", "decision": "approve"}), config)
            assert done["outcome"] in ("failed", "rolled_back"), done
            assert done["error"]["reason"], done["error"]
            assert isinstance(done["error"]["code"], int), done["error"]  # one type for error.code (issue 14)
            assert "verification" not in done
            status = await client.status(done["deployment_id"])
            assert status["deployment"]["status"] == done["outcome"]
            assert status["deployment"]["error"]["code"] == done["error"]["code"]
            page = await client.history(deployment_id=done["deployment_id"])
            assert page["deployments"][0]["error"]["code"] == done["error"]["code"]
            assert status["live"]["deployment_id"] == v1["deployment_id"]
            assert predict(v1["endpoint_url"], {"input": [[5.1, 3.5, 1.4, 0.2]]}) == [0]

    asyncio.run(main())


def test_verification_failure_rolls_back(agent_bin, agent_home, iris_store, smoke_test) -> None:
    """v2 deploys fine, but the caller's own check (expects class 0) fails: the graph rolls back to v1."""
    checked: list[str] = []

    async def expects_class_zero(output: dict, status: dict):
        checked.append(output["deployment_id"])
        answer = await asyncio.to_thread(predict, output["endpoint_url"], {"input": [[5.1, 3.5, 1.4, 0.2]]})
        return answer == [0], f"predict answered {answer}, expected [0]"

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            v1 = await deploy_v1(client, iris_store, smoke_test)
            graph = build_deployment_graph(client, checkpointer=MemorySaver(), verify=expects_class_zero)
            config = {"configurable": {"thread_id": "verify-1"}}
            interrupt_of(
                await graph.ainvoke(request_for(iris_store, iris_store.v2, smoke_tests=smoke_test([10])), config)
            )
            done = await graph.ainvoke(Command(resume={"approver": "alice", "decision": "approve"}), config)
            assert checked == [done["deployment_id"]]
            assert done["verification"]["passed"] is False
            assert done["verification"]["checks"]["custom"] is False
            assert "expected [0]" in done["verification"]["reason"]
            assert done["outcome"] == "rolled_back", done
            rollback = done["rollback"]
            assert rollback["deployment_strategy"] == "rollback"
            assert rollback["to_version"] == iris_store.v1
            assert rollback["from_version"] == iris_store.v2
            served = predict(v1["endpoint_url"], {"input": [[5.1, 3.5, 1.4, 0.2]]})
            if served != [0]:
                status = await client.status(rollback["deployment_id"])
                pytest.fail(f"after rollback the endpoint serves {served}; rollback={rollback}; status={status}")
            page = await client.history(model_name=iris_store.model_name, environment="clienttest")
            statuses = {d["deployment_id"]: d["status"] for d in page["deployments"]}
            assert statuses[done["deployment_id"]] in ("rolled_back", "superseded")
            assert statuses[rollback["deployment_id"]] == "live"

    asyncio.run(main())


STEP_SCRIPT = HERE / "graph_process_step.py"


def run_step(*args: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, str(STEP_SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_resume_in_a_new_process(agent_bin, agent_home, iris_store, tmp_path) -> None:
    """Process 1 plans and stops at the gate (sync graph, SqliteSaver). Process 2, with a new agent process,
    resumes the thread from the checkpoint file (async graph, AsyncSqliteSaver) and deploys."""
    pytest.importorskip("langgraph.checkpoint.sqlite")
    checkpoints = tmp_path / "checkpoints.sqlite"
    env = {**iris_store.env(), "MODEL_DEPLOYER_BIN": agent_bin}
    common = ["--home", str(agent_home), "--checkpoints", str(checkpoints), "--thread", "cross-1"]

    first = run_step(
        "start", *common, "--model", iris_store.model_name, "--version", iris_store.v1, "--env", "clienttest", env=env
    )
    assert first["interrupt"]["gate"] == "deploy"
    deployment_id = first["interrupt"]["deployment_id"]
    assert first["agent_pid"] != os.getpid()

    second = run_step("resume", *common, "--approver", "alice", "--decision", "approve", env=env)
    assert second["agent_pid"] != first["agent_pid"]
    assert second["state"]["deployment_id"] == deployment_id
    assert second["state"]["outcome"] == "live"
    assert second["state"]["output"]["status"] == "live"

    third = run_step("show", *common, env=env)  # the checkpoint alone tells a third process how it ended
    assert third["state"]["outcome"] == "live"
    assert third["next"] == []


def test_rejection_at_the_promote_gate(agent_bin, agent_home, iris_store, smoke_test) -> None:
    """Deployed and validated, but the promote gate is rejected: nothing goes live, the staging slot goes."""

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            config = {"configurable": {"thread_id": "promote-reject-1"}}
            request = request_for(iris_store, iris_store.v1, "clientprod", smoke_tests=smoke_test([0]))
            interrupt_of(await graph.ainvoke(request, config))
            gate = interrupt_of(await graph.ainvoke(Command(resume={"approver": "alice", "decision": "approve"}), config))
            assert gate["gate"] == "promote"
            done = await graph.ainvoke(Command(resume={"approver": "bob", "decision": "reject"}), config)
            assert done["outcome"] == "rejected", done
            status = await client.status(done["deployment_id"])
            assert status["deployment"]["status"] == "rejected"
            assert status["live"] is None
            assert status["slot_alive"] is not True

    asyncio.run(main())
