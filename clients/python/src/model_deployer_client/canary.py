"""Reading a canary as it goes: its weight steps and analysis windows, from ``deploy.progress`` notes
(``execute``/``approve``/``follow`` ``on_progress``) or from ledger events (``status()["events"]``).

::

    notes = []
    out = await client.execute(deployment_id, on_progress=notes.append)
    print(format_canary_table(notes))

    STEP  WEIGHT  WEIGHTS      ANALYSIS  CANDIDATE req/err/p95  STABLE req/err/p95
    1     5%      v1=95 v2=5   -
    1     5%      v1=95 v2=5   pass      52/0/4.1ms             988/0/3.9ms
    2     25%     v1=75 v2=25  -
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

CANARY_STEPS = frozenset({"canary_step", "analysis"})
"""Progress/event steps that carry :class:`~model_deployer_client.types.CanaryStepData`."""


def canary_rows(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The canary's steps and analysis windows, in order, one flat dict each.

    ``items`` are ``deploy.progress`` params or ledger events (both have ``step``, ``data`` and ``at``);
    others are skipped. Two ``canary_step`` notes of the same step in a row (raising the weight, then set)
    are one row, the later. Each row: ``kind`` (``canary_step``/``analysis``), ``at``, ``step`` (1-based, or
    ``None``), ``weight``, ``weights``, ``verdict`` and ``candidate``/``stable`` metrics (``None`` on a
    weight step).
    """
    rows: list[dict[str, Any]] = []
    for item in items:
        if item.get("step") not in CANARY_STEPS:
            continue
        data = item.get("data") or {}
        analysis = data.get("analysis") or {}
        index = data.get("step_index")
        if (item["step"] == "canary_step" and rows and rows[-1]["kind"] == "canary_step"
                and rows[-1]["step"] == (index + 1 if isinstance(index, int) else None)):
            rows.pop()  # the agent notes a step as it raises the weight and once it is set: keep the latter
        rows.append(
            {
                "kind": item["step"],
                "at": item.get("at"),
                "step": index + 1 if isinstance(index, int) else None,
                "weight": data.get("weight"),
                "weights": dict(data.get("weights") or {}),
                "verdict": analysis.get("verdict"),
                "candidate": analysis.get("candidate"),
                "stable": analysis.get("stable"),
                "message": item.get("message"),
            }
        )
    return rows


def _metrics(m: Mapping[str, Any] | None) -> str:
    if not m:
        return "-"
    p95 = m.get("p95_ms")
    p95_text = "-" if p95 is None else f"{float(p95):.1f}ms"
    return f"{m.get('requests', '?')}/{m.get('errors', '?')}/{p95_text}"


def format_canary_table(items: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`canary_rows` (empty string when there is no canary step)."""
    rows = canary_rows(items)
    if not rows:
        return ""
    table = [["STEP", "WEIGHT", "WEIGHTS", "ANALYSIS", "CANDIDATE req/err/p95", "STABLE req/err/p95"]]
    for row in rows:
        weights = " ".join(f"{version}={share}" for version, share in row["weights"].items()) or "-"
        table.append(
            [
                "-" if row["step"] is None else str(row["step"]),
                "-" if row["weight"] is None else f"{row['weight']}%",
                weights,
                row["verdict"] or "-",
                _metrics(row["candidate"]) if row["kind"] == "analysis" or row["verdict"] else "",
                _metrics(row["stable"]) if row["kind"] == "analysis" or row["verdict"] else "",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in table]
    return "\n".join(lines)
