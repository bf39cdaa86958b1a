"""DeployerClient and SyncDeployerClient against the real agent (no BentoML needed)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from model_deployer_client import AgentDiedError, DeployerClient, DeployerError, SyncDeployerClient, find_binary


async def wait_stopped(pid: int) -> None:
    """Waits until the kernel reports the process stopped (SIGSTOP delivery is asynchronous)."""
    status = Path(f"/proc/{pid}/status")
    for _ in range(500):
        if status.exists() and "\nState:\tT" in status.read_text():
            return
        await asyncio.sleep(0.01)
    pytest.skip("cannot observe the stopped state of the agent (no /proc?)")


def run(coro):
    return asyncio.run(coro)


def test_ping_and_shutdown(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        client = DeployerClient(agent_bin, home=agent_home)
        async with client:
            assert await client.ping() == {}
            assert client.is_alive
            pid = client.pid
        assert client.returncode == 0  # stdin EOF -> clean exit
        assert not client.is_alive
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(AgentDiedError):
            await client.ping()

    run(main())


def test_concurrent_requests_are_matched_by_id(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            results = await asyncio.gather(*(client.ping() for _ in range(200)))
            assert results == [{}] * 200

    run(main())


def test_discover_returns_the_openrpc_document(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            doc = await client.discover()
            names = {m["name"] for m in doc["methods"]}
            assert {"deploy.plan", "deploy.execute", "history.query", "ping"} <= names

    run(main())


def test_unknown_method_raises_deployer_error(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            with pytest.raises(DeployerError) as info:
                await client.call("no.such.method", {})
            assert info.value.code == -32601
            assert info.value.method == "no.such.method"
            # the agent keeps serving after an error
            assert await client.ping() == {}

    run(main())


def test_invalid_params_carry_reason_and_field(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            with pytest.raises(DeployerError) as info:
                await client.plan("Bad Name!", "1", "clienttest", requested_by="ci")
            err = info.value
            assert err.code == -32602
            assert err.reason == "invalid_params"
            assert err.data["field"] == "model_name"
            assert "invalid_params" in str(err)

    run(main())


def test_unknown_deployment_is_deployment_not_found(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            with pytest.raises(DeployerError) as info:
                await client.status("dep_does_not_exist")
            assert info.value.code in (-32001, -32602)
            assert info.value.reason in ("deployment_not_found", "invalid_params")

    run(main())


def test_stop_with_nothing_live_is_nothing_deployed(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            with pytest.raises(DeployerError) as info:
                await client.stop("iris_clf", "clienttest", "ci", reason="cleanup")
            assert (info.value.code, info.value.reason) == (-32006, "nothing_deployed")
            with pytest.raises(DeployerError) as info:
                await client.stop("iris_clf", "Clienttest", "ci")
            assert (info.value.reason, info.value.data["field"]) == ("invalid_params", "environment")

    run(main())


def test_history_on_an_empty_ledger(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            page = await client.history(limit=10)
            assert page == {"deployments": [], "next_cursor": None}
            assert [d async for d in client.iter_history(environment="clienttest")] == []

    run(main())


def test_agent_death_fails_pending_and_later_calls(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            assert await client.ping() == {}
            # A call that is pending when the agent dies fails with AgentDiedError (not a hang).
            pending = asyncio.ensure_future(client.call("ping", {}))
            os.kill(client.pid, signal.SIGKILL)
            try:
                await pending  # may have been answered before the kill landed
            except AgentDiedError:
                pass
            with pytest.raises(AgentDiedError) as info:
                for _ in range(100):  # until the reader has seen EOF
                    await client.ping()
                    await asyncio.sleep(0.01)
            assert info.value.returncode == -signal.SIGKILL
            assert not client.is_alive

    run(main())


def test_pending_call_fails_when_the_agent_is_killed(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home, stderr="capture") as client:
            await client.ping()
            os.kill(client.pid, signal.SIGSTOP)  # the agent cannot answer while stopped
            await wait_stopped(client.pid)
            pending = asyncio.ensure_future(client.ping())
            await asyncio.sleep(0.05)
            assert not pending.done()
            os.kill(client.pid, signal.SIGKILL)
            with pytest.raises(AgentDiedError) as info:
                await pending
            assert "before answering ping" in str(info.value)

    run(main())


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an executable"):
        DeployerClient(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        find_binary(str(tmp_path / "nope"))


def test_env_and_home_reach_the_agent(agent_bin: str, tmp_path: Path) -> None:
    """MODEL_DEPLOYER_HOME from env is used when no --home is given: the ledger appears there."""
    home = tmp_path / "envhome"

    async def main() -> None:
        async with DeployerClient(agent_bin, env={"MODEL_DEPLOYER_HOME": str(home)}) as client:
            await client.history()

    run(main())
    assert home.is_dir() and any(home.iterdir())


def test_sync_client(agent_bin: str, agent_home: Path) -> None:
    with SyncDeployerClient(agent_bin, home=agent_home) as client:
        assert client.ping() == {}
        assert client.history(limit=1)["deployments"] == []
        with pytest.raises(DeployerError) as info:
            client.call("no.such.method")
        assert info.value.code == -32601
        pid = client.pid
    assert client.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sync_client_agent_death(agent_bin: str, agent_home: Path) -> None:
    client = SyncDeployerClient(agent_bin, home=agent_home)
    try:
        client.ping()
        os.kill(client.pid, signal.SIGKILL)
        with pytest.raises(AgentDiedError):
            for _ in range(100):
                client.ping()
    finally:
        client.close()


def test_timeout_cancels_the_request_and_the_client_stays_usable(agent_bin: str, agent_home: Path) -> None:
    async def main() -> None:
        async with DeployerClient(agent_bin, home=agent_home) as client:
            await client.ping()
            os.kill(client.pid, signal.SIGSTOP)
            await wait_stopped(client.pid)
            try:
                with pytest.raises(TimeoutError):
                    await client.call("ping", {}, timeout=0.1)
            finally:
                os.kill(client.pid, signal.SIGCONT)
            # The late answer (or the -32800 for the $/cancelRequest) is dropped; new calls work.
            assert await client.ping() == {}
            assert await client.history(limit=1) == {"deployments": [], "next_cursor": None}

    run(main())



def test_database_url_reaches_the_agent(agent_bin: str, agent_home: Path) -> None:
    """With a Postgres ledger (MODEL_DEPLOYER_TEST_DATABASE_URL, set by scripts/test.sh) history reads it;
    a bad URL is ledger_unavailable (-32007)."""

    async def main() -> None:
        url = os.environ.get("MODEL_DEPLOYER_TEST_DATABASE_URL")
        if url:
            async with DeployerClient(agent_bin, home=agent_home, database_url=url) as client:
                page = await client.history(limit=1)
                assert isinstance(page["deployments"], list)
            assert not (agent_home / "deployer.db").exists(), "no SQLite ledger when a database URL is given"
        bad = "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"
        async with DeployerClient(agent_bin, home=agent_home, database_url=bad) as client:
            with pytest.raises(DeployerError) as info:
                await client.history(limit=1)
            assert info.value.code == -32007
            assert info.value.reason == "ledger_unavailable"
            assert await client.ping() == {}

    run(main())
