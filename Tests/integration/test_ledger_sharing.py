"""The embedded SQLite ledger under concurrent first use: concurrent first calls in one agent, and several
agents opening a fresh ledger file at the same instant (WAL switch, migrations)."""

from __future__ import annotations


def test_concurrent_first_calls_share_one_ledger(spawn_agent):
    agent = spawn_agent()
    for i in range(8):
        agent.send({"jsonrpc": "2.0", "id": i, "method": "history.query", "params": {"limit": 1 + i}})
    answers = [agent.wait_response(i) for i in range(8)]
    assert all(a.get("result") == {"deployments": [], "next_cursor": None} for a in answers), answers


def test_agents_opening_a_fresh_ledger_at_once(spawn_agent, agent_home):
    for round_ in range(3):
        home = agent_home / f"round{round_}"
        home.mkdir()
        agents = [spawn_agent(env={"MODEL_DEPLOYER_HOME": str(home)}) for _ in range(4)]
        for a in agents:
            a.send({"jsonrpc": "2.0", "id": 1, "method": "history.query", "params": {}})
        for a in agents:
            r = a.wait_response(1)
            assert r.get("result") == {"deployments": [], "next_cursor": None}, (round_, r)
        for a in agents:
            a.close_stdin()
        assert (home / "deployer.db").exists()
