"""DeployerClient with real deployments (needs BentoML): progress routed per deployment, typed output."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from model_deployer_client import DeployerClient, DeployerError, SyncDeployerClient


def test_two_concurrent_rollouts_get_their_own_progress(agent_bin, agent_home, iris_store, smoke_test) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
            everything: list[dict] = []
            client.subscribe(everything.append)  # all deployments
            plans = await asyncio.gather(
                client.plan(iris_store.model_name, iris_store.v1, "clienttest", "ci", smoke_tests=smoke_test([0])),
                client.plan(iris_store.model_name, iris_store.v2, "development", "ci", smoke_tests=smoke_test([10])),
            )
            ids = [p["deployment_id"] for p in plans]
            assert plans[0]["status"] == "awaiting_approval" and plans[1]["status"] == "planned"
            with pytest.raises(DeployerError) as info:
                await client.execute(ids[0])
            assert info.value.reason == "approval_required"
            await client.approve(ids[0], "alice", comment="ok")

            notes: dict[str, list[dict]] = {i: [] for i in ids}
            outs = await asyncio.gather(*(client.execute(i, on_progress=notes[i].append) for i in ids))
            for deployment_id, out in zip(ids, outs):
                assert out["status"] == "live", out
                assert out["deployment_id"] == deployment_id
                assert isinstance(out["deployment_timestamp"], datetime)
                assert out["deployment_timestamp"].tzinfo == timezone.utc
                assert out["health_check_passed"] is True
                assert set(out["metrics_baseline"]) >= {"error_rate"}
                assert notes[deployment_id], "progress arrived"
                assert {n["deployment_id"] for n in notes[deployment_id]} == {deployment_id}
                assert [n["progress"] for n in notes[deployment_id]] == sorted(n["progress"] for n in notes[deployment_id])
            assert {n["deployment_id"] for n in everything} == set(ids)

            with pytest.raises(DeployerError) as info:  # already live: one in-flight rollout rule / nothing new
                await client.execute(ids[1])
            assert info.value.code in (-32004, -32005)

    asyncio.run(main())


def test_sync_client_deploys_and_rolls_back(agent_bin, agent_home, iris_store, smoke_test) -> None:
    with SyncDeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as client:
        for version, answer in ((iris_store.v1, [0]), (iris_store.v2, [10])):
            plan = client.plan(iris_store.model_name, version, "development", "ci", smoke_tests=smoke_test(answer))
            out = client.execute(plan["deployment_id"])
            assert out["status"] == "live", out
        notes: list[dict] = []
        back = client.rollback(iris_store.model_name, "development", "ci", reason="test", on_progress=notes.append)
        assert back["to_version"] == iris_store.v1 and back["from_version"] == iris_store.v2
        assert back["status"] == "live"
        history = list(client.iter_history(model_name=iris_store.model_name, environment="development"))
        assert [d["deployment_strategy"] for d in history][0] == "rollback"
        assert len(history) == 3
        # Undeploy: the rollback deployment that is live now is stopped, with both slots.
        stopped = client.stop(iris_store.model_name, "development", "ci", reason="test over")
        assert stopped["deployment"]["deployment_id"] == back["deployment_id"]
        assert stopped["deployment"]["status"] == "stopped"
        assert len(stopped["stopped_slots"]) == 2
        assert client.live(iris_store.model_name, "development") == []
