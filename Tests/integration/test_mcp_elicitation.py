"""Approval gates answered by the human at an MCP client through `elicitation/create`, with the official MCP
Python SDK, real BentoML and nginx. Without the elicitation capability, gates stay with deploy.approve."""

from __future__ import annotations

import json
import os

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from deploy_support import EXPECT, TEST_POLICY, answer, example_tags, smoke, stop_everything, version


def params_for(agent_bin, agent_env, home):
    env = dict(agent_env, BENTOML_HOME=os.environ["MODEL_DEPLOYER_TEST_BENTOML_HOME"],
               MODEL_DEPLOYER_BENTOML=os.environ.get("MODEL_DEPLOYER_BENTOML", "bentoml"))
    (home / "policy.json").write_text(json.dumps(TEST_POLICY))
    return StdioServerParameters(command=str(agent_bin), args=["serve"], env=env)


def run(fn, timeout=300):
    async def main():
        with anyio.fail_after(timeout):
            return await fn()
    return anyio.run(main)


def test_gates_answered_through_elicitation(agent_bin, agent_env, agent_home):
    tags = example_tags()
    questions = []
    answers = [("alice", "approve"), ("bob", "approve"), ("bob", "approve")]  # alice first: four eyes refuses her

    async def elicit(context, params: types.ElicitRequestParams):
        questions.append(params)
        approver, decision = answers[len(questions) - 1]
        return types.ElicitResult(action="accept", content={"approver": approver, "decision": decision})

    async def scenario():
        async with stdio_client(params_for(agent_bin, agent_env, agent_home)) as (read, write):
            async with ClientSession(read, write, elicitation_callback=elicit) as session:
                await session.initialize()
                plan = await session.call_tool("deploy_plan", {
                    "model_name": "iris_clf", "model_version": version(tags, "v1"), "environment": "production",
                    "requested_by": "alice", "smoke_tests": smoke("v1")})
                assert plan.isError is False, plan
                did = plan.structuredContent["deployment_id"]
                assert plan.structuredContent["status"] == "awaiting_approval"
                # alice (the requester) answers the first question: refused by the four-eyes rule.
                refused = await session.call_tool("deploy_execute", {"deployment_id": did})
                assert refused.isError is True
                assert json.loads(refused.content[0].text)["error"]["data"]["reason"] == "self_approval_forbidden"
                # bob answers the deploy gate, then the promotion gate, in one tool call.
                out = await session.call_tool("deploy_execute", {"deployment_id": did})
                assert out.isError is False, out
                return did, out.structuredContent, (await session.call_tool("deploy_status", {"deployment_id": did})).structuredContent

    try:
        did, out, status = run(scenario)
        assert out["status"] == "live", out
        assert answer(out["endpoint_url"]) == json.dumps([EXPECT["v1"][0]]).replace(" ", "")
        assert len(questions) == 3
        assert did in questions[0].message and "production" in questions[0].message
        assert questions[0].requestedSchema["required"] == ["decision", "approver"]
        gates = [e for e in status["events"] if e["step"].startswith("gate:") and e["actor"] == "bob"]
        assert [e["step"] for e in gates] == ["gate:deploy", "gate:promote"], status["events"]
        assert all("elicitation" in e["message"] for e in gates)
    finally:
        stop_everything(agent_home)


def test_without_elicitation_the_gate_waits_for_deploy_approve(agent_bin, agent_env, agent_home):
    tags = example_tags()

    async def scenario():
        async with stdio_client(params_for(agent_bin, agent_env, agent_home)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                plan = await session.call_tool("deploy_plan", {
                    "model_name": "iris_clf", "model_version": version(tags, "v1"), "environment": "staging",
                    "requested_by": "alice"})
                r = await session.call_tool("deploy_execute", {"deployment_id": plan.structuredContent["deployment_id"]})
                return r

    try:
        r = run(scenario)
        assert r.isError is True
        assert json.loads(r.content[0].text)["error"]["data"]["reason"] == "approval_required"
    finally:
        stop_everything(agent_home)
