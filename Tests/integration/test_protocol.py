"""The wire contract (protocol/) against the real binary.

- protocol/openrpc.json is a well-formed OpenRPC 1.3 document whose schemas are valid JSON Schema
  (draft 7) and whose references all resolve; it describes every method of the wire contract.
- Every transcript in protocol/examples/ replays against the real binary in both framings, and every
  answer validates against the document (see protocol/examples/README.md for the rules).
- rpc.discover answers exactly protocol/openrpc.json.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from conftest import (EXAMPLES, FRAMINGS, Bindings, load_transcript, match, match_unordered, substitute)

TRANSCRIPTS = sorted(EXAMPLES.glob("*.jsonl"))

NATIVE_METHODS = ["ping", "rpc.discover", "deploy.plan", "deploy.approve", "deploy.execute", "deploy.rollback",
                  "deploy.status", "deploy.list", "deploy.follow", "deploy.stop", "history.query"]
MCP_METHODS = ["initialize", "tools/list", "tools/call"]
NOTIFICATIONS = ["deploy.progress", "$/cancelRequest", "notifications/initialized", "notifications/cancelled",
                 "notifications/progress"]

# The structure of an OpenRPC 1.3 document, from the specification (https://spec.open-rpc.org/), as far as
# this project uses it. Schemas inside are checked separately against the draft 7 meta-schema.
_EXT = {"^x-": {}}
_REF = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string"}}, "additionalProperties": False}
_CONTENT_DESCRIPTOR = {"type": "object", "required": ["name", "schema"], "additionalProperties": False,
                       "patternProperties": _EXT,
                       "properties": {"name": {"type": "string", "minLength": 1}, "summary": {"type": "string"},
                                      "description": {"type": "string"}, "required": {"type": "boolean"},
                                      "schema": {"type": ["object", "boolean"]}, "deprecated": {"type": "boolean"}}}
_ERROR = {"type": "object", "required": ["code", "message"], "additionalProperties": False,
          "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}}}
OPENRPC_1_3_STRUCTURE = {
    "type": "object",
    "required": ["openrpc", "info", "methods"],
    "additionalProperties": False,
    "patternProperties": _EXT,
    "properties": {
        "openrpc": {"type": "string", "pattern": r"^1\.3\.\d+$"},
        "info": {"type": "object", "required": ["title", "version"], "additionalProperties": False, "patternProperties": _EXT,
                 "properties": {"title": {"type": "string"}, "version": {"type": "string"}, "description": {"type": "string"},
                                "termsOfService": {"type": "string"}, "contact": {"type": "object"},
                                "license": {"type": "object", "required": ["name"]}}},
        "servers": {"type": "array"},
        "externalDocs": {"type": "object"},
        "methods": {"type": "array", "items": {
            "type": "object", "required": ["name", "params"], "additionalProperties": False, "patternProperties": _EXT,
            "properties": {
                "name": {"type": "string", "minLength": 1}, "summary": {"type": "string"}, "description": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                "paramStructure": {"enum": ["by-name", "by-position", "either"]},
                "params": {"type": "array", "items": {"oneOf": [_CONTENT_DESCRIPTOR, _REF]}},
                "result": {"oneOf": [_CONTENT_DESCRIPTOR, _REF]},
                "errors": {"type": "array", "items": {"oneOf": [_ERROR, _REF]}},
                "links": {"type": "array"}, "examples": {"type": "array"}, "deprecated": {"type": "boolean"},
                "servers": {"type": "array"}, "externalDocs": {"type": "object"}}}},
        "components": {"type": "object", "additionalProperties": False, "properties": {
            "schemas": {"type": "object", "additionalProperties": {"type": ["object", "boolean"]}},
            "errors": {"type": "object", "additionalProperties": _ERROR},
            "contentDescriptors": {"type": "object"}, "examples": {"type": "object"}, "links": {"type": "object"},
            "examplePairings": {"type": "object"}, "tags": {"type": "object"}}},
    },
}


# -- the document ---------------------------------------------------------------------------------
def _walk_refs(value, path="$"):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from _walk_refs(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_refs(v, f"{path}/{i}")


def _resolve_pointer(doc, pointer):
    node = doc
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_openrpc_document_structure(openrpc_doc):
    errors = list(Draft7Validator(OPENRPC_1_3_STRUCTURE).iter_errors(openrpc_doc))
    assert not errors, [f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors]
    assert openrpc_doc["openrpc"] == "1.3.2"
    names = [m["name"] for m in openrpc_doc["methods"]]
    assert len(names) == len(set(names)), "method names must be unique"


def test_openrpc_schemas_are_valid_draft7(openrpc_doc):
    schemas = dict(openrpc_doc["components"]["schemas"])
    for m in openrpc_doc["methods"]:
        for p in m["params"]:
            schemas[f"{m['name']}/params/{p['name']}"] = p["schema"]
        schemas[f"{m['name']}/result"] = m["result"]["schema"]
        schemas[f"{m['name']}/x-params-schema"] = m["x-params-schema"]
    for n in openrpc_doc["x-notifications"]:
        schemas[f"notification {n['name']}"] = n["params"]
    for name, schema in schemas.items():
        try:
            Draft7Validator.check_schema(schema)
        except Exception as e:  # noqa: BLE001 - report which schema
            pytest.fail(f"{name} is not a valid draft 7 schema: {e}")


def test_openrpc_references_resolve(openrpc_doc):
    refs = list(_walk_refs(openrpc_doc))
    assert refs
    for where, ref in refs:
        assert ref.startswith("#/"), f"{where}: only local references are used ({ref})"
        try:
            _resolve_pointer(openrpc_doc, ref[1:])
        except (KeyError, IndexError, ValueError):
            pytest.fail(f"{where}: {ref} does not resolve")


def test_openrpc_describes_the_wire_contract(openrpc_doc):
    names = {m["name"] for m in openrpc_doc["methods"]}
    assert set(NATIVE_METHODS + MCP_METHODS) <= names, set(NATIVE_METHODS + MCP_METHODS) - names
    assert {n["name"] for n in openrpc_doc["x-notifications"]} == set(NOTIFICATIONS)
    # Each method's strict params schema and its params list say the same thing.
    for m in openrpc_doc["methods"]:
        assert m["summary"] and m["description"], f"{m['name']}: MCP tools show the description to the model"
        ps = m["x-params-schema"]
        assert ps["type"] == "object"
        assert list(ps["properties"]) == [p["name"] for p in m["params"]], m["name"]
        assert sorted(ps.get("required", [])) == sorted(p["name"] for p in m["params"] if p.get("required")), m["name"]
        for p in m["params"]:
            assert ps["properties"][p["name"]] == p["schema"], (m["name"], p["name"])
        if m["name"] in NATIVE_METHODS:
            assert ps["additionalProperties"] is False, f"{m['name']}: params must be strict"
            assert m["paramStructure"] == "by-name"
        for e in m.get("errors", []):
            assert e["$ref"].startswith("#/components/errors/")
    # The error table: every code once, every reason once, matching components/errors.
    table = openrpc_doc["x-errors"]
    codes = [e["code"] for e in table]
    assert len(codes) == len(set(codes))
    assert sorted(codes) == sorted(e["code"] for e in openrpc_doc["components"]["errors"].values())
    assert {-32700, -32600, -32601, -32602, -32603, -32800} <= set(codes)
    assert set(range(-32008, -32000)) <= set(codes)
    reasons = [r for e in table for r in e["reasons"]]
    assert len(reasons) == len(set(reasons)), "a reason belongs to one code"
    for r in reasons:
        assert re.fullmatch(r"[a-z][a-z_]*", r), r
    assert set(reasons) == set(openrpc_doc["components"]["schemas"]["ErrorData"]["properties"]["reason"]["enum"])
    for must in ["frame_too_large", "cancelled", "deployment_not_found", "model_not_found", "bento_not_found",
                 "rollout_in_progress", "plan_stale", "approval_required", "not_awaiting_approval",
                 "self_approval_forbidden", "approver_not_allowed", "approval_expired", "not_executable",
                 "strategy_unsupported", "strategy_unsafe", "already_live", "insufficient_resources",
                 "unknown_environment", "nothing_to_roll_back", "ledger_unavailable", "runtime_unavailable"]:
        assert must in reasons, must
    # Deployment objects carry every ledger column of the wire contract.
    dep = openrpc_doc["components"]["schemas"]["Deployment"]
    assert len(dep["required"]) == 24 and set(dep["required"]) <= set(dep["properties"])
    statuses = openrpc_doc["components"]["schemas"]["DeploymentStatus"]["enum"]
    assert len(statuses) == 18


def test_openrpc_schemas_accept_and_refuse(openrpc):
    """Spot checks that the schemas say what the wire contract says."""
    ok_plan = {"model_name": "iris", "model_version": "latest", "environment": "production", "requested_by": "alice",
               "strategy": "blue_green", "smoke_tests": [{"api": "classify", "input": {"x": [[1, 2, 3, 4]]}, "expect": [0]}],
               "requirements": {"cpu": 1, "memory_mb": 512}, "gates": ["promote"], "idempotency_key": "k1"}
    openrpc.check_params("deploy.plan", ok_plan)
    for bad in [{**ok_plan, "model_name": "Iris"}, {**ok_plan, "extra": 1}, {**ok_plan, "strategy": "rollback"},
                {k: v for k, v in ok_plan.items() if k != "environment"}, {**ok_plan, "gates": ["deploy", "deploy"]},
                {**ok_plan, "model_version": "a" * 64}]:
        with pytest.raises(AssertionError):
            openrpc.check_params("deploy.plan", bad)
    openrpc.check_params("history.query", {"status": ["live", "failed"], "since": "2026-01-01T00:00:00+02:00", "limit": 1000})
    for bad in [{"limit": 0}, {"limit": 1001}, {"status": []}, {"since": "2026-01-01"}, {"cursor": ""}]:
        with pytest.raises(AssertionError):
            openrpc.check_params("history.query", bad)
    openrpc.check_result("history.query", {"deployments": [], "next_cursor": None})
    openrpc.check_error({"code": -32600, "message": "Invalid Request", "data": {"reason": "frame_too_large", "message": "x"}})
    with pytest.raises(AssertionError):
        openrpc.check_error({"code": -32001, "message": "x", "data": {"reason": "plan_stale", "message": "x"}})
    openrpc.check_notification({"jsonrpc": "2.0", "method": "deploy.progress", "params": {
        "deployment_id": "01900000-0000-7000-8000-000000000000", "status": "deploying", "step": "start_slot",
        "message": "starting green", "progress": 10, "at": "2026-11-29T12:00:00.123Z"}})


# -- replay ---------------------------------------------------------------------------------------
def _requests_in(frame):
    """(id, method, params) of every request in a frame (or batch)."""
    items = frame if isinstance(frame, list) else [frame]
    for m in items:
        if isinstance(m, dict) and "id" in m and isinstance(m.get("method"), str):
            yield m["id"], m["method"], m.get("params")


def _responses_in(frame):
    items = frame if isinstance(frame, list) else [frame]
    return [m for m in items if isinstance(m, dict)]


def _key(id_):
    return (type(id_).__name__, json.dumps(id_))


def _validate_frame(openrpc, frame, sent):
    """Validates a received frame (or batch answer) against the contract."""
    for m in _responses_in(frame):
        if "method" in m and "id" not in m:
            openrpc.check_notification(m)
            continue
        method, params = sent.get(_key(m.get("id")), (None, None))
        if "result" in m:
            assert method is not None, f"a result for an id that was never sent: {m}"
            if method in openrpc.methods:
                openrpc.check_result(method, m["result"])
                if method in NATIVE_METHODS:
                    openrpc.check_params(method, params if params is not None else {})
        elif "error" in m:
            openrpc.check_error(m["error"], method)
            if m["error"]["code"] == -32602 and method in NATIVE_METHODS:
                with pytest.raises(AssertionError, match="does not match"):
                    openrpc.check_params(method, params if params is not None else {})
        else:
            pytest.fail(f"a frame that is neither a response nor a notification: {m}")


def replay(path: Path, framing: str, spawn_agent, openrpc) -> None:
    steps = load_transcript(path)
    env = None
    if steps and steps[0].get("requires") == "example_store":
        # Transcripts that plan and execute real deployments need the example model's BentoML store.
        steps.pop(0)
        from deploy_support import example_tags
        example_tags()  # skips (or fails under CI) when the test command did not build the store
        env = {"BENTOML_HOME": os.environ["MODEL_DEPLOYER_TEST_BENTOML_HOME"],
               "MODEL_DEPLOYER_BENTOML": os.environ.get("MODEL_DEPLOYER_BENTOML", "bentoml")}
    serve_args = []
    if steps and "serve_args" in steps[0]:
        serve_args = steps.pop(0)["serve_args"]
    signer = None
    if steps and "signing" in steps[0]:  # signed transcripts: keys, policy and signatures made here
        from signing_support import TranscriptSigner
        signer = TranscriptSigner(steps.pop(0)["signing"])
        serve_args = signer.serve_args() + serve_args
    agent = spawn_agent(*serve_args, framing=framing, env=env)
    bindings = Bindings()
    sent: dict = {}
    i = 0
    while i < len(steps):
        step = steps[i]
        if "comment" in step:
            i += 1
            continue
        if "send" in step:
            frame = substitute(step["send"], bindings)
            if signer is not None:
                frame = signer.fill(frame, bindings)
            for id_, method, params in _requests_in(frame):
                sent[_key(id_)] = (method, params)
            agent.send(frame)
            i += 1
            continue
        if "send_raw" in step:
            agent.send_raw(step["send_raw"])
            i += 1
            continue
        if "serve_args" in step:
            pytest.fail(f"{path.name}:{step['line']}: serve_args only as the first line")
        group = []
        while i < len(steps) and ("recv" in steps[i] or "comment" in steps[i]):
            if "recv" in steps[i]:
                group.append(steps[i])
            i += 1
        got = [agent.recv(timeout=60) for _ in group]
        problems = match_unordered([s["recv"] for s in group], got, bindings,
                                   f"{path.name}:{group[0]['line']}-{group[-1]['line']}")
        assert not problems, "\n".join(problems)
        for frame in got:
            _validate_frame(openrpc, frame, sent)
    extra = agent.sync()
    assert not extra, f"{path.name}: unexpected frames after the transcript: {extra}"


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(transcript, framing, spawn_agent, openrpc, agent_home):
    try:
        replay(transcript, framing, spawn_agent, openrpc)
    finally:
        from deploy_support import stop_everything
        stop_everything(agent_home)  # a transcript that goes live leaves its slot and router running


def test_transcripts_exist_and_parse():
    assert len(TRANSCRIPTS) >= 8
    for p in TRANSCRIPTS:
        steps = load_transcript(p)
        first = next(s for s in steps if "send" in s or "send_raw" in s)
        assert "send" in first and isinstance(first["send"], (dict, list)), f"{p.name}: must start with a JSON frame"


def test_every_method_appears_in_a_transcript(openrpc_doc):
    used = set()
    for p in TRANSCRIPTS:
        for s in load_transcript(p):
            if "send" in s:
                for _, method, _ in _requests_in(s["send"]):
                    used.add(method)
    missing = {m["name"] for m in openrpc_doc["methods"]} - used
    assert not missing, f"methods without a transcript: {sorted(missing)}"


@pytest.mark.parametrize("framing", FRAMINGS)
def test_rpc_discover_answers_the_document(framing, spawn_agent, openrpc_doc):
    agent = spawn_agent(framing=framing)
    r = agent.request("rpc.discover")
    assert "result" in r, r
    assert r["result"] == openrpc_doc, ("rpc.discover differs from protocol/openrpc.json: "
                                        "run scripts/embed-openrpc.py and rebuild")


def test_mcp_tool_schemas_match_the_document(spawn_agent, openrpc):
    """Each MCP tool's outputSchema accepts what the method's result schema accepts, by checking the same
    sample against both; and its inputSchema names the same params."""
    agent = spawn_agent("--mcp-allow-approve")
    agent.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
    tools = {t["name"]: t for t in agent.request("tools/list", {})["result"]["tools"]}
    assert set(tools) == {"deploy_plan", "deploy_approve", "deploy_execute", "deploy_abort", "deploy_rollback", "deploy_status", "deploy_list", "deploy_follow", "history_query"}
    for name, tool in tools.items():
        method = openrpc.methods[name.replace("_", ".", 1)]
        assert re.fullmatch(r"[a-z_]+", name)
        assert set(tool["inputSchema"]["properties"]) == {p["name"] for p in method["params"]}, name
        assert sorted(tool["inputSchema"].get("required", [])) == sorted(p["name"] for p in method["params"] if p.get("required")), name
        Draft7Validator.check_schema(tool["inputSchema"])
        assert "outputSchema" in tool, name
        Draft7Validator.check_schema(tool["outputSchema"])
    sample = {"deployments": [], "next_cursor": None}
    assert not list(Draft7Validator(tools["history_query"]["outputSchema"]).iter_errors(sample))
