"""The example store the quickstarts deploy from (issue 14: `latest` was the broken version, and the README's
first example put it live while predict answered HTTP 500)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from model_deployer_client import DeployerClient


def test_latest_is_a_healthy_version(agent_bin: str, agent_home: Path, iris_store) -> None:
    """examples/iris/build.sh builds the broken version first, so `iris_clf:latest` is v2."""

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as agent:
            plan = await agent.plan("iris_clf", "latest", "development", "ci")
            assert plan["deployment"]["model_version"] == iris_store.v2
            assert plan["deployment"]["model_version"] != iris_store.broken
            assert any("kind=v2" in reason for reason in plan["plan"]["reasons"]), plan["plan"]["reasons"]

    asyncio.run(main())


def test_latest_is_none_of_the_faulty_versions(agent_bin: str, agent_home: Path, iris_store) -> None:
    """flaky and slow are built before v1 and v2 too, so neither can be `latest`."""

    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, env=iris_store.env()) as agent:
            plan = await agent.plan("iris_clf", "latest", "development", "ci")
            assert plan["deployment"]["model_version"] not in (iris_store.flaky, iris_store.slow)

    asyncio.run(main())


def test_the_faulty_bentos_carry_their_faults(iris_store) -> None:
    """The fault is a bento argument recorded in bento.yaml (the agent serves the bento as built), and each
    faulty bento serves its own model version."""
    import yaml

    def bento_args(model_version: str) -> dict:
        for path in (iris_store.home / "bentos" / "iris_classifier").glob("*/bento.yaml"):
            doc = yaml.safe_load(path.read_text())
            args = doc.get("args") or {}
            if args.get("model_tag") == f"iris_clf:{model_version}":
                return args
        raise AssertionError(f"no bento serves iris_clf:{model_version}")

    assert float(bento_args(iris_store.flaky)["fault_error_rate"]) == 0.3
    slow = bento_args(iris_store.slow)
    assert int(slow["fault_delay_ms"]) == 300 and float(slow["fault_delay_rate"]) == 0.5
    for healthy in (iris_store.v1, iris_store.v2):
        assert not {"fault_error_rate", "fault_delay_ms", "fault_delay_rate"} & bento_args(healthy).keys()
