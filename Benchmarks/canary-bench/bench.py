#!/usr/bin/env python3
"""Canary benchmark: real BentoML slots behind real HAProxy, under a steady keep-alive load, and the same
blue-green figures on nginx beside them. Prints:

  - a canary 5 -> 25 -> 50 -> 100 of a healthy version: for each step the share of requests the candidate
    served, counted by the clients (from the answers: v1 answers [0], v2 [10]) and by the router (the sum of
    the step's analysis windows, which the agent reads from HAProxy), against the step's weight; failed
    requests;
  - a canary of each faulty example version (flaky: 30 % HTTP 500; slow: +300 ms on half its requests):
    how long until the analysis aborted it, how many requests failed, whether the stable version answered
    everything afterwards;
  - an abort by hand at 50 %: deploy.abort round trip (end to end, from the client) and the last candidate
    answer after the call started;
  - blue-green switch and rollback on HAProxy and on nginx: the switch inside the agent (the ledger's
    switch_ms) and end to end (switch start to the first answer of the new version on the clients' kept
    connections), rollback inside the agent (duration_ms) and end to end (call start to the first answer of
    the old version), failed requests.

Needs an example store (examples/iris/build.sh) and haproxy + nginx. Usage:
  BENTOML_HOME=... MODEL_DEPLOYER_BENTOML=.venv/bin/bentoml \\
    .venv/bin/python Benchmarks/canary-bench/bench.py --tags TAGS_FILE [--pause 10] [--interval 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "integration"))
from deploy_support import Load, smoke, stop_everything  # noqa: E402

ANSWER = {"v1": "[0]", "v2": "[10]", "flaky": "[20]", "slow": "[30]"}
CLOCK_OFFSET = time.time() - time.monotonic()  # the clients' answers carry monotonic times


def wall(at: str) -> float:
    """An agent timestamp (RFC 3339) as a monotonic time of this process."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() - CLOCK_OFFSET


class Agent:
    """One `model-deployer serve` on a pipe; keeps every deploy.progress with the time it arrived."""

    def __init__(self, binary: str, home: Path, router: str):
        env = dict(os.environ, MODEL_DEPLOYER_HOME=str(home), MODEL_DEPLOYER_ROUTER=router, BENTOML_DO_NOT_TRACK="true")
        self.p = subprocess.Popen([binary, "serve", "--log-level", "warning", "--policy", str(home / "policy.json")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(home / "agent.log", "ab"), env=env)
        self.n = 0
        self.notes: list[tuple[float, dict]] = []

    def call(self, method: str, params: dict) -> dict:
        self.n += 1
        self.p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}) + "\n").encode())
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"the agent exited during {method} (see agent.log)")
            m = json.loads(line)
            if m.get("method") == "deploy.progress":
                self.notes.append((time.monotonic(), m["params"]))
            elif m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=30)


def policy(home: Path) -> None:
    (home / "policy.json").write_text(json.dumps({"version": 1, "environments": {
        "bench": {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 3600}}}))


def plan(agent: Agent, version: str, kind: str, **extra) -> str:
    return agent.call("deploy.plan", {"model_name": "iris_clf", "model_version": version, "environment": "bench",
                                      "requested_by": "bench", "smoke_tests": smoke(kind) if kind in ("v1", "v2") else
                                      [{"api": "predict", "input": {"input": [[5.1, 3.5, 1.4, 0.2]]}}],
                                      **extra})["deployment_id"]


def events(agent: Agent, did: str) -> list[dict]:
    return agent.call("deploy.status", {"deployment_id": did})["events"]


def share(answers: list[tuple[float, str]], start: float, end: float, candidate: str) -> tuple[int, int]:
    inside = [a for t, a in answers if start <= t < end]
    return sum(1 for a in inside if a == candidate), len(inside)


def canary_settings(args, steps, **more) -> dict:
    return {"steps": steps, "pause_seconds": args.pause, "min_requests": 50,
            "analysis": {"interval_seconds": args.interval, "min_requests": 20, "failure_limit": 2}, **more}


def healthy_canary(agent: Agent, url: str, ver: dict, args) -> dict:
    agent.notes.clear()
    did = plan(agent, ver["v2"], "v2", strategy="canary", canary=canary_settings(args, [5, 25, 50, 100]))
    with Load(url) as load:
        time.sleep(1)
        t0 = time.monotonic()
        out = agent.call("deploy.execute", {"deployment_id": did})
        t1 = time.monotonic()
        time.sleep(1)
    assert out["status"] == "live", out
    steps: list[tuple[float, dict]] = []
    raised: dict = {}  # step_index -> agent time of the note "raising ... to W%"
    set_at: set = set()  # step indexes whose "set" note came too (the 100 % step has none: it ends the rollout)
    for t, n in agent.notes:  # a step is noted as the weight is raised and again once set: take the latter
        if n.get("step") == "canary_step":
            index = (n.get("data") or {}).get("step_index")
            if steps and (steps[-1][1].get("data") or {}).get("step_index") == index:
                steps.pop()
                set_at.add(index)
            else:
                raised[index] = wall(n["at"])
            steps.append((t, n))
    windows = [(t, n) for t, n in agent.notes if n.get("step") == "analysis"]
    rows = []
    for i, (t, note) in enumerate(steps):
        data = note.get("data") or {}
        end = steps[i + 1][0] if i + 1 < len(steps) else t1
        cand, total = share(load.answers, t, end, ANSWER["v2"])
        router_c = router_t = 0
        for _, w in windows:
            wd = w.get("data") or {}
            if wd.get("step_index") == data.get("step_index") and wd.get("analysis"):
                a = wd["analysis"]
                router_c += a["candidate"]["requests"]
                router_t += a["candidate"]["requests"] + a["stable"]["requests"]
        rows.append({"weight": data.get("weight"), "client": (cand, total), "router": (router_c, router_t),
                     "verdicts": [((w.get("data") or {}).get("analysis") or {}).get("verdict") for _, w in windows
                                  if (w.get("data") or {}).get("step_index") == data.get("step_index")],
                     # inside the agent: from its note "raising to W%" to its note that W% is set (both `at`)
                     "agent_ms": (wall(note["at"]) - raised[data.get("step_index")]) * 1000
                     if data.get("step_index") in set_at else None})
    return {"rows": rows, "failed": load.failed, "served": load.ok + load.failed, "total_s": t1 - t0,
            "failures": load.failures[:5], "deployment_id": did}


def faulty_canary(agent: Agent, url: str, ver: dict, kind: str, stable: str, args) -> dict:
    agent.notes.clear()
    did = plan(agent, ver[kind], kind, strategy="canary", canary=canary_settings(args, [5, 25, 50, 100]))
    with Load(url) as load:
        time.sleep(1)
        t0 = time.monotonic()
        out = agent.call("deploy.execute", {"deployment_id": did})
        t1 = time.monotonic()
        time.sleep(2)
    first_step = next((t for t, n in agent.notes if n.get("step") == "canary_step"), t0)
    verdicts = [((n.get("data") or {}).get("analysis") or {}).get("verdict") for _, n in agent.notes
                if n.get("step") == "analysis"]
    after = [a for t, a in load.answers if t > t1]
    return {"status": out["status"], "reason": (out.get("error") or {}).get("reason"),
            "message": (out.get("error") or {}).get("message"), "abort_after_s": t1 - first_step,
            "verdicts": verdicts, "failed": load.failed, "served": load.ok + load.failed,
            "stable_only_after": all(a == ANSWER[stable] for a in after), "answers_after": len(after)}


def manual_abort(agent: Agent, url: str, ver: dict, candidate: str, args) -> dict:
    agent.notes.clear()
    did = plan(agent, ver[candidate], candidate, strategy="canary",
               canary=canary_settings(args, [50, 100], step_gates=True))
    with Load(url) as load:
        time.sleep(1)
        out = agent.call("deploy.execute", {"deployment_id": did})
        assert out["status"] == "awaiting_step", out
        time.sleep(1)
        t0 = time.monotonic()
        res = agent.call("deploy.abort", {"deployment_id": did, "requested_by": "bench", "reason": "benchmark"})
        t1 = time.monotonic()
        time.sleep(1)
    late = [t for t, a in load.answers if t >= t0 and a == ANSWER[candidate]]
    return {"status": res["deployment"]["status"], "round_trip_ms": (t1 - t0) * 1000,
            "last_candidate_ms": ((max(late) - t0) * 1000) if late else None, "late_candidate_answers": len(late),
            "failed": load.failed, "served": load.ok + load.failed}


def blue_green(agent: Agent, url: str, ver: dict, new: str, old: str) -> dict:
    did = plan(agent, ver[new], new, strategy="blue_green")
    with Load(url) as load:
        time.sleep(1)
        out = agent.call("deploy.execute", {"deployment_id": did})
        time.sleep(1)
    assert out["status"] == "live", out
    ev = events(agent, did)
    switched = next((e for e in ev if e["to_status"] == "live" and "switch_ms" in (e.get("data") or {})), None)
    switch_ms = switched["data"]["switch_ms"] if switched else None
    e2e = None
    if switched:
        start = wall(switched["at"]) - switch_ms / 1000
        first_new = next((t for t, a in load.answers if a == ANSWER[new] and t >= start - 0.5), None)
        e2e = (first_new - start) * 1000 if first_new is not None else None
    with Load(url) as rload:
        time.sleep(1)
        t0 = time.monotonic()
        rb = agent.call("deploy.rollback", {"model_name": "iris_clf", "environment": "bench", "requested_by": "bench"})
        t1 = time.monotonic()
        time.sleep(1)
    first_old = next((t for t, a in rload.answers if t >= t0 and a == ANSWER[old]), None)
    return {"switch_ms": switch_ms, "switch_e2e_ms": e2e, "failed_switch": load.failed, "served_switch": load.ok + load.failed,
            "rollback_agent_ms": rb.get("duration_ms"), "rollback_call_ms": (t1 - t0) * 1000,
            "rollback_e2e_ms": (first_old - t0) * 1000 if first_old is not None else None,
            "failed_rollback": rload.failed, "served_rollback": rload.ok + rload.failed}


def fmt(x, unit="ms", digits=1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f} {unit}"


def run_router(router: str, args, ver: dict, canary: bool) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"md-canary-bench-{router}-"))
    policy(home)
    agent = Agent(args.bin, home, router)
    result: dict = {"router": router, "home": str(home)}
    try:
        first = agent.call("deploy.execute", {"deployment_id": plan(agent, ver["v1"], "v1")})
        assert first["status"] == "live", first
        url = first["endpoint_url"]
        if canary:
            result["canary"] = healthy_canary(agent, url, ver, args)          # v2 live now
            result["faulty"] = {k: faulty_canary(agent, url, ver, k, "v2", args) for k in ("flaky", "slow")}
            result["abort"] = manual_abort(agent, url, ver, "v1", args)        # v2 stays live
            result["blue_green"] = [blue_green(agent, url, ver, "v1", "v2") for _ in range(args.rounds)]
        else:
            result["blue_green"] = [blue_green(agent, url, ver, "v2", "v1") for _ in range(args.rounds)]
    finally:
        agent.close()
        stop_everything(home)
        for pidfile in (home / "router").glob("**/ep-*.pid"):  # HAProxy: one process per endpoint
            try:
                os.kill(int(pidfile.read_text().split()[0]), 15)
            except (ValueError, IndexError, OSError):
                pass
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", type=Path, required=True)
    ap.add_argument("--pause", type=int, default=10, help="canary pause_seconds per step (default 10)")
    ap.add_argument("--interval", type=int, default=5, help="analysis interval_seconds (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="blue-green switch + rollback rounds per router")
    ap.add_argument("--routers", default="haproxy,nginx",
                    help="which routers to run: haproxy (canary + blue-green), nginx (blue-green); default both")
    ap.add_argument("--bin", default=os.environ.get("MODEL_DEPLOYER_BIN", str(ROOT / ".build/release/model-deployer")))
    args = ap.parse_args()
    tags = dict(l.strip().split("=", 1) for l in args.tags.read_text().splitlines() if "=" in l)
    ver = {k: tags[f"model_{k}"].split(":", 1)[1] for k in ANSWER}
    print(f"canary-bench: {args.bin}, pause {args.pause} s, analysis interval {args.interval} s, "
          f"4 keep-alive clients, load average {os.getloadavg()[0]:.1f}")
    routers = [r for r in args.routers.split(",") if r]
    runs = [run_router(r, args, ver, canary=(r == "haproxy")) for r in routers]
    if "haproxy" in routers:
        report_canary(runs[routers.index("haproxy")])
    report_blue_green(runs)
    return 0


def report_canary(run: dict) -> None:
    c = run["canary"]
    print(f"\ncanary 5 -> 25 -> 50 -> 100 of v2 beside v1 on HAProxy ({c['total_s']:.1f} s execute -> live):")
    print(f"  {'weight':>6}  {'clients: v2 / all':>20}  {'share':>6}  {'router: v2 / all':>19}  {'share':>6}  "
          f"{'agent':>8}  analysis")
    for r in c["rows"]:
        (cc, ct), (rc, rt) = r["client"], r["router"]
        print(f"  {r['weight']:>5}%  {cc:>9} / {ct:<8}  {(f'{100 * cc / ct:5.1f}%') if ct else '  n/a '}  {rc:>8} / {rt:<8}  "
              f"{(f'{100 * rc / rt:5.1f}%') if rt else '  n/a '}  {fmt(r['agent_ms']):>8}  {', '.join(v or '?' for v in r['verdicts']) or '-'}")
    print(f"  failed requests: {c['failed']} of {c['served']}" + (f" ({c['failures']})" if c["failures"] else ""))
    print("  (agent: from the agent's note raising the weight to its note that the weight is set, the ledger write"
          " included; the 100 % step ends the rollout, so it has no window)")

    for kind, f in run["faulty"].items():
        print(f"\nfaulty canary {kind} beside v2: {f['status']} ({f['reason']}) {f['abort_after_s']:.1f} s after its "
              f"first step; analysis {', '.join(v or '?' for v in f['verdicts'])}; failed requests {f['failed']} of "
              f"{f['served']}; afterwards {f['answers_after']} answers, all from v2: {f['stable_only_after']}")
        if f["message"]:
            print(f"  {f['message'][:300]}")
    a = run["abort"]
    print(f"\nabort by hand at 50 % (v1 canary beside v2): {a['status']}, deploy.abort round trip {fmt(a['round_trip_ms'])}, "
          f"last candidate answer {fmt(a['last_candidate_ms'])} after the call started "
          f"({a['late_candidate_answers']} candidate answers after it), failed {a['failed']} of {a['served']}")



def report_blue_green(runs: list[dict]) -> None:
    print("\nblue-green switch and rollback under load (per round):")
    print(f"  {'router':>7}  {'switch agent':>12}  {'switch e2e':>10}  {'failed':>11}  {'rollback agent':>14}  "
          f"{'rollback call':>13}  {'rollback e2e':>12}  {'failed':>11}")
    for run in runs:
        for b in run["blue_green"]:
            print(f"  {run['router']:>7}  {fmt(b['switch_ms']):>12}  {fmt(b['switch_e2e_ms']):>10}  "
                  f"{b['failed_switch']:>4} / {b['served_switch']:<4}  {fmt(b['rollback_agent_ms']):>14}  "
                  f"{fmt(b['rollback_call_ms']):>13}  {fmt(b['rollback_e2e_ms']):>12}  "
                  f"{b['failed_rollback']:>4} / {b['served_rollback']:<4}")
        med = lambda key: statistics.median([b[key] for b in run["blue_green"] if b[key] is not None] or [float("nan")])
        print(f"  {run['router']:>7}  median: switch {med('switch_ms'):.1f} ms in the agent, {med('switch_e2e_ms'):.1f} ms "
              f"end to end; rollback {med('rollback_agent_ms'):.1f} ms in the agent, {med('rollback_e2e_ms'):.1f} ms end to end")


if __name__ == "__main__":
    raise SystemExit(main())
