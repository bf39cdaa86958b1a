#!/usr/bin/env python3
"""A stand-in for `model-deployer serve` in the client's unit tests: it speaks the canary part of the wire
contract (deploy.plan with strategy canary, execute/approve streaming canary_step and analysis progress,
step gates, deploy.abort, deploy.stop, history.query traffic_at) for one deployment, from a script, and
logs every request it gets to $FAKE_AGENT_LOG (one JSON line each). It checks nothing a real agent checks
(no BentoML, no router): the tests that use it test the client's argument building, parsing and the
LangGraph flow's routing; the real agent's behaviour is tested against the binary.

Behaviour: the canary's steps are plan.canary.steps (default [5, 25, 50, 100]); execute runs step 1 with
one passing analysis window and then waits at awaiting_step (step_gates) or goes on to live; each approved
step gate raises the weight by one step; a rejected one (or deploy.abort) aborts. With
FAKE_AGENT_FAIL_AT_STEP=N, the analysis of step N fails and the canary is aborted (analysis_failed).
deploy.follow in a fresh process plays a whole canary without gates (as if another process ran it).
"""
import json
import os
import sys
from datetime import datetime, timezone

LOG = os.environ.get("FAKE_AGENT_LOG")
FAIL_AT = int(os.environ.get("FAKE_AGENT_FAIL_AT_STEP", "0"))
STATE = {"status": None, "index": -1, "steps": [5, 25, 50, 100], "step_gates": False, "error": None, "events": []}
ID = "01930000-0000-7000-8000-00000000c4a7"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def send(frame: dict) -> None:
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def deployment() -> dict:
    return {
        "deployment_id": ID, "model_name": "iris_clf", "model_version": "v2", "environment": "canarytest",
        "bento_tag": "iris_classifier:b2", "endpoint_url": "http://127.0.0.1:39999", "deployment_strategy": "canary",
        "status": STATE["status"], "previous_version": "v1", "slot": "teal", "plan": {}, "plan_hash": "h" * 64,
        "health_check_passed": True, "metrics_baseline": None, "requested_by": "ci-bot", "approved_by": None,
        "approved_at": None, "started_at": None, "finished_at": None, "error": STATE["error"], "rollback_of": None,
        "idempotency_key": None, "created_at": now(), "updated_at": now(),
    }


def weights(w: int) -> dict:
    return {"v1": 100 - w, "v2": w}


def note(step: str, data: dict, message: str) -> None:
    params = {"deployment_id": ID, "status": STATE["status"], "step": step, "message": message,
              "progress": 50.0, "at": now(), "data": data}
    STATE["events"].append({"deployment_id": ID, "seq": len(STATE["events"]) + 1, "at": params["at"],
                            "from_status": None, "to_status": STATE["status"], "step": step, "actor": None,
                            "message": message, "data": data})
    send({"jsonrpc": "2.0", "method": "deploy.progress", "params": params})


def metrics(requests: int, errors: int, p95) -> dict:
    return {"requests": requests, "errors": errors, "error_rate": errors / requests if requests else 0.0, "p95_ms": p95}


def run_on() -> None:
    """From the current step: the next weight step, its analysis, then a gate, the next step, or the end."""
    while True:
        STATE["index"] += 1
        i = STATE["index"]
        w = STATE["steps"][i]
        STATE["status"] = "canary"
        # as the agent does: a note as the weight is raised, another once it is set
        note("canary_step", {"step_index": i, "weight": w, "weights": weights(w)}, f"raising to {w}%")
        note("canary_step", {"step_index": i, "weight": w, "weights": weights(w)}, f"weight {w}%")
        if w == 100:
            STATE["status"] = "live"
            return
        failed = FAIL_AT == i + 1
        analysis = {"verdict": "fail" if failed else "pass", "stable": metrics(1000 - 10 * w, 0, 4.0),
                    "candidate": metrics(10 * w, 3 * w if failed else 0, 4.5), "limits": {"max_error_rate_delta": 0.05}}
        note("analysis", {"step_index": i, "weight": w, "weights": weights(w), "analysis": analysis},
             f"analysis {analysis['verdict']}")
        if failed:
            abort("analysis_failed", "error rate 0.30 against 0.00")
            return
        if STATE["step_gates"]:
            STATE["status"] = "awaiting_step"
            return


def abort(reason: str, message: str) -> None:
    w = 0
    STATE["status"] = "aborted"
    STATE["error"] = {"code": "-32009", "reason": reason, "message": message}
    note("abort", {"weight": w, "weights": weights(w)}, message)


def output() -> dict:
    d = deployment()
    out = {"deployment_id": ID, "endpoint_url": d["endpoint_url"], "deployment_strategy": "canary",
           "previous_version": "v1", "deployment_timestamp": now(), "health_check_passed": True,
           "metrics_baseline": {}, "status": STATE["status"], "model_name": "iris_clf", "model_version": "v2",
           "environment": "canarytest", "slot": "teal"}
    if STATE["status"] == "awaiting_step":
        out["gate"] = "step"
    if STATE["error"]:
        out["error"] = STATE["error"]
    return out


def handle(method: str, params: dict):
    if method == "deploy.plan":
        canary = params.get("canary") or {}
        STATE["steps"] = canary.get("steps", STATE["steps"])
        STATE["step_gates"] = bool(canary.get("step_gates", False))
        STATE["status"] = "planned"
        plan = {"strategy": params.get("strategy", "auto"), "reasons": ["a canary was asked for"],
                "previous_version": "v1", "gates": [],
                "config": {"canary": {"steps": STATE["steps"], "step_gates": STATE["step_gates"],
                                      "pause_seconds": canary.get("pause_seconds", 30)}},
                "steps": [{"name": "canary_step", "weight": w} for w in STATE["steps"]]}
        return {"deployment_id": ID, "status": "planned", "plan_hash": "h" * 64, "plan": plan, "deployment": deployment()}
    if method == "deploy.execute":
        run_on()
        return output()
    if method == "deploy.approve":
        if STATE["status"] != "awaiting_step" or params.get("gate") not in (None, "step"):
            return {"error": {"code": -32004, "message": "not awaiting approval",
                              "data": {"reason": "not_awaiting_approval", "status": STATE["status"]}}}
        result = {"deployment_id": ID, "gate": "step", "decision": params["decision"], "approved_by": params["approver"]}
        if params["decision"] == "reject":
            abort("aborted", f"step gate rejected by {params['approver']}")
            return {**result, "status": STATE["status"]}
        run_on()
        return {**result, "status": STATE["status"], "output": output()}
    if method == "deploy.abort":
        if STATE["status"] not in ("canary", "awaiting_step"):
            return {"error": {"code": -32004, "message": f"deployment is {STATE['status']}",
                              "data": {"reason": "not_abortable", "status": STATE["status"]}}}
        abort("aborted", params.get("reason") or f"aborted by {params['requested_by']}")
        return {"deployment": deployment()}
    if method == "deploy.stop":
        STATE["status"] = "stopped"
        return {"deployment": deployment(), "stopped_slots": ["blue", "teal"]}
    if method == "deploy.status":
        live = None
        if STATE["status"] == "live":
            live = {"model_name": "iris_clf", "environment": "canarytest", "model_version": "v2", "deployment_id": ID,
                    "endpoint_url": "http://127.0.0.1:39999", "slot": "teal", "bento_tag": None, "previous_version": "v1",
                    "previous_deployment_id": None, "previous_slot": "blue", "updated_at": now()}
        return {"deployment": deployment(), "events": STATE["events"], "live": live, "slot_alive": True}
    if method == "deploy.follow":
        # Another process's rollout, seen from here: a whole canary without gates, each event as progress.
        if STATE["status"] is None:
            STATE["step_gates"] = False
            run_on()
        return {"deployment": deployment(), "last_seq": len(STATE["events"])}
    if method == "history.query":
        result = {"deployments": [], "next_cursor": None}
        if "traffic_at" in params:
            result["traffic"] = [{"version": "v1", "deployment_id": "d-v1", "weight": 75},
                                 {"version": "v2", "deployment_id": ID, "weight": 25}]
        return result
    if method == "ping":
        return {}
    return {"error": {"code": -32601, "message": f"method not found: {method}"}}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        frame = json.loads(line)
        if LOG:
            with open(LOG, "a") as log:
                log.write(json.dumps({"method": frame.get("method"), "params": frame.get("params")}) + "\n")
        if "id" not in frame:
            continue
        answer = handle(frame["method"], frame.get("params") or {})
        if isinstance(answer, dict) and set(answer) == {"error"}:
            send({"jsonrpc": "2.0", "id": frame["id"], "error": answer["error"]})
        else:
            send({"jsonrpc": "2.0", "id": frame["id"], "result": answer})


if __name__ == "__main__":
    main()
