"""Typed shapes of the agent's results (the wire contract in protocol/openrpc.json).

Everything is a plain ``dict`` at run time; these ``TypedDict``s only tell type checkers and readers what
is in it. Timestamps stay RFC 3339 strings (so results stay JSON-serialisable and can live in LangGraph
state), except ``ModelDeployerOutput.deployment_timestamp``, which the seed contract types as ``datetime``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal, NotRequired, TypedDict

DeploymentStatus = Literal[
    "planned",
    "awaiting_approval",
    "approved",
    "rejected",
    "deploying",
    "validating",
    "awaiting_promotion",
    "switching",
    "canary",
    "awaiting_step",
    "live",
    "failed",
    "rolled_back",
    "aborted",
    "stopped",
    "interrupted",
    "superseded",
    "expired",
    "stopped",
]
"""Every status a deployment can have.

A canary goes ``validating -> [awaiting_promotion] -> canary -> [awaiting_step -> canary]* -> live``;
``canary``/``awaiting_step`` may end ``aborted`` (failed analysis, a rejected step gate, ``deploy.abort``);
a ``live`` deployment taken down by ``deploy.stop`` ends ``stopped``."""

TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"rejected", "live", "failed", "rolled_back", "aborted", "stopped", "interrupted", "superseded", "expired"}
)
"""Statuses after which nothing more happens to a deployment (``live`` may later be superseded or stopped)."""

FAILED_STATUSES: frozenset[str] = frozenset({"failed", "rolled_back", "aborted"})
"""End states of a rollout that did not put (or keep) the new version live."""

GateKind = Literal["deploy", "promote", "step"]
"""An approval gate: ``deploy`` (before anything runs), ``promote`` (before traffic moves), ``step``
(a canary's gate before each weight step after the first)."""

Slot = Literal["blue", "green", "teal"]
"""A slot of a (model, environment): the live version, the warm previous one and a candidate each take one."""

Strategy = Literal["direct", "blue_green", "canary", "rollback"]
"""How a deployment reaches traffic."""


class DeploymentErrorInfo(TypedDict):
    """Why a deployment failed (``deployment.error`` / ``ExecuteResult.error``)."""

    code: int
    reason: str
    message: str
    step: NotRequired[str]


class Runtime(TypedDict):
    """Where a deployment runs (``deployment.runtime`` in deploy.status and history.query).

    ``kind`` is ``"local"`` (BentoML processes on the agent's machine; no other key) or ``"kubernetes"``:
    then ``context`` (``None``: kubectl's current one), ``namespace``, the version's ``deployment`` and the
    model's stable ``service``.
    """

    kind: Literal["local", "kubernetes"]
    context: NotRequired[str | None]
    namespace: NotRequired[str]
    deployment: NotRequired[str | None]
    service: NotRequired[str | None]


class Deployment(TypedDict):
    """A ledger row in wire form."""

    deployment_id: str
    model_name: str
    model_version: str
    environment: str
    bento_tag: str | None
    endpoint_url: str | None
    deployment_strategy: Strategy
    status: DeploymentStatus
    previous_version: str | None
    slot: Literal["blue", "green", "teal"] | None
    plan: dict[str, Any]
    plan_hash: str
    health_check_passed: bool | None
    metrics_baseline: dict[str, float] | None
    requested_by: str
    approved_by: str | None
    approved_at: str | None
    started_at: str | None
    finished_at: str | None
    error: DeploymentErrorInfo | None
    rollback_of: str | None
    idempotency_key: str | None
    created_at: str
    updated_at: str
    runtime: NotRequired[Runtime]
    events: NotRequired[list["DeploymentEvent"]]


class DeploymentEvent(TypedDict):
    """One state change in a deployment's audit trail."""

    deployment_id: str
    seq: int
    at: str
    from_status: str | None
    to_status: str
    step: str | None
    actor: str | None
    message: str | None
    data: dict[str, Any]


class VersionMetrics(TypedDict):
    """One version's traffic facts in an analysis window (counted by the router, on real traffic)."""

    requests: int
    errors: int
    error_rate: float
    p95_ms: float | None
    """``None`` when the window had no request of this version."""


class CanaryAnalysis(TypedDict):
    """One analysis window of a canary: the candidate against the stable version, same interval."""

    verdict: Literal["pass", "fail", "inconclusive"]
    stable: VersionMetrics
    candidate: VersionMetrics
    limits: dict[str, Any]
    """The thresholds the window was judged by (``max_error_rate_delta``, ``max_p95_ratio``, ...)."""


class CanaryStepData(TypedDict, total=False):
    """``data`` of a ``canary_step`` or ``analysis`` progress notification (and ledger event)."""

    step_index: int
    """Index into ``plan.config.canary.steps`` (0 for the first step)."""
    weight: int
    """The candidate's share of the endpoint's traffic, in percent."""
    weights: dict[str, int]
    """Percent per model version: ``{stable: 100 - weight, candidate: weight}``."""
    analysis: CanaryAnalysis


class Progress(TypedDict):
    """A ``deploy.progress`` notification."""

    deployment_id: str
    status: DeploymentStatus
    step: str
    """``deploy``, ``validate``, ``switch``, ... ; ``canary_step`` (a weight step) and ``analysis`` (an
    analysis window) carry :class:`CanaryStepData` in ``data``."""
    message: str
    progress: float
    at: str
    data: NotRequired[dict[str, Any]]


class CanaryAnalysisSettings(TypedDict, total=False):
    """``canary.analysis`` of ``deploy.plan`` (defaults in brackets)."""

    interval_seconds: int
    """Length of one analysis window [10]."""
    failure_limit: int
    """Failed windows in a row that abort [2]."""
    min_requests: int
    """Requests per window and version, else the window is inconclusive [20]."""
    max_error_rate_delta: float
    """Candidate error rate minus the stable one's [0.05]."""
    max_p95_ratio: float
    """Candidate p95 / stable p95 [2.0]."""
    min_p95_delta_ms: float
    """A p95 difference below this never fails [50]."""


class CanarySettings(TypedDict, total=False):
    """``deploy.plan``'s ``canary`` param; left-out keys come from the environment policy, then the defaults."""

    steps: list[int]
    """Candidate weights in percent, strictly increasing, ending at 100 [5, 25, 50, 100]."""
    pause_seconds: int
    """Minimum time at each step below 100 [30]."""
    min_requests: int
    """Requests the candidate must serve at a step before it may advance [50]; fewer = inconclusive, wait."""
    max_inconclusive_seconds: int
    """Abort (``analysis_inconclusive``) after this long without enough data [600]."""
    step_gates: bool
    """Wait at ``awaiting_step`` for ``deploy.approve`` with gate ``step`` before every step after the first."""
    analysis: CanaryAnalysisSettings


class Gate(TypedDict):
    """An approval gate of a plan."""

    kind: GateKind
    approvers: list[str]
    four_eyes: bool
    timeout_seconds: int | None


class Plan(TypedDict, total=False):
    """The plan the agent made (``deploy.plan`` result ``plan``)."""

    strategy: Strategy
    reasons: list[str]
    steps: list[Any]
    config: dict[str, Any]
    requirements: dict[str, Any]
    gates: list[Gate]
    previous_version: str | None
    replaces_endpoint: str | None


class PlanResult(TypedDict):
    """Result of ``deploy.plan``."""

    deployment_id: str
    status: Literal["planned", "awaiting_approval"]
    plan_hash: str
    plan: Plan
    deployment: Deployment


class ModelDeployerOutput(TypedDict):
    """The seed's output contract of a deployment."""

    deployment_id: str
    endpoint_url: str
    deployment_strategy: str
    previous_version: str | None
    deployment_timestamp: datetime
    health_check_passed: bool
    metrics_baseline: dict[str, float]


class ExecuteResult(ModelDeployerOutput):
    """Result of ``deploy.execute``: ``ModelDeployerOutput`` plus where the deployment stands.

    A failed deployment is a result with ``status`` ``"failed"`` or ``"rolled_back"`` and an ``error``,
    not an exception.
    """

    status: DeploymentStatus
    model_name: str
    model_version: str
    environment: str
    slot: Literal["blue", "green", "teal"] | None
    gate: NotRequired[str]
    error: NotRequired[DeploymentErrorInfo]


class ApproveResult(TypedDict):
    """Result of ``deploy.approve``; ``output`` is present when a promote or step approval ran the rollout on
    (to the next gate or the end)."""

    deployment_id: str
    status: DeploymentStatus
    gate: GateKind
    decision: Literal["approve", "reject"]
    approved_by: str | None
    output: NotRequired[ExecuteResult]


class AbortResult(TypedDict):
    """Result of ``deploy.abort``: the deployment, now ``aborted`` (a canary) or ``rolled_back`` (a bake),
    with ``error.reason`` ``aborted``."""

    deployment: Deployment


class TrafficShare(TypedDict):
    """A version's share of an endpoint's traffic at an instant (``history.query`` with ``traffic_at``)."""

    version: str
    deployment_id: str
    weight: int


class RollbackResult(TypedDict):
    """Result of ``deploy.rollback``."""

    deployment_id: str
    rollback_of: str | None
    status: DeploymentStatus
    model_name: str
    environment: str
    from_version: str | None
    to_version: str | None
    endpoint_url: str | None
    duration_ms: float
    deployment_strategy: Literal["rollback"]


class RegistryEntry(TypedDict):
    """What is live for a (model, environment)."""

    model_name: str
    environment: str
    model_version: str
    deployment_id: str
    endpoint_url: str
    slot: str | None
    bento_tag: str | None
    previous_version: str | None
    previous_deployment_id: str | None
    previous_slot: str | None
    updated_at: str


class StatusResult(TypedDict):
    """Result of ``deploy.status``."""

    deployment: Deployment
    events: list[DeploymentEvent]
    live: RegistryEntry | None
    slot_alive: bool | None


class HistoryResult(TypedDict):
    """Result of ``history.query``; ``traffic`` only with ``traffic_at``."""

    deployments: list[Deployment]
    next_cursor: str | None
    traffic: NotRequired[list[TrafficShare]]


class StopResult(TypedDict):
    """Result of ``deploy.stop``."""

    deployment: Deployment | None
    """The deployment that was live, now ``stopped`` (its last event is ``stop``); ``None`` when the registry
    named a deployment that was not live (its registry row was cleared all the same)."""
    stopped_slots: list[str]
    """The slots whose processes were stopped (live, warm previous, any other), sorted."""


class StopResult(TypedDict):
    """Result of ``deploy.stop``."""

    deployment: Deployment | None
    """The deployment that was live, now ``stopped`` (its last event is ``stop``); ``None`` when the registry
    named a deployment that was not live (its registry row was cleared all the same)."""
    stopped_slots: list[str]
    """The slots whose processes were stopped (live, warm previous, any other), sorted."""


class FollowResult(TypedDict):
    """Result of ``deploy.follow``: the deployment once its rollout has ended."""

    deployment: Deployment
    last_seq: int
    """The last event sequence number sent; pass it as ``after_seq`` to resume following."""


class LiveStandby(TypedDict):
    """The warm previous version of a live row (the one-call rollback target)."""

    model_version: str
    deployment_id: str | None
    slot: str
    alive: bool
    """Whether the standby slot's process runs now."""


class LiveInFlight(TypedDict):
    """A rollout in flight for a live row's model and environment."""

    deployment_id: str
    status: DeploymentStatus
    model_version: str
    requested_by: NotRequired[str]


class LiveRow(TypedDict):
    """One (model, environment) with a live version, as ``deploy.list`` reports it."""

    model_name: str
    environment: str
    model_version: str
    deployment_id: str
    endpoint_url: str
    slot: str
    slot_alive: bool
    """Whether the live slot's process runs now."""
    endpoint_alive: bool
    """Whether the stable endpoint answers through the router now."""
    standby: LiveStandby | None
    in_flight: LiveInFlight | None
    metrics_url: str | None
    """The router's Prometheus exporter for this endpoint (HAProxy; ``None`` on nginx). Its series are labelled
    ``server="<slot>"``: ``slot`` is the live version's, ``standby["slot"]`` the warm one's."""
    since: str
    """When the registry last changed for this pair (RFC 3339)."""


class ListResult(TypedDict):
    """Result of ``deploy.list``."""

    live: list[LiveRow]


def parse_timestamp(value: str | datetime | None) -> datetime | None:
    """Parses an RFC 3339 timestamp of the agent (``2026-11-29T12:00:00.123Z``) into an aware datetime."""
    if value is None or isinstance(value, datetime):
        return value
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def with_int_error_code(record: dict[str, Any]) -> dict[str, Any]:
    """Returns ``record`` with ``error.code`` as an ``int``.

    The wire contract types the code as an integer; agents before 0.2 wrote a deployment's error code as a
    string (``"-32009"``), so the client converts it rather than hand callers two types.
    """
    error = record.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        try:
            code = int(error["code"])
        except ValueError:
            return record
        return {**record, "error": {**error, "code": code}}
    return record


def to_output(result: dict[str, Any]) -> dict[str, Any]:
    """Returns a copy of an execute result with ``deployment_timestamp`` as a ``datetime`` (and an int
    ``error.code``)."""
    out = with_int_error_code(dict(result))
    if "deployment_timestamp" in out:
        out["deployment_timestamp"] = parse_timestamp(out["deployment_timestamp"])
    return out
