"""A ready LangGraph deployment flow over the agent.

Nodes and edges::

    START -> plan
    plan            -> approval_gate (awaiting_approval) | execute (no gate) | END (refused)
    approval_gate   -> apply_approval (answer given) | approval_gate (invalid answer)      [interrupt]
    apply_approval  -> execute (approved) | approval_gate (refused, e.g. four eyes) | END (rejected, expired)
    execute         -> verify (live) | promotion_gate (awaiting_promotion) | step_gate (awaiting_step)
                       | END (failed, rolled_back, aborted)
    promotion_gate  -> apply_promotion (answer given) | promotion_gate (invalid answer)   [interrupt]
    apply_promotion -> verify (live) | promotion_gate (refused) | step_gate (awaiting_step)
                       | execute (approved, not yet run) | END
    step_gate       -> apply_step (answer given) | step_gate (invalid answer)             [interrupt]
    apply_step      -> step_gate (the next step's gate) | verify (live) | step_gate (refused)
                       | END (aborted: a rejected step gate aborts the canary)
    verify          -> END (passed: outcome live) | rollback (failed)
    rollback        -> END (outcome rolled_back or rollback_failed)

The gates only call ``interrupt()``; every agent call happens in another node, because a resumed node
runs again from its start. The graph state holds the ``deployment_id`` and what the agent answered;
the agent's ledger holds the deployment itself, so a thread checkpointed by one process can be resumed
by another process running a different agent process on the same ledger.

Resume a gate with ``Command(resume={"approver": "alice", "decision": "approve", "comment": "..."})``.

A canary (``options={"strategy": "canary", "canary": {"step_gates": True, ...}}``) interrupts at each step
gate (payload ``gate`` ``"step"``: the weights in force, the last analysis window, the next weight); an
approval raises the weight (``deploy.approve`` with gate ``step``: the rollout runs on to the next gate or
the end, its ``canary_step``/``analysis`` progress streamed like execute's), a rejection aborts the canary
(outcome ``aborted``: traffic back on the stable version). The state's ``canary`` holds the last weight
step / analysis data seen.

Refusals land in the state, not in an exception: a missing input key, or the agent refusing a request
(``model_not_found``, ``plan_stale``, ``rollout_in_progress``, invalid params: codes -32602 and
-32001..-32006), ends the run with ``outcome`` ``"refused"`` and ``error`` ``{code, reason, message,
data}``. Failures of the agent itself (``ledger_unavailable``, ``runtime_unavailable``, internal errors,
a dead agent) still raise, so the caller (or a LangGraph retry policy) can run the node again.

One thread, one deployment at a time. New input on a thread whose run has finished (any ``outcome``)
starts a new run: a new plan, with its own idempotency key, and a fresh state. New input on a thread whose
deployment is still under way (waiting at a gate, or cut off mid-rollout) does not start a second one:
the thread keeps its request and carries on with that deployment; at a gate the interrupt payload's
``error`` has ``reason`` ``"thread_busy"``.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Literal

# Pydantic (which LangGraph uses for get_input_jsonschema() and friends) refuses typing.TypedDict before
# Python 3.12; typing_extensions' TypedDict works everywhere (LangGraph depends on typing_extensions).
from typing_extensions import NotRequired, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from .client import DeployerClient
from .errors import DeployerError
from .sync import SyncDeployerClient
from .types import TERMINAL_STATUSES, StatusResult, to_output

Outcome = Literal["live", "rejected", "failed", "rolled_back", "aborted", "expired", "rollback_failed", "refused"]

_INPUT_KEYS = ("model_name", "model_version", "environment", "requested_by")
_REQUEST_KEYS = (*_INPUT_KEYS, "options")


class DeploymentInput(TypedDict):
    """What a run of the deployment graph takes (the graph's input schema)."""

    model_name: str
    model_version: str
    """A version of the model in the BentoML store, or ``"latest"``."""
    environment: str
    requested_by: str
    options: NotRequired[dict[str, Any]]
    """More ``deploy.plan`` params: bento, strategy, smoke_tests, requirements, gates, idempotency_key,
    canary."""


class DeploymentState(TypedDict, total=False):
    """State of the deployment graph. Inputs: the first five keys (``options`` optional)."""

    model_name: str
    model_version: str
    environment: str
    requested_by: str
    options: dict[str, Any] | None
    """More ``deploy.plan`` params: bento, strategy, smoke_tests, requirements, gates, idempotency_key.
    Consumed by the plan node (then ``None``; the run's input stays in ``request``)."""

    deployment_id: str
    plan: dict[str, Any]
    plan_hash: str
    status: str
    """The deployment's status as last reported by the agent."""
    approval: dict[str, Any] | None
    """The resume value of the approval gate: {approver, decision, comment?}."""
    approval_error: dict[str, Any] | None
    """Why the last approval was refused (the gate asks again)."""
    promotion: dict[str, Any] | None
    step_decision: dict[str, Any] | None
    """The resume value of the current canary step gate: {approver, decision, comment?}."""
    canary: dict[str, Any] | None
    """The last ``canary_step``/``analysis`` progress data of the rollout: step_index, weight, weights,
    analysis (see :class:`~model_deployer_client.types.CanaryStepData`)."""
    output: dict[str, Any]
    """The execute result (``ExecuteResult``; ``deployment_timestamp`` is a datetime)."""
    verification: dict[str, Any]
    """{passed, checks{name: bool}, reason}."""
    rollback: dict[str, Any]
    """The ``deploy.rollback`` result."""
    outcome: Outcome | None
    error: dict[str, Any] | None
    """Why the run was refused or the deployment failed: {code (int), reason, message, data?, step?}."""
    request: dict[str, Any] | None
    """The input the thread's current deployment was planned from."""
    run: int
    """How many runs this thread has started (1 for the first); part of the idempotency key."""


@dataclass
class _Call:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


_Step = Generator[_Call, Any, dict[str, Any]]


def _err(exc: DeployerError) -> dict[str, Any]:
    return {"code": exc.code, "reason": exc.reason, "message": exc.message, "data": exc.data}


def _is_refusal(exc: DeployerError) -> bool:
    """The agent said no to this request (it would say no again): invalid params, not found, conflicts,
    stale plans, approvals, refused plans, nothing to roll back. Not: the agent's own failures."""
    return exc.code == -32602 or -32006 <= exc.code <= -32001


def _refused(exc: DeployerError) -> dict[str, Any]:
    return {"outcome": "refused", "error": _err(exc)}


# The fields one run writes; a new run on the same thread starts without them.
_RUN_FIELDS = (
    "deployment_id", "plan", "plan_hash", "status", "approval", "approval_error", "promotion", "output",
    "verification", "rollback", "outcome", "error", "request", "step_decision", "canary",
)

_END_STATUSES = ("failed", "rolled_back", "rejected", "expired", "aborted")
"""Rollout results that end the run with that outcome."""


class _CanaryRecorder:
    """A progress callback that keeps the last canary step / analysis data and passes every note on."""

    def __init__(self, on_progress: Callable[..., Any] | None) -> None:
        self._on_progress = on_progress
        self.last: dict[str, Any] | None = None

    def __call__(self, note: dict[str, Any]) -> Any:
        if isinstance(note, dict) and note.get("step") in ("canary_step", "analysis") and isinstance(note.get("data"), dict):
            merged = dict(self.last or {})
            merged.update(note["data"])
            if note["step"] == "canary_step" and "analysis" not in note["data"]:
                merged.pop("analysis", None)  # a new step: the last window was the previous step's
            self.last = merged
        if self._on_progress is not None:
            return self._on_progress(note)
        return None

    def update(self) -> dict[str, Any]:
        return {"canary": self.last} if self.last is not None else {}


def _normalize_decision(value: Any, gate: str) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(value, dict):
        return None, f"resume the {gate} gate with a dict {{approver, decision, comment?}}, got {type(value).__name__}"
    approver = value.get("approver")
    decision = value.get("decision")
    if decision is True:
        decision = "approve"
    elif decision is False:
        decision = "reject"
    if not isinstance(approver, str) or not approver:
        return None, "approver is required"
    if decision not in ("approve", "reject"):
        return None, "decision must be 'approve' or 'reject'"
    result = {"approver": approver, "decision": decision}
    if value.get("comment") is not None:
        result["comment"] = str(value["comment"])
    if value.get("signature") is not None:  # an SSH-signed approval (environments that require signatures)
        result["signature"] = str(value["signature"])
    return result, None


def _after_execute(result: dict[str, Any]) -> dict[str, Any]:
    status = result.get("status")
    update: dict[str, Any] = {"output": result, "status": status, "error": result.get("error")}
    if status in _END_STATUSES:
        update["outcome"] = status
    return update


def _output_from_status(status: StatusResult) -> dict[str, Any]:
    d = status["deployment"]
    return to_output(
        {
            "deployment_id": d["deployment_id"],
            "endpoint_url": d.get("endpoint_url"),
            "deployment_strategy": d.get("deployment_strategy"),
            "previous_version": d.get("previous_version"),
            "deployment_timestamp": d.get("finished_at") or d.get("updated_at"),
            "health_check_passed": d.get("health_check_passed"),
            "metrics_baseline": d.get("metrics_baseline"),
            "status": d.get("status"),
            "model_name": d.get("model_name"),
            "model_version": d.get("model_version"),
            "environment": d.get("environment"),
            "slot": d.get("slot"),
            **({"error": d["error"]} if d.get("error") else {}),
        }
    )


# ---------------------------------------------------------------------------- node logic (generators)
# Each step yields the agent calls it needs; a sync or async driver performs them, so one implementation
# serves graph.invoke (SyncDeployerClient) and graph.ainvoke (DeployerClient).


def _run_finished(state: DeploymentState) -> bool:
    return bool(state.get("outcome")) or state.get("status") in TERMINAL_STATUSES - {"live"}


def _request_of(state: DeploymentState) -> dict[str, Any]:
    return {key: state.get(key) for key in _REQUEST_KEYS if state.get(key) not in (None, {})}


def _idempotency_key(thread_id: str, run: int) -> str:
    # Run 1 keeps the key earlier versions derived from the thread id alone, so their threads still resume.
    seed = thread_id if run <= 1 else f"{thread_id}#run{run}"
    return "lg-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def _plan_step(state: DeploymentState, thread_id: str | None, idempotency: bool) -> _Step:
    run = state.get("run") or 1
    fresh: dict[str, Any] = {}
    if state.get("deployment_id") or state.get("outcome"):
        if _run_finished(state):  # the thread's last run ended: this input starts a new one
            run += 1
            fresh = {key: None for key in _RUN_FIELDS}
        else:
            # The thread's deployment is still under way (at a gate, or cut off mid-rollout): go on with it.
            recorded = state.get("request")
            given = _request_of(state)
            if not recorded or all(recorded.get(k) == v for k, v in given.items()):
                return {"options": None}
            where = state.get("status") or "in flight"
            busy = {
                "reason": "thread_busy",
                "message": f"this thread's deployment {state['deployment_id']} of "
                f"{recorded.get('model_name')}:{recorded.get('model_version')} is still {where}: finish it "
                "(resume the gate with Command(resume=...)) or use a new thread_id for a new deployment",
                "ignored_input": {k: v for k, v in given.items() if recorded.get(k) != v},
            }
            return {**{key: recorded.get(key) for key in _INPUT_KEYS}, "options": None, "approval_error": busy}

    missing = [key for key in _INPUT_KEYS if not isinstance(state.get(key), str) or not state.get(key)]
    if missing:
        return {
            **fresh,
            "run": run,
            "options": None,
            "outcome": "refused",
            "error": {
                "code": -32602,
                "reason": "invalid_params",
                "message": f"the graph input needs {', '.join(missing)} (non-empty strings)",
                "data": {"reason": "invalid_params", "field": missing[0], "missing": missing},
            },
        }
    options = dict(state.get("options") or {})
    if idempotency and thread_id and "idempotency_key" not in options:
        options["idempotency_key"] = _idempotency_key(thread_id, run)
    try:
        result = yield _Call(
            "plan",
            (state["model_name"], state["model_version"], state["environment"], state["requested_by"]),
            options,
        )
    except DeployerError as exc:
        if not _is_refusal(exc):
            raise
        return {**fresh, "run": run, "options": None, **_refused(exc)}
    # options are consumed here (kept in request): LangGraph keeps a channel a later input leaves out, and
    # a new run must not inherit the last run's smoke tests or gates.
    return {
        **fresh,
        "run": run,
        "options": None,
        "request": _request_of(state),
        "deployment_id": result["deployment_id"],
        "plan": result.get("plan", {}),
        "plan_hash": result.get("plan_hash"),
        "status": result["status"],
        "approval": None,
        "approval_error": None,
    }


def _apply_approval_step(state: DeploymentState) -> _Step:
    approval = state.get("approval")
    if not approval:
        return {}
    deployment_id = state["deployment_id"]
    try:
        result = yield _Call(
            "approve",
            (deployment_id, approval["approver"], approval["decision"]),
            {"gate": "deploy", "comment": approval.get("comment"), "signature": approval.get("signature")},
        )
    except DeployerError as exc:
        if exc.reason == "not_awaiting_approval":  # already applied (node re-run) or decided elsewhere
            status = yield _Call("status", (deployment_id,))
            return {"status": status["deployment"]["status"], "approval_error": None}
        if exc.reason == "approval_expired":
            return {"status": "expired", "outcome": "expired", "error": _err(exc)}
        if exc.code == -32004:  # self_approval_forbidden, approver_not_allowed, ...: ask again
            return {"approval": None, "approval_error": _err(exc)}
        if _is_refusal(exc):
            return _refused(exc)
        raise
    update: dict[str, Any] = {"status": result["status"], "approval_error": None}
    if result["status"] == "rejected":
        update["outcome"] = "rejected"
    return update


def _execute_step(state: DeploymentState, on_progress: Callable[..., Any] | None) -> _Step:
    deployment_id = state["deployment_id"]
    recorder = _CanaryRecorder(on_progress)
    try:
        result = yield _Call("execute", (deployment_id,), {"on_progress": recorder})
    except DeployerError as exc:
        if exc.reason != "not_executable":
            if _is_refusal(exc):  # plan_stale, rollout_in_progress, approval_required, ...
                return _refused(exc)
            raise
        # Re-run after a crash: the agent already moved on; take its word for where the deployment is.
        status = yield _Call("status", (deployment_id,))
        result = _output_from_status(status)
    return {**_after_execute(result), **recorder.update()}


def _apply_promotion_step(state: DeploymentState, on_progress: Callable[..., Any] | None) -> _Step:
    return _apply_gate_decision(state, on_progress, key="promotion", gate="promote", clear_on_done=False)


def _apply_step_step(state: DeploymentState, on_progress: Callable[..., Any] | None) -> _Step:
    """Applies a canary step gate's decision: approve raises the weight (and runs the rollout on to the next
    gate or the end), reject aborts the canary."""
    return _apply_gate_decision(state, on_progress, key="step_decision", gate="step", clear_on_done=True)


def _apply_gate_decision(state: DeploymentState, on_progress: Callable[..., Any] | None, *, key: str, gate: str,
                         clear_on_done: bool) -> _Step:
    """Sends the human's decision held in ``state[key]`` for ``gate``. An approval the agent refuses for this
    approver (for example ``approver_not_allowed``) clears the decision so the graph asks again; one that was
    already applied (a re-run node, or an abort elsewhere) reads where the deployment is instead."""
    decision = state.get(key)
    if not decision:
        return {}
    deployment_id = state["deployment_id"]
    recorder = _CanaryRecorder(on_progress)
    done: dict[str, Any] = {key: None} if clear_on_done else {}
    try:
        result = yield _Call(
            "approve",
            (deployment_id, decision["approver"], decision["decision"]),
            {"gate": gate, "comment": decision.get("comment"), "on_progress": recorder,
             "signature": decision.get("signature")},
        )
    except DeployerError as exc:
        if exc.reason == "not_awaiting_approval":
            status = yield _Call("status", (deployment_id,))
            return {**_after_execute(_output_from_status(status)), **done, **recorder.update()}
        if exc.code == -32004 and exc.reason != "approval_expired":
            return {key: None, "approval_error": _err(exc)}
        if _is_refusal(exc):
            return {**done, **_refused(exc)}
        raise
    update: dict[str, Any] = {**done, "approval_error": None, **recorder.update()}
    if isinstance(result.get("output"), dict):
        return {**update, **_after_execute(result["output"])}
    update["status"] = result["status"]
    if result["status"] in _END_STATUSES:
        update["outcome"] = result["status"]
    return update


def _verify_step(state: DeploymentState, verify: Callable[..., Any] | None) -> _Step:
    deployment_id = state["deployment_id"]
    output = state.get("output") or {}
    status = yield _Call("status", (deployment_id,))
    deployment = status["deployment"]
    live = status.get("live") or {}
    checks = {
        "status_live": deployment.get("status") == "live",
        "health_check_passed": bool(output.get("health_check_passed", deployment.get("health_check_passed"))),
        "registry_points_here": live.get("deployment_id") == deployment_id,
        "slot_alive": status.get("slot_alive") is not False,
    }
    reason = ""
    if verify is not None and all(checks.values()):
        verdict = yield _Call("__user__", (verify, output, status))
        if isinstance(verdict, tuple):
            ok, reason = bool(verdict[0]), str(verdict[1])
        else:
            ok = bool(verdict)
        checks["custom"] = ok
    passed = all(checks.values())
    if not passed and not reason:
        reason = "failed checks: " + ", ".join(name for name, ok in checks.items() if not ok)
    update: dict[str, Any] = {
        "verification": {"passed": passed, "checks": checks, "reason": reason},
        "status": deployment.get("status"),
    }
    if passed:
        update["outcome"] = "live"
    return update


def _rollback_step(state: DeploymentState) -> _Step:
    reason = (state.get("verification") or {}).get("reason") or "verification failed"
    try:
        result = yield _Call(
            "rollback",
            (state["model_name"], state["environment"], state["requested_by"]),
            {"reason": f"graph verify failed for {state['deployment_id']}: {reason}"[:500]},
        )
    except DeployerError as exc:
        return {"outcome": "rollback_failed", "error": _err(exc)}
    return {"rollback": result, "status": result.get("status"), "outcome": "rolled_back"}


# ---------------------------------------------------------------------------- drivers


class _SyncDriver:
    def __init__(self, source: Any) -> None:
        self._source = source

    def run(self, gen: _Step) -> dict[str, Any]:
        if isinstance(self._source, SyncDeployerClient):
            return self._drive(gen, self._source)
        client = self._source()
        try:
            return self._drive(gen, client)
        finally:
            client.close()

    @staticmethod
    def _drive(gen: _Step, client: SyncDeployerClient) -> dict[str, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if call.method == "__user__":
                    fn, *args = call.args
                    value = fn(*args)
                else:
                    value = getattr(client, call.method)(*call.args, **call.kwargs)
            except DeployerError as exc:
                error = exc


class _AsyncDriver:
    def __init__(self, source: Any) -> None:
        self._source = source

    async def run(self, gen: _Step) -> dict[str, Any]:
        if isinstance(self._source, DeployerClient):
            return await self._drive(gen, self._source)
        client = self._source()
        if inspect.isawaitable(client):
            client = await client
        if client.pid is None:
            await client.start()
        try:
            return await self._drive(gen, client)
        finally:
            await client.close()

    @staticmethod
    async def _drive(gen: _Step, client: DeployerClient) -> dict[str, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if call.method == "__user__":
                    fn, *args = call.args
                    value = fn(*args)
                    if inspect.isawaitable(value):
                        value = await value
                else:
                    value = await getattr(client, call.method)(*call.args, **call.kwargs)
            except DeployerError as exc:
                error = exc


# ---------------------------------------------------------------------------- routing


def _route_after_plan(state: DeploymentState) -> str:
    if state.get("outcome"):
        return END
    status = state.get("status")
    if status == "awaiting_approval":
        return "approval_gate"
    if status == "awaiting_promotion":  # a thread that was busy at its promote gate
        return "promotion_gate"
    if status == "awaiting_step":  # ... or at a canary step gate
        return "step_gate"
    if status == "live":
        return "verify"
    return "execute"


def _route_after_approval_gate(state: DeploymentState) -> str:
    return "apply_approval" if state.get("approval") else "approval_gate"


def _route_after_apply_approval(state: DeploymentState) -> str:
    if state.get("outcome"):
        return END
    status = state.get("status")
    if status == "awaiting_approval":
        return "approval_gate"
    if status == "awaiting_promotion":
        return "promotion_gate"
    if status == "awaiting_step":
        return "step_gate"
    if status in ("approved", "planned"):
        return "execute"
    if status == "live":
        return "verify"
    return END


def _route_after_execute(state: DeploymentState) -> str:
    if state.get("outcome"):
        return END
    status = state.get("status")
    if status == "awaiting_promotion":
        return "promotion_gate"
    if status == "awaiting_step":
        return "step_gate"
    if status == "live":
        return "verify"
    return END


def _route_after_promotion_gate(state: DeploymentState) -> str:
    return "apply_promotion" if state.get("promotion") else "promotion_gate"


def _route_after_apply_gate(state: DeploymentState) -> str:
    """After a promotion or step approval: the next gate, verification, or execute again when the approve
    call was cut off mid-rollout (take the agent's word for where it is)."""
    if state.get("outcome"):
        return END
    status = state.get("status")
    if status == "awaiting_promotion":
        return "promotion_gate"
    if status == "awaiting_step":
        return "step_gate"
    if status == "live":
        return "verify"
    if status in ("approved", "deploying", "validating", "switching", "canary"):
        return "execute"
    return END


def _route_after_step_gate(state: DeploymentState) -> str:
    return "apply_step" if state.get("step_decision") else "step_gate"



def _route_after_verify(state: DeploymentState) -> str:
    return END if (state.get("verification") or {}).get("passed") else "rollback"


# ---------------------------------------------------------------------------- gates (interrupt only)


def _approval_gate(state: DeploymentState) -> dict[str, Any]:
    plan = state.get("plan") or {}
    gates = [g for g in plan.get("gates") or [] if g.get("kind") == "deploy"]
    answer = interrupt(
        {
            "gate": "deploy",
            "deployment_id": state.get("deployment_id"),
            "model_name": state.get("model_name"),
            "model_version": state.get("model_version"),
            "environment": state.get("environment"),
            "requested_by": state.get("requested_by"),
            "strategy": plan.get("strategy"),
            "reasons": plan.get("reasons"),
            "previous_version": plan.get("previous_version"),
            "approvers": gates[0].get("approvers") if gates else None,
            "plan_hash": state.get("plan_hash"),  # what a signed approval covers (with deployment_id, gate, decision)
            "error": state.get("approval_error"),
        }
    )
    decision, problem = _normalize_decision(answer, "deploy")
    if decision is None:
        return {"approval": None, "approval_error": {"reason": "invalid_resume", "message": problem}}
    return {"approval": decision}


def _promotion_gate(state: DeploymentState) -> dict[str, Any]:
    output = state.get("output") or {}
    answer = interrupt(
        {
            "gate": "promote",
            "deployment_id": state.get("deployment_id"),
            "model_name": state.get("model_name"),
            "model_version": state.get("model_version"),
            "environment": state.get("environment"),
            "slot": output.get("slot"),
            "health_check_passed": output.get("health_check_passed"),
            "metrics_baseline": output.get("metrics_baseline"),
            "previous_version": output.get("previous_version"),
            "plan_hash": state.get("plan_hash"),
            "error": state.get("approval_error"),
        }
    )
    decision, problem = _normalize_decision(answer, "promote")
    if decision is None:
        return {"promotion": None, "approval_error": {"reason": "invalid_resume", "message": problem}}
    return {"promotion": decision}


def _step_gate(state: DeploymentState) -> dict[str, Any]:
    plan = state.get("plan") or {}
    settings = (plan.get("config") or {}).get("canary") or {}
    steps = settings.get("steps") or []
    canary = state.get("canary") or {}
    index = canary.get("step_index")
    next_weight = None
    if isinstance(index, int) and 0 <= index + 1 < len(steps):
        next_weight = steps[index + 1]
    answer = interrupt(
        {
            "gate": "step",
            "deployment_id": state.get("deployment_id"),
            "model_name": state.get("model_name"),
            "model_version": state.get("model_version"),
            "environment": state.get("environment"),
            "previous_version": plan.get("previous_version"),
            "steps": steps,
            "step_index": index,
            "weight": canary.get("weight"),
            "weights": canary.get("weights"),
            "next_weight": next_weight,
            "analysis": canary.get("analysis"),
            "plan_hash": state.get("plan_hash"),
            "error": state.get("approval_error"),
        }
    )
    decision, problem = _normalize_decision(answer, "step")
    if decision is None:
        return {"step_decision": None, "approval_error": {"reason": "invalid_resume", "message": problem}}
    return {"step_decision": decision}


# ---------------------------------------------------------------------------- builder


def deployment_graph_builder(
    client: DeployerClient | SyncDeployerClient | Callable[[], Any],
    *,
    sync: bool | None = None,
    verify: Callable[[dict[str, Any], StatusResult], Any] | None = None,
    on_progress: Callable[[dict[str, Any]], Any] | None = None,
    idempotency: bool = True,
) -> StateGraph:
    """Returns the uncompiled :class:`StateGraph` of :func:`build_deployment_graph` (to extend it)."""
    if sync is None:
        sync = isinstance(client, SyncDeployerClient)
    if sync and isinstance(client, DeployerClient):
        raise TypeError("sync=True needs a SyncDeployerClient (or a factory returning one)")
    if not sync and isinstance(client, SyncDeployerClient):
        raise TypeError("a SyncDeployerClient makes a sync graph: pass sync=True or omit sync")

    def thread_of(config: RunnableConfig | None) -> str | None:
        return ((config or {}).get("configurable") or {}).get("thread_id")

    if sync:
        driver = _SyncDriver(client)

        def plan(state: DeploymentState, config: RunnableConfig) -> dict[str, Any]:
            return driver.run(_plan_step(state, thread_of(config), idempotency))

        def apply_approval(state: DeploymentState) -> dict[str, Any]:
            return driver.run(_apply_approval_step(state))

        def execute(state: DeploymentState) -> dict[str, Any]:
            return driver.run(_execute_step(state, on_progress))

        def apply_promotion(state: DeploymentState) -> dict[str, Any]:
            return driver.run(_apply_promotion_step(state, on_progress))

        def apply_step(state: DeploymentState) -> dict[str, Any]:
            return driver.run(_apply_step_step(state, on_progress))

        def verify_node(state: DeploymentState) -> dict[str, Any]:
            return driver.run(_verify_step(state, verify))

        def rollback(state: DeploymentState) -> dict[str, Any]:
            return driver.run(_rollback_step(state))

    else:
        adriver = _AsyncDriver(client)

        def progress_sink() -> Callable[[dict[str, Any]], Any] | None:
            try:
                writer = get_stream_writer()  # stream_mode="custom" receives {"deploy.progress": note}
            except Exception:
                writer = None

            # Notifications arrive in the client's reader task: run the writer in this node's context.
            context = contextvars.copy_context()

            def sink(note: dict[str, Any]) -> Any:
                if writer is not None:
                    context.run(writer, {"deploy.progress": note})
                if on_progress is not None:
                    return on_progress(note)
                return None

            return sink

        async def plan(state: DeploymentState, config: RunnableConfig) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_plan_step(state, thread_of(config), idempotency))

        async def apply_approval(state: DeploymentState) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_apply_approval_step(state))

        async def execute(state: DeploymentState) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_execute_step(state, progress_sink()))

        async def apply_promotion(state: DeploymentState) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_apply_promotion_step(state, progress_sink()))

        async def apply_step(state: DeploymentState) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_apply_step_step(state, progress_sink()))

        async def verify_node(state: DeploymentState) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_verify_step(state, verify))

        async def rollback(state: DeploymentState) -> dict[str, Any]:  # type: ignore[misc]
            return await adriver.run(_rollback_step(state))

    builder = StateGraph(DeploymentState, input_schema=DeploymentInput)
    builder.add_node("plan", plan)
    builder.add_node("approval_gate", _approval_gate)
    builder.add_node("apply_approval", apply_approval)
    builder.add_node("execute", execute)
    builder.add_node("promotion_gate", _promotion_gate)
    builder.add_node("apply_promotion", apply_promotion)
    builder.add_node("step_gate", _step_gate)
    builder.add_node("apply_step", apply_step)
    builder.add_node("verify", verify_node)
    builder.add_node("rollback", rollback)

    builder.add_edge(START, "plan")
    builder.add_conditional_edges(
        "plan", _route_after_plan, ["approval_gate", "promotion_gate", "step_gate", "execute", "verify", END]
    )
    builder.add_conditional_edges("approval_gate", _route_after_approval_gate, ["apply_approval", "approval_gate"])
    builder.add_conditional_edges(
        "apply_approval",
        _route_after_apply_approval,
        ["approval_gate", "promotion_gate", "step_gate", "execute", "verify", END],
    )
    builder.add_conditional_edges("execute", _route_after_execute, ["promotion_gate", "step_gate", "verify", END])
    builder.add_conditional_edges("promotion_gate", _route_after_promotion_gate, ["apply_promotion", "promotion_gate"])
    builder.add_conditional_edges(
        "apply_promotion", _route_after_apply_gate, ["promotion_gate", "step_gate", "verify", "execute", END]
    )
    builder.add_conditional_edges("step_gate", _route_after_step_gate, ["apply_step", "step_gate"])
    builder.add_conditional_edges(
        "apply_step", _route_after_apply_gate, ["promotion_gate", "step_gate", "verify", "execute", END]
    )
    builder.add_conditional_edges("verify", _route_after_verify, ["rollback", END])
    builder.add_edge("rollback", END)
    return builder


def build_deployment_graph(
    client: DeployerClient | SyncDeployerClient | Callable[[], Any],
    *,
    checkpointer: Any = None,
    sync: bool | None = None,
    verify: Callable[[dict[str, Any], StatusResult], Any] | None = None,
    on_progress: Callable[[dict[str, Any]], Any] | None = None,
    idempotency: bool = True,
) -> Any:
    """Builds and compiles the deployment graph.

    Args:
        client: a started :class:`DeployerClient` (the graph runs with ``ainvoke``/``astream``), a
            :class:`SyncDeployerClient` (``invoke``/``stream``), or a factory returning one of them;
            a factory's client is started for each node and closed after it (the ledger carries the
            state between nodes). With a factory, ``sync`` says which kind it returns (default async).
        checkpointer: a LangGraph checkpointer (required for the gates: they interrupt). Use
            ``SqliteSaver``/``AsyncSqliteSaver`` (``langgraph-checkpoint-sqlite``) to resume in
            another process, ``MemorySaver`` within one.
        sync: build sync nodes (for a ``SyncDeployerClient``) or async ones.
        verify: an extra check after the rollout is live: ``verify(output, status)`` returns a bool
            or ``(bool, reason)`` (may be async with an async client); ``False`` rolls back.
        on_progress: receives every ``deploy.progress`` notification of the rollout. With an async
            client, ``stream_mode="custom"`` also yields ``{"deploy.progress": note}``.
        idempotency: derive ``deploy.plan``'s ``idempotency_key`` from the thread id, so a re-run plan
            node reuses the same deployment.

    Returns:
        The compiled graph. Input (:class:`DeploymentInput`): ``{"model_name", "model_version",
        "environment", "requested_by", "options"?}``; the final state has ``outcome`` (live, rejected,
        failed, rolled_back, aborted, expired, rollback_failed, refused), ``error``, ``deployment_id``, ``output``,
        ``verification``, ``rollback``. New input on a finished thread starts a new run (see the module
        docstring).
    """
    builder = deployment_graph_builder(
        client, sync=sync, verify=verify, on_progress=on_progress, idempotency=idempotency
    )
    return builder.compile(checkpointer=checkpointer)


def pending_gate(snapshot: Any) -> dict[str, Any] | None:
    """Returns the payload of the gate a paused thread waits at (from ``graph.get_state(config)``), or None."""
    for task in getattr(snapshot, "tasks", ()) or ():
        for intr in getattr(task, "interrupts", ()) or ():
            return intr.value
    return None
