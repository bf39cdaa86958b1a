"""One step of a deployment graph in its own process (used by test_graph.test_resume_in_a_new_process).

    graph_process_step.py start  --home H --checkpoints F --thread T --model M --version V --env E
    graph_process_step.py resume --home H --checkpoints F --thread T --approver A --decision approve|reject
    graph_process_step.py show   --home H --checkpoints F --thread T

Prints one JSON object on the last line of stdout. `start` runs the sync graph (SqliteSaver),
`resume` the async one (AsyncSqliteSaver): both read and write the same checkpoint file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3

from langgraph.types import Command

from model_deployer_client import DeployerClient, SyncDeployerClient
from model_deployer_client.graph import build_deployment_graph, pending_gate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["start", "resume", "show"])
    parser.add_argument("--home", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--thread", required=True)
    parser.add_argument("--model")
    parser.add_argument("--version")
    parser.add_argument("--env")
    parser.add_argument("--approver")
    parser.add_argument("--decision")
    args = parser.parse_args()
    config = {"configurable": {"thread_id": args.thread}}

    if args.step == "start":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(args.checkpoints, check_same_thread=False)
        with SyncDeployerClient(home=args.home) as client:
            graph = build_deployment_graph(client, checkpointer=SqliteSaver(conn))
            result = graph.invoke(
                {
                    "model_name": args.model,
                    "model_version": args.version,
                    "environment": args.env,
                    "requested_by": "ci-bot",
                },
                config,
            )
            report = {"interrupt": result["__interrupt__"][0].value, "agent_pid": client.pid}
        conn.close()
    elif args.step == "resume":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async def resume() -> dict:
            async with AsyncSqliteSaver.from_conn_string(args.checkpoints) as saver:
                async with DeployerClient(home=args.home) as client:
                    graph = build_deployment_graph(client, checkpointer=saver)
                    state = await graph.ainvoke(
                        Command(resume={"approver": args.approver, "decision": args.decision}), config
                    )
                    return {"state": state, "agent_pid": client.pid}

        report = asyncio.run(resume())
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(args.checkpoints, check_same_thread=False)

        def no_agent() -> SyncDeployerClient:
            raise AssertionError("reading a checkpoint needs no agent")

        graph = build_deployment_graph(no_agent, checkpointer=SqliteSaver(conn), sync=True)
        snapshot = graph.get_state(config)
        report = {"state": snapshot.values, "next": list(snapshot.next), "gate": pending_gate(snapshot)}
        conn.close()
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
