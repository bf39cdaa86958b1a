#!/usr/bin/env python3
"""Plan, approve and execute a deployment with the model-deployer Python client, printing progress.

    # a BentoML store with the iris example (examples/iris/build.sh prints the versions)
    BENTOML_HOME=/tmp/bentoml examples/iris/build.sh
    export BENTOML_HOME=/tmp/bentoml MODEL_DEPLOYER_BIN=$PWD/.build/release/model-deployer
    python clients/python/examples/deploy_example.py --model iris_clf --model-version latest \\
        --env staging --requested-by ci --approver alice --home /tmp/md-example \\
        --smoke '[{"api": "predict", "input": {"input": [[5.1, 3.5, 1.4, 0.2]]}}]'

    # the same through the LangGraph flow (the gates are interrupts; answered here on the terminal)
    python clients/python/examples/deploy_example.py --graph --model iris_clf --model-version latest ...

--smoke is a list of smoke tests: the new version must pass them before any traffic goes to it.

Without --approver the script asks on the terminal. Ctrl-C at a gate leaves the deployment waiting in
the ledger: `deployctl approve --id ...` (or this client) can pick it up later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

from model_deployer_client import DeployerClient, DeployerError


def show(note: dict) -> None:
    print(f"  [{note['progress']:>3.0f}%] {note['status']:<18} {note['message']}", file=sys.stderr)


def ask(gate: str, deployment_id: str, approver: str | None) -> tuple[str, str]:
    if approver:
        return approver, "approve"
    who = input(f"{gate} gate for {deployment_id}: your name (empty to reject): ").strip()
    return (who, "approve") if who else ("nobody", "reject")


async def with_client(args: argparse.Namespace) -> int:
    async with DeployerClient(args.bin, home=args.home) as client:
        plan = await client.plan(
            args.model, args.model_version, args.env, args.requested_by, smoke_tests=args.smoke, gates=args.gate or None
        )
        deployment_id = plan["deployment_id"]
        print(f"planned {deployment_id}: {plan['plan']['strategy']}", file=sys.stderr)
        for reason in plan["plan"].get("reasons", []):
            print(f"  - {reason}", file=sys.stderr)

        if plan["status"] == "awaiting_approval":
            approver, decision = ask("deploy", deployment_id, args.approver)
            answer = await client.approve(deployment_id, approver, decision, gate="deploy")
            if answer["status"] == "rejected":
                print("rejected", file=sys.stderr)
                return 3

        out = await client.execute(deployment_id, on_progress=show)
        if out["status"] == "awaiting_promotion":
            approver, decision = ask("promote", deployment_id, args.approver)
            answer = await client.approve(deployment_id, approver, decision, gate="promote", on_progress=show)
            out = answer.get("output") or out
        print(json.dumps(out, default=str, indent=2))
        return 0 if out.get("status") == "live" else 4


async def with_graph(args: argparse.Namespace) -> int:
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.types import Command

    from model_deployer_client.graph import build_deployment_graph

    async with DeployerClient(args.bin, home=args.home) as client:
        graph = build_deployment_graph(client, checkpointer=MemorySaver(), on_progress=show)
        config = {"configurable": {"thread_id": f"example-{uuid.uuid4()}"}}
        request = {
            "model_name": args.model,
            "model_version": args.model_version,
            "environment": args.env,
            "requested_by": args.requested_by,
            "options": {k: v for k, v in (("smoke_tests", args.smoke), ("gates", args.gate)) if v},
        }
        state = await graph.ainvoke(request, config)
        while "__interrupt__" in state:
            gate = state["__interrupt__"][0].value
            if gate.get("error"):
                print(f"  ! {gate['error'].get('message')}", file=sys.stderr)
            approver, decision = ask(gate["gate"], gate["deployment_id"], args.approver)
            state = await graph.ainvoke(Command(resume={"approver": approver, "decision": decision}), config)
        print(json.dumps({k: state.get(k) for k in ("deployment_id", "outcome", "output", "verification")}, default=str, indent=2))
        return 0 if state.get("outcome") == "live" else 4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-version", default="latest", help="a version in the BentoML store, or latest")
    parser.add_argument("--env", default="staging")
    parser.add_argument("--requested-by", default="example")
    parser.add_argument("--approver", help="approve every gate as this person (default: ask)")
    parser.add_argument("--gate", action="append", choices=["deploy", "promote"], help="an extra gate")
    parser.add_argument("--smoke", type=json.loads, help='smoke tests as JSON, e.g. [{"api":"predict","input":{...}}]')
    parser.add_argument("--home", help="agent state directory (default: $MODEL_DEPLOYER_HOME)")
    parser.add_argument("--bin", help="model-deployer binary (default: $MODEL_DEPLOYER_BIN or PATH)")
    parser.add_argument("--graph", action="store_true", help="run the LangGraph flow instead of direct calls")
    args = parser.parse_args()
    try:
        return asyncio.run(with_graph(args) if args.graph else with_client(args))
    except DeployerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
