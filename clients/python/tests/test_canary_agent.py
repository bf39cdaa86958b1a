"""Canary, step gates, abort and stop through the Python client and the LangGraph flow, against the real
agent with real BentoML slots behind HAProxy and client traffic on kept connections (issue 11).

Skipped unless MODEL_DEPLOYER_TEST_BENTOML_HOME names a BentoML store (see clients/README.md); the agent
must speak the canary contract (deploy.abort in its OpenRPC document), else the module is skipped."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import MemorySaver
from langgraph.types import Command

from deployer_fixtures import CANARY_ENV
from model_deployer_client import DeployerClient, DeployerError, canary_rows, format_canary_table
from model_deployer_client.graph import build_deployment_graph

ENV = "clientcanary"
# Short, so a test takes seconds: one-second analysis windows, few requests needed.
FAST = {"pause_seconds": 2, "min_requests": 10, "max_inconclusive_seconds": 120,
        "analysis": {"interval_seconds": 1, "failure_limit": 2, "min_requests": 5}}
# Where a test judges latency, windows of 4 s: a BentoML process stalls 120-185 ms about every 2.5 s at this
# load (measured: 3 clients on kept connections, 0.5-s buckets), and a stall holds every request in flight, so in a 1-s window of
# 70 candidate requests one stall is its p95; in 4 s it is under 5 % of them.
SLOW_WINDOWS = {**FAST["analysis"], "interval_seconds": 4}


@pytest.fixture
def agent_env(iris_store) -> dict:
    return {**iris_store.env(), **CANARY_ENV}


async def speaks_canary(client: DeployerClient) -> None:
    names = {m["name"] for m in (await client.discover())["methods"]}
    if "deploy.abort" not in names:
        pytest.skip("this agent has no canary yet (no deploy.abort)")


async def put_live(client: DeployerClient, store, version: str, expect: list[int], smoke_test) -> dict:
    plan = await client.plan(store.model_name, version, ENV, "ci-bot", smoke_tests=smoke_test(expect))
    out = await client.execute(plan["deployment_id"])
    assert out["status"] == "live", out
    return out


def test_canary_with_a_step_gate_goes_live_under_traffic(agent_bin, agent_home, iris_store, smoke_test, agent_env,
                                                         traffic) -> None:
    notes: list[dict] = []

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=agent_env, progress="off") as client:
            await speaks_canary(client)
            v1 = await put_live(client, iris_store, iris_store.v1, [0], smoke_test)
            with traffic(v1["endpoint_url"]) as load:
                plan = await client.plan(iris_store.model_name, iris_store.v2, ENV, "ci-bot", smoke_tests=smoke_test([10]),
                                         strategy="canary", canary={**FAST, "steps": [25, 100], "step_gates": True,
                                                                    # a healthy version must pass every window:
                                                                    # 4 s, as SLOW_WINDOWS explains
                                                                    "analysis": SLOW_WINDOWS})
                assert plan["plan"]["strategy"] == "canary"
                assert plan["plan"]["config"]["canary"]["steps"] == [25, 100]
                assert plan["plan"]["config"]["canary"]["step_gates"] is True
                out = await client.execute(plan["deployment_id"], on_progress=notes.append)
                assert out["status"] == "awaiting_step", out
                at_gate = time.monotonic()
                await asyncio.sleep(1)
                # at the gate: 25 % of the traffic on v2, the rest on v1 (HAProxy counts exactly; the clients'
                # view includes the requests in flight at the change, so it is checked loosely)
                seen = [text for status, text in load.between(at_gate) if status == 200]
                assert "[10]" in seen and "[0]" in seen, set(seen)
                page = await client.history(model_name=iris_store.model_name, environment=ENV,
                                            traffic_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                assert {t["version"]: t["weight"] for t in page["traffic"]} == {iris_store.v1: 75, iris_store.v2: 25}
                step = await client.approve(plan["deployment_id"], "alice", gate="step", on_progress=notes.append)
                assert step["gate"] == "step" and step["output"]["status"] == "live", step
                done = time.monotonic()
                await asyncio.sleep(1)
            assert load.failed() == [], load.failed()[:5]
            assert {text for status, text in load.between(done + 0.5)} == {"[10]"}
            status = await client.status(plan["deployment_id"])
            assert status["deployment"]["status"] == "live"
            steps = [r for r in canary_rows(status["events"]) if r["kind"] == "canary_step"]
            assert [r["weight"] for r in steps] == [25, 100]
            assert steps[0]["weights"] == {iris_store.v1: 75, iris_store.v2: 25}

    asyncio.run(main())
    rows = canary_rows(notes)
    assert [r["weight"] for r in rows if r["kind"] == "canary_step"] == [25, 100]
    windows = [r for r in rows if r["kind"] == "analysis"]
    assert windows and all(r["verdict"] in ("pass", "inconclusive") for r in windows), \
        [(r["verdict"], r.get("message")) for r in windows]
    assert any(r["verdict"] == "pass" for r in windows), format_canary_table(notes)


@pytest.mark.parametrize("kind", ["flaky", "slow"])
def test_a_faulty_candidate_is_aborted_by_the_analysis(kind, agent_bin, agent_home, iris_store, smoke_test, agent_env,
                                                       traffic) -> None:
    """flaky answers HTTP 500 on 30 % of its requests, slow takes 300 ms longer on half of them: both pass a
    smoke test, both are aborted by the analysis, and the stable version takes all the traffic back."""

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=agent_env, progress="off") as client:
            await speaks_canary(client)
            v1 = await put_live(client, iris_store, iris_store.v1, [0], smoke_test)
            with traffic(v1["endpoint_url"], threads=4) as load:
                plan = await client.plan(iris_store.model_name, getattr(iris_store, kind), ENV, "ci-bot",
                                         smoke_tests=[{"api": "predict", "input": {"input": [[5.1, 3.5, 1.4, 0.2]]}}],
                                         strategy="canary", canary={**FAST, "steps": [50, 100], "pause_seconds": 30,
                                                                    # p95s are compared on 40+ requests per version:
                                                                    # 4 s holds that many at this load
                                                                    "analysis": SLOW_WINDOWS})
                out = await client.execute(plan["deployment_id"])
                ended = time.monotonic()
                await asyncio.sleep(1)
            assert out["status"] == "aborted", out
            assert out["error"]["reason"] == "analysis_failed" and isinstance(out["error"]["code"], int)
            after = load.between(ended + 0.2)
            assert after and all(answer == (200, "[0]") for answer in after), set(after)
            assert (await client.live(iris_store.model_name, ENV))[0]["model_version"] == iris_store.v1
            if kind == "slow":
                assert load.failed() == []  # slow answers late, never wrong

    asyncio.run(main())


def test_abort_by_hand_and_not_abortable(agent_bin, agent_home, iris_store, smoke_test, agent_env, traffic) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=agent_env, progress="off") as client:
            await speaks_canary(client)
            v1 = await put_live(client, iris_store, iris_store.v1, [0], smoke_test)
            with traffic(v1["endpoint_url"]) as load:
                plan = await client.plan(iris_store.model_name, iris_store.v2, ENV, "ci-bot", smoke_tests=smoke_test([10]),
                                         strategy="canary", canary={**FAST, "steps": [50, 100], "step_gates": True})
                assert (await client.execute(plan["deployment_id"]))["status"] == "awaiting_step"
                aborted = await client.abort(plan["deployment_id"], "oncall", reason="by hand")
                ended = time.monotonic()
                await asyncio.sleep(1)
            assert aborted["deployment"]["status"] == "aborted"
            assert aborted["deployment"]["error"]["reason"] == "aborted"
            assert load.failed() == []
            assert {answer for answer in load.between(ended + 0.2)} == {(200, "[0]")}
            with pytest.raises(DeployerError) as again:
                await client.abort(plan["deployment_id"], "oncall")
            assert again.value.reason == "not_abortable" and again.value.data["status"] == "aborted"

    asyncio.run(main())


def test_langgraph_step_gate_then_stop(agent_bin, agent_home, iris_store, smoke_test, agent_env, traffic) -> None:
    """The graph interrupts at the step gate with the weights and the analysis, a human approves, the canary
    goes live; then deploy.stop takes the model off the environment."""

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=agent_env, progress="off") as client:
            await speaks_canary(client)
            v1 = await put_live(client, iris_store, iris_store.v1, [0], smoke_test)
            graph = build_deployment_graph(client, checkpointer=MemorySaver())
            config = {"configurable": {"thread_id": "canary-live-1"}}
            with traffic(v1["endpoint_url"]):
                result = await graph.ainvoke({
                    "model_name": iris_store.model_name, "model_version": iris_store.v2, "environment": ENV,
                    "requested_by": "ci-bot",
                    "options": {"smoke_tests": smoke_test([10]), "strategy": "canary",
                                "canary": {**FAST, "steps": [10, 100], "step_gates": True}}}, config)
                gate = result["__interrupt__"][0].value
                assert gate["gate"] == "step" and gate["weight"] == 10 and gate["next_weight"] == 100
                assert gate["weights"] == {iris_store.v1: 90, iris_store.v2: 10}
                result = await graph.ainvoke(Command(resume={"approver": "alice", "decision": "approve"}), config)
            assert result["outcome"] == "live", result
            assert result["verification"]["passed"]

            names = {m["name"] for m in (await client.discover())["methods"]}
            if "deploy.stop" not in names:
                pytest.skip("this agent has no deploy.stop yet")
            stopped = await client.stop(iris_store.model_name, ENV, "oncall", reason="retired")
            assert stopped["deployment"]["status"] == "stopped" and stopped["stopped_slots"]
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)) as gone:
                urllib.request.urlopen(urllib.request.Request(
                    v1["endpoint_url"] + "/predict", data=b'{"input": [[5.1, 3.5, 1.4, 0.2]]}',
                    headers={"Content-Type": "application/json"}), timeout=5)
            if isinstance(gone.value, urllib.error.HTTPError):
                assert gone.value.code == 503
            with pytest.raises(DeployerError) as again:
                await client.stop(iris_store.model_name, ENV, "oncall")
            assert again.value.reason == "nothing_deployed"

    asyncio.run(main())
