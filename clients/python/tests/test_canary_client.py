"""The client's canary, abort and stop calls (issue 11), against a scripted stand-in for the agent
(fake_canary_agent.py): the params each call sends, what it hands back, the canary table, and the LangGraph
flow's step gates. The same calls against the real agent are in test_canary_agent.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import MemorySaver
from langgraph.types import Command

from model_deployer_client import DeployerClient, SyncDeployerClient, canary_rows, format_canary_table
from model_deployer_client.graph import build_deployment_graph, pending_gate

FAKE = str(Path(__file__).resolve().parent / "fake_canary_agent.py")


@pytest.fixture
def fake(tmp_path: Path):
    log = tmp_path / "requests.jsonl"

    def requests(method: str | None = None) -> list[dict]:
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [r for r in lines if method is None or r["method"] == method]

    def env(**extra: str) -> dict[str, str]:
        return {"FAKE_AGENT_LOG": str(log), **extra}

    return env, requests


def test_plan_sends_the_canary_settings(fake) -> None:
    env, requests = fake

    async def main() -> None:
        async with DeployerClient(FAKE, env=env()) as client:
            plan = await client.plan(
                "iris_clf", "v2", "canarytest", "ci-bot", strategy="canary",
                canary={"steps": (5, 25, 50, 100), "pause_seconds": 10, "min_requests": 40, "step_gates": True,
                        "max_inconclusive_seconds": None, "analysis": {"interval_seconds": 5, "failure_limit": None}},
            )
            assert plan["plan"]["config"]["canary"]["steps"] == [5, 25, 50, 100]

    asyncio.run(main())
    (sent,) = requests("deploy.plan")
    assert sent["params"]["strategy"] == "canary"
    # a tuple becomes a list, None values are left out (the policy's settings then apply)
    assert sent["params"]["canary"] == {"steps": [5, 25, 50, 100], "pause_seconds": 10, "min_requests": 40,
                                        "step_gates": True, "analysis": {"interval_seconds": 5}}


def test_an_unknown_canary_setting_is_refused_before_anything_is_sent(fake) -> None:
    env, requests = fake

    async def main() -> None:
        async with DeployerClient(FAKE, env=env()) as client:
            with pytest.raises(ValueError, match="unknown canary setting.*step_weight"):
                await client.plan("iris_clf", "v2", "canarytest", "ci-bot", strategy="canary",
                                  canary={"step_weight": 10})
            await client.ping()

    asyncio.run(main())
    assert requests("deploy.plan") == []


def test_execute_and_step_gates_stream_canary_data(fake) -> None:
    env, requests = fake
    notes: list[dict] = []

    with SyncDeployerClient(FAKE, env=env(), progress="off") as client:
        plan = client.plan("iris_clf", "v2", "canarytest", "ci-bot", strategy="canary",
                           canary={"steps": [10, 50, 100], "step_gates": True})
        out = client.execute(plan["deployment_id"], on_progress=notes.append)
        assert out["status"] == "awaiting_step" and out["gate"] == "step"
        step = client.approve(plan["deployment_id"], "alice", gate="step", on_progress=notes.append)
        assert step["status"] == "awaiting_step" and step["output"]["status"] == "awaiting_step"
        last = client.approve(plan["deployment_id"], "alice", gate="step", comment="looks fine", on_progress=notes.append)
        assert last["status"] == "live" and last["output"]["status"] == "live"

    approvals = [r["params"] for r in requests("deploy.approve")]
    assert approvals[0] == {"deployment_id": plan["deployment_id"], "approver": "alice", "decision": "approve", "gate": "step"}
    assert approvals[1]["comment"] == "looks fine"
    rows = canary_rows(notes)
    assert [(r["kind"], r["step"], r["weight"]) for r in rows] == [
        ("canary_step", 1, 10), ("analysis", 1, 10), ("canary_step", 2, 50), ("analysis", 2, 50), ("canary_step", 3, 100)
    ]
    assert rows[1]["weights"] == {"v1": 90, "v2": 10} and rows[1]["verdict"] == "pass"
    assert rows[1]["candidate"] == {"requests": 100, "errors": 0, "error_rate": 0.0, "p95_ms": 4.5}


def test_the_canary_table() -> None:
    notes = [
        {"step": "validate", "message": "smoke tests passed"},
        {"step": "canary_step", "data": {"step_index": 0, "weight": 5, "weights": {"v1": 95, "v2": 5}}},
        {"step": "analysis", "data": {"step_index": 0, "weight": 5, "weights": {"v1": 95, "v2": 5}, "analysis": {
            "verdict": "inconclusive", "stable": {"requests": 380, "errors": 0, "error_rate": 0.0, "p95_ms": 4.04},
            "candidate": {"requests": 0, "errors": 0, "error_rate": 0.0, "p95_ms": None}, "limits": {}}}},
        {"step": "canary_step", "data": {"step_index": 1, "weight": 25, "weights": {"v1": 75, "v2": 25}}},
    ]
    assert format_canary_table(notes).splitlines() == [
        "STEP  WEIGHT  WEIGHTS      ANALYSIS      CANDIDATE req/err/p95  STABLE req/err/p95",
        "1     5%      v1=95 v2=5   -",
        "1     5%      v1=95 v2=5   inconclusive  0/0/-                  380/0/4.0ms",
        "2     25%     v1=75 v2=25  -",
    ]
    assert format_canary_table([{"step": "switch"}]) == ""
    # ledger events (deploy.status) read the same way
    events = [{"seq": 1, "at": "2026-12-03T10:00:00.000Z", "step": "canary_step", "data": notes[1]["data"]}]
    assert canary_rows(events)[0]["at"] == "2026-12-03T10:00:00.000Z"


def test_abort_stop_and_traffic_at(fake) -> None:
    env, requests = fake

    async def main() -> None:
        async with DeployerClient(FAKE, env=env(), progress="off") as client:
            plan = await client.plan("iris_clf", "v2", "canarytest", "ci-bot", strategy="canary",
                                     canary={"step_gates": True})
            await client.execute(plan["deployment_id"])
            aborted = await client.abort(plan["deployment_id"], "oncall", reason="p95 looks wrong")
            assert aborted["deployment"]["status"] == "aborted"
            assert aborted["deployment"]["error"] == {"code": -32009, "reason": "aborted", "message": "p95 looks wrong"}
            with pytest.raises(Exception) as again:
                await client.abort(plan["deployment_id"], "oncall")
            assert getattr(again.value, "reason", None) == "not_abortable"
            assert again.value.data["status"] == "aborted"

            stopped = await client.stop("iris_clf", "canarytest", "oncall")
            assert stopped["stopped_slots"] == ["blue", "teal"] and stopped["deployment"]["status"] == "stopped"
            page = await client.history(model_name="iris_clf", environment="canarytest",
                                        traffic_at="2026-12-03T10:00:00Z")
            assert [t["weight"] for t in page["traffic"]] == [75, 25]

    asyncio.run(main())
    assert requests("deploy.abort")[0]["params"] == {
        "deployment_id": "01930000-0000-7000-8000-00000000c4a7", "requested_by": "oncall", "reason": "p95 looks wrong"}
    assert requests("deploy.abort")[1]["params"] == {
        "deployment_id": "01930000-0000-7000-8000-00000000c4a7", "requested_by": "oncall"}
    assert requests("deploy.stop")[0]["params"] == {"model_name": "iris_clf", "environment": "canarytest",
                                                     "requested_by": "oncall"}
    assert requests("history.query")[0]["params"]["traffic_at"] == "2026-12-03T10:00:00Z"


def graph_input(**canary) -> dict:
    return {"model_name": "iris_clf", "model_version": "v2", "environment": "canarytest", "requested_by": "ci-bot",
            "options": {"strategy": "canary", "canary": {"step_gates": True, **canary}}}


def test_graph_interrupts_at_each_step_gate_and_goes_live(fake) -> None:
    env, requests = fake
    notes: list[dict] = []

    async def main() -> None:
        async with DeployerClient(FAKE, env=env(), progress="off") as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver(), on_progress=notes.append)
            config = {"configurable": {"thread_id": "canary-1"}}
            result = await graph.ainvoke(graph_input(steps=[5, 25, 50, 100]), config)
            seen = []
            while "__interrupt__" in result:
                gate = result["__interrupt__"][0].value
                assert pending_gate(graph.get_state(config)) == gate
                seen.append((gate["gate"], gate["step_index"], gate["weight"], gate["next_weight"],
                             gate["weights"], gate["analysis"]["verdict"]))
                if len(seen) == 1:  # an answer that is not a decision: the gate asks again, saying why
                    result = await graph.ainvoke(Command(resume="yes"), config)
                    assert result["__interrupt__"][0].value["error"]["reason"] == "invalid_resume"
                result = await graph.ainvoke(Command(resume={"approver": "alice", "decision": "approve"}), config)
            assert seen == [
                ("step", 0, 5, 25, {"v1": 95, "v2": 5}, "pass"),
                ("step", 1, 25, 50, {"v1": 75, "v2": 25}, "pass"),
                ("step", 2, 50, 100, {"v1": 50, "v2": 50}, "pass"),
            ]
            assert result["outcome"] == "live", result
            assert result["verification"]["passed"]
            assert result["canary"]["weight"] == 100

    asyncio.run(main())
    assert [r["params"]["gate"] for r in requests("deploy.approve")] == ["step", "step", "step"]
    assert [r["weight"] for r in canary_rows(notes) if r["kind"] == "canary_step"] == [5, 25, 50, 100]


def test_graph_rejecting_a_step_gate_aborts(fake) -> None:
    env, requests = fake

    with SyncDeployerClient(FAKE, env=env(), progress="off") as client:
        graph = build_deployment_graph(client, checkpointer=MemorySaver())
        config = {"configurable": {"thread_id": "canary-2"}}
        result = graph.invoke(graph_input(), config)
        assert result["__interrupt__"][0].value["gate"] == "step"
        result = graph.invoke(Command(resume={"approver": "alice", "decision": "reject", "comment": "p95"}), config)
    assert "__interrupt__" not in result
    assert result["outcome"] == "aborted" and result["status"] == "aborted"
    assert requests("deploy.approve")[0]["params"]["decision"] == "reject"


def test_graph_a_failed_analysis_ends_aborted(fake) -> None:
    env, _ = fake

    async def main() -> None:
        async with DeployerClient(FAKE, env=env(FAKE_AGENT_FAIL_AT_STEP="2"), progress="off") as client:
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            config = {"configurable": {"thread_id": "canary-3"}}
            result = await graph.ainvoke(graph_input(), config)
            result = await graph.ainvoke(Command(resume={"approver": "alice", "decision": "approve"}), config)
            assert result["outcome"] == "aborted"
            assert result["error"]["reason"] == "analysis_failed" and result["error"]["code"] == -32009
            assert result["canary"]["analysis"]["verdict"] == "fail"

    asyncio.run(main())
