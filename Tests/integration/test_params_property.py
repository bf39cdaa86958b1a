"""Every param of every method in protocol/openrpc.json, sent with a wrong type, an over-long value and an
out-of-range number (including 1e19, 1e300, -0 and 1e400, which once killed the agent), is refused with
-32602 naming the field (a path such as `requirements.memory_mb` or `smoke_tests[0].api`), natively and
as an `isError` result over MCP `tools/call`, and the agent stays alive.

The bad values are derived from the schemas in the document, so a limit added to the contract is
exercised here without a change to this file."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

UUID = "01900000-0000-7000-8000-000000000000"
# A valid call of each method: a bad value is swapped into one place at a time.
BASES: dict[str, dict[str, Any]] = {
    "deploy.plan": {"model_name": "iris_clf", "model_version": "v1", "environment": "staging", "requested_by": "alice"},
    "deploy.approve": {"deployment_id": UUID, "approver": "bob", "decision": "approve"},
    "deploy.execute": {"deployment_id": UUID},
    "deploy.rollback": {"model_name": "iris_clf", "environment": "staging", "requested_by": "alice"},
    "deploy.abort": {"deployment_id": "01900000-0000-7000-8000-000000000000", "requested_by": "alice"},
    "deploy.status": {"deployment_id": UUID},
    "history.query": {},
    "initialize": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    "tools/list": {},
    "tools/call": {"name": "history_query", "arguments": {}},
}
# Valid members of nested objects, so that one bad member at a time is what is wrong.
NESTED_BASES: dict[str, Any] = {"smoke_tests": {"api": "predict", "input": {"x": 1}}}
TOOLS = {"deploy.plan": "deploy_plan", "deploy.execute": "deploy_execute", "deploy.rollback": "deploy_rollback", "deploy.abort": "deploy_abort",
         "deploy.status": "deploy_status", "history.query": "history_query"}
RAW = "\u0001raw:"  # a marker: the rest is JSON number text sent as it is (1e400, -0)


def resolve(schema: dict, doc: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def types_of(schema: dict) -> set[str]:
    t = schema.get("type")
    return {t} if isinstance(t, str) else set(t or [])


def wrong_type(types: set[str]) -> Any:
    if "string" not in types:
        return "not-a-" + "-".join(sorted(types) or ["thing"])
    if "integer" not in types and "number" not in types:
        return 12345
    return [True]


def bad_values(schema: dict, doc: dict) -> Iterator[tuple[str, Any]]:
    """(label, value) pairs that break `schema` at its own level."""
    schema = resolve(schema, doc)
    types = types_of(schema)
    if types:
        yield "wrong type", wrong_type(types)
    if "anyOf" in schema:
        yield "wrong type", {"an": "object"}
        for alt in schema["anyOf"]:
            alt = resolve(alt, doc)
            if alt.get("type") == "array" and alt.get("minItems"):
                yield "too few items", []
    if "string" in types:
        if "maxLength" in schema:
            yield "over-long", "a" * (schema["maxLength"] + 1)
            # Bytes, not characters: half as many two-byte characters still break the limit.
            yield "over-long in bytes", "é" * (schema["maxLength"] // 2 + 1)
        yield "NUL", "a\u0000b"
        if "enum" in schema:
            yield "not in enum", "no-such-" + schema["enum"][0]
    if types & {"number", "integer"}:
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if hi is not None:
            yield "above maximum", hi * 2 + 1
        for raw in ("1e19", "1e300", "1e400", "-1e400"):
            if hi is not None or raw.startswith("-"):
                yield raw, RAW + raw
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        if lo is not None:
            yield "below minimum", lo - 1
            if "exclusiveMinimum" in schema:
                yield "-0", RAW + "-0.0"
    if "array" in types and "maxItems" in schema:
        item = NESTED_BASES.get("smoke_tests") if resolve(schema.get("items", {}), doc).get("type") == "object" else None
        yield "too many items", [item or "deploy"] * (schema["maxItems"] + 1)


def cases(doc: dict) -> Iterator[tuple[str, str, str, Any]]:
    """(method, field path, label, params) for every bad value of every param, nested ones included."""
    for m in doc["methods"]:
        method = m["name"]
        if method not in BASES:
            continue
        for p in m.get("params", []):
            yield from _walk(method, p["name"], p["schema"], doc, lambda v, name=p["name"], method=method: {**BASES[method], name: v})


def _walk(method, path, schema, doc, place) -> Iterator[tuple[str, str, str, Any]]:
    schema = resolve(schema, doc)
    for label, value in bad_values(schema, doc):
        yield method, path, label, place(value)
    if schema.get("type") == "object":
        base = NESTED_BASES.get(path, {})
        for key, sub in schema.get("properties", {}).items():
            yield from _walk(method, f"{path}.{key}", sub, doc, lambda v, key=key: place({**base, key: v}))
    if schema.get("type") == "array":
        items = resolve(schema.get("items", {}), doc)
        if items.get("type") == "object":
            base = NESTED_BASES.get(path, {})
            for key, sub in items.get("properties", {}).items():
                yield from _walk(method, f"{path}[0].{key}", sub, doc, lambda v, key=key: place([{**base, key: v}]))
        elif items:
            for label, value in bad_values(items, doc):
                yield method, f"{path}[0]", label, place([value])


def encode(obj: Any) -> bytes:
    """JSON text in which RAW-marked strings become bare number text."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    marker = '"' + json.dumps(RAW)[1:-1]
    while marker in text:
        start = text.index(marker)
        end = text.index('"', start + 1)
        raw = json.loads(text[start:end + 1])[len(RAW):]
        text = text[:start] + raw + text[end + 1:]
    return text.encode()


def send(agent, rid, method, params) -> dict:
    agent.send_raw(encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))
    return agent.wait_response(rid)


def test_every_case_is_derived(openrpc_doc):
    all_cases = list(cases(openrpc_doc))
    fields = {(m, f) for m, f, _, _ in all_cases}
    # The walk reaches nested members and every method with params.
    for expected in [("deploy.plan", "requirements.memory_mb"), ("deploy.plan", "requirements.gpu"), ("deploy.plan", "smoke_tests[0].api"),
                     ("deploy.approve", "comment"), ("deploy.execute", "idempotency_key"), ("history.query", "status"),
                     ("deploy.plan", "requested_by"), ("tools/call", "name"), ("initialize", "protocolVersion")]:
        assert expected in fields, expected
    assert {m for m, _ in fields} == set(BASES)
    labels = {label for m, f, label, _ in all_cases if f == "requirements.memory_mb"}
    assert {"1e19", "1e300", "1e400", "-0", "above maximum", "wrong type"} <= labels, labels


def test_every_param_refused_natively_naming_the_field(spawn_agent, openrpc_doc, openrpc):
    agent = spawn_agent()
    n = 0
    for n, (method, field, label, params) in enumerate(cases(openrpc_doc), start=1):
        frame = send(agent, n, method, params)
        assert "error" in frame, (method, field, label, frame)
        assert frame["error"]["code"] == -32602, (method, field, label, frame)
        assert frame["error"]["data"]["reason"] == "invalid_params", (method, field, label, frame)
        assert frame["error"]["data"].get("field") == field, (method, field, label, frame)
        openrpc.check_error(frame["error"], method)
    assert n > 150, n
    assert agent.request("ping", {})["result"] == {}
    assert agent.proc.poll() is None


def test_every_tool_argument_refused_as_an_is_error_result(spawn_agent, openrpc_doc):
    agent = spawn_agent()
    agent.request("initialize", BASES["initialize"])
    n = 0
    for n, (method, field, label, params) in enumerate((c for c in cases(openrpc_doc) if c[0] in TOOLS), start=1):
        frame = send(agent, n, "tools/call", {"name": TOOLS[method], "arguments": params})
        assert "result" in frame, (method, field, label, frame)
        result = frame["result"]
        assert result["isError"] is True, (method, field, label, frame)
        error = result["structuredContent"]["error"]
        assert (error["code"], error["reason"], error.get("field")) == (-32602, "invalid_params", field), (method, field, label, frame)
        assert json.loads(result["content"][0]["text"])["error"]["field"] == field
    assert n > 100, n
    # An unknown tool is still a protocol error.
    unknown = agent.request("tools/call", {"name": "no_such_tool", "arguments": {}})
    assert unknown["error"]["code"] == -32602 and unknown["error"]["data"]["reason"] == "unknown_tool"
    assert agent.request("ping", {})["result"] == {}


@pytest.mark.parametrize("framing", ["ndjson", "lsp"])
def test_crash_inputs_in_both_framings(spawn_agent, framing):
    """The inputs of issue 9 that killed the agent with SIGILL, natively and over MCP, in both framings."""
    agent = spawn_agent(framing=framing)
    agent.request("initialize", BASES["initialize"])
    rid = 0
    for key in ("memory_mb", "gpu", "cpu", "expected_rps", "latency_slo_ms"):
        for raw in ("1e19", "1e300", "-0", "-0.0", "1e400"):
            if raw.startswith("-0") and key in ("gpu", "expected_rps"):
                continue  # -0 is 0: a valid gpu count and rps (checked to plan, below)
            params = {**BASES["deploy.plan"], "requirements": {key: RAW + raw}}
            rid += 1
            frame = send(agent, rid, "deploy.plan", params)
            assert frame.get("error", {}).get("data", {}).get("field") == f"requirements.{key}", (key, raw, frame)
            rid += 1
            frame = send(agent, rid, "tools/call", {"name": "deploy_plan", "arguments": params})
            assert frame["result"]["isError"] is True and frame["result"]["structuredContent"]["error"]["field"] == f"requirements.{key}"
    for key in ("gpu", "expected_rps"):
        rid += 1
        frame = send(agent, rid, "deploy.plan", {**BASES["deploy.plan"], "requirements": {key: RAW + "-0.0"}})
        # Past the params: no model in this empty store.
        assert frame["error"]["data"]["reason"] == "model_not_found", frame
    assert agent.request("ping", {})["result"] == {}
    assert agent.proc.poll() is None


def test_limits_of_the_issue(spawn_agent):
    """A 1 MB comment, a 100 KB execute idempotency key, a 200 KB one-grapheme requested_by, status: [],
    NUL in comment or idempotency key: all -32602 naming the field, none reaching the ledger."""
    agent = spawn_agent()
    one_grapheme = "e" + "\u0301" * 100_000
    checks = [
        ("deploy.approve", {"deployment_id": UUID, "approver": "bob", "decision": "approve", "comment": "x" * (1 << 20)}, "comment"),
        ("deploy.approve", {"deployment_id": UUID, "approver": "bob", "decision": "approve", "comment": "a\u0000b"}, "comment"),
        ("deploy.execute", {"deployment_id": UUID, "idempotency_key": "k" * 100_000}, "idempotency_key"),
        ("deploy.execute", {"deployment_id": UUID, "idempotency_key": "k\u0000"}, "idempotency_key"),
        ("deploy.plan", {**BASES["deploy.plan"], "idempotency_key": "k\u0000"}, "idempotency_key"),
        ("deploy.plan", {**BASES["deploy.plan"], "requested_by": one_grapheme}, "requested_by"),
        ("deploy.plan", {**BASES["deploy.plan"], "requested_by": "\u200b"}, "requested_by"),
        ("deploy.plan", {**BASES["deploy.plan"], "requested_by": "\u202e"}, "requested_by"),
        ("deploy.rollback", {**BASES["deploy.rollback"], "requested_by": "al\u202eice"}, "requested_by"),
        ("deploy.approve", {"deployment_id": UUID, "approver": "b\u200bob", "decision": "approve"}, "approver"),
        ("history.query", {"status": []}, "status"),
    ]
    for method, params, field in checks:
        frame = agent.request(method, params)
        assert frame.get("error", {}).get("code") == -32602, (method, field, str(frame)[:300])
        assert frame["error"]["data"]["reason"] == "invalid_params"
        assert frame["error"]["data"]["field"] == field
    # Nothing was stored: the ledger is empty.
    assert agent.request("history.query", {})["result"]["deployments"] == []
    assert agent.request("ping", {})["result"] == {}
