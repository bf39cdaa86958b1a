"""DeployerClient.follow() and .live() against the real agent (issue 14, "Day two"): follow a deployment that
another agent process approves and executes; see what is live, its warm standby and a killed slot."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from deployer_fixtures import kill_slot

from model_deployer_client import DeployerClient, DeployerError, SyncDeployerClient


def test_follow_sees_another_process_take_a_deployment_from_plan_to_live(agent_bin, agent_home, iris_store,
                                                                           smoke_test) -> None:
    env = iris_store.env()
    with SyncDeployerClient(agent_bin, home=agent_home, env=env, progress="off") as runner, \
            SyncDeployerClient(agent_bin, home=agent_home, env=env, progress="off") as follower:
        assert runner.pid != follower.pid  # two agent processes sharing one ledger
        plan = runner.plan(iris_store.model_name, iris_store.v1, "clienttest", "ci", smoke_tests=smoke_test([0]))
        deployment_id = plan["deployment_id"]

        notes: list[dict] = []
        first = threading.Event()

        def on_progress(note: dict) -> None:
            notes.append(note)
            first.set()

        with ThreadPoolExecutor(1) as pool:
            following = pool.submit(follower.follow, deployment_id, on_progress=on_progress)
            assert first.wait(120), "follow sent no progress"
            assert not following.done()  # still following: the deployment waits at its deploy gate
            assert [n["status"] for n in notes] == ["awaiting_approval"]
            runner.approve(deployment_id, "alice")
            out = runner.execute(deployment_id)
            assert out["status"] == "live", out
            result = following.result(300)

    assert result["deployment"]["deployment_id"] == deployment_id
    assert result["deployment"]["status"] == "live" and result["deployment"]["approved_by"] == "alice"
    assert result["last_seq"] >= len(notes) > 3
    seen = [n["status"] for n in notes]
    assert seen[0] == "awaiting_approval" and seen[-1] == "live"
    assert {"approved", "deploying", "validating"} <= set(seen)
    assert {n["deployment_id"] for n in notes} == {deployment_id}

    async def resume() -> tuple[dict, list[dict]]:
        later: list[dict] = []
        async with DeployerClient(agent_bin, home=agent_home, env=env) as client:
            with pytest.raises(DeployerError) as missing:
                await client.follow("01900000-0000-7000-8000-000000000000")
            assert missing.value.reason == "deployment_not_found"
            again = await client.follow(deployment_id, after_seq=result["last_seq"], on_progress=later.append)
        return again, later

    again, later = asyncio.run(resume())  # over already: answers at once, nothing after last_seq
    assert again["deployment"]["status"] == "live" and again["last_seq"] == result["last_seq"] and later == []


def test_live_shows_the_standby_and_a_killed_slot(agent_bin, agent_home, iris_store, smoke_test) -> None:
    env = iris_store.env()
    with SyncDeployerClient(agent_bin, home=agent_home, env=env, progress="off") as client:
        assert client.live() == []
        for version, answer in ((iris_store.v1, [0]), (iris_store.v2, [10])):
            plan = client.plan(iris_store.model_name, version, "clientwarm", "ci", smoke_tests=smoke_test(answer))
            assert client.execute(plan["deployment_id"])["status"] == "live"
    # A fresh agent answers deploy.list: the slots it reports on were started by another process.
    with SyncDeployerClient(agent_bin, home=agent_home, env=env, progress="off") as client:
        (row,) = client.live()
        assert (row["model_name"], row["environment"], row["model_version"]) == (iris_store.model_name, "clientwarm",
                                                                                iris_store.v2)
        assert row["slot_alive"] is True and row["endpoint_alive"] is True and row["in_flight"] is None
        assert row["standby"] is not None
        assert row["standby"]["model_version"] == iris_store.v1 and row["standby"]["alive"] is True
        assert client.live(model_name=iris_store.model_name, environment="clientwarm") == [row]
        assert client.live(environment="clienttest") == []

        kill_slot(agent_home, row["slot"])
        (after,) = client.live()
        assert after["model_version"] == iris_store.v2 and after["slot_alive"] is False
        assert after["standby"] is not None and after["standby"]["alive"] is True
