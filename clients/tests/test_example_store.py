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
