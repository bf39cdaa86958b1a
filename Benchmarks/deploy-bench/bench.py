#!/usr/bin/env python3
"""Deployment benchmark: prints, for N rounds of (blue-green update, rollback) of the example model,

  - execute -> live, split into BentoML start-up (spawn to /readyz 200), validation (smoke tests and the
    baseline load, i.e. BentoML answering), the traffic switch, and the agent's own overhead (the rest);
  - switch time (HAProxy: runtime commands + read-back; nginx: route rewrite + nginx -t + reload + read-back);
  - rollback time to the warm previous slot: in the agent (deploy.rollback's duration_ms, and the router
    switch inside it), the JSON-RPC round trip, and end to end: from sending deploy.rollback until the first
    client answer from the version rolled back to; each with the laps its switch event records (the call's
    checks, the warm slot's probe, history, look-up, apply split into runtime commands and the routes.json
    persist, the read-back) and, with --log-level debug, the ledger's time; p50 and p95 over the rounds;
  - failed client requests during each, under a steady load of 4 keep-alive clients (one kept connection each).

Each router named by --routers runs the same rounds with its own agent and home, one after the other, so
the figures sit side by side. Needs an example store (examples/iris/build.sh). Usage:
  BENTOML_HOME=... .venv/bin/python Benchmarks/deploy-bench/bench.py --tags TAGS_FILE [--rounds 3] [--routers haproxy,nginx]
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


# The laps a rollback's switch event records: before the call handed over (checks, the warm slot's probe,
# history), the hand-over, the look-up, then the switch itself.
SPLIT_KEYS = ("call_checks_ms", "call_warm_probe_ms", "call_history_ms", "prepare_ms", "lookup_ms",
              "ensure_running_ms", "apply_ms", "apply_commands_ms", "apply_persist_ms", "verify_ms", "read_back_ms")


class Agent:
    def __init__(self, binary: str, home: Path, router: str, log_level: str = "warning"):
        env = dict(os.environ, MODEL_DEPLOYER_HOME=str(home), BENTOML_DO_NOT_TRACK="true", MODEL_DEPLOYER_ROUTER=router)
        self.p = subprocess.Popen([binary, "serve", "--log-level", log_level], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=open(home / "agent.log", "ab"), env=env)
        self.n = 0

    def call(self, method: str, params: dict) -> dict:
        self.n += 1
        self.p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}) + "\n").encode())
        self.p.stdin.flush()
        while True:
            m = json.loads(self.p.stdout.readline())
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=10)


def ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def breakdown(agent: Agent, did: str, total_ms: float) -> dict:
    events = agent.call("deploy.status", {"deployment_id": did})["events"]
    by_step = {}
    for e in events:
        by_step.setdefault(e["step"], []).append(e)
    ready = next(e for e in events if e["to_status"] == "validating")
    started = next(e for e in events if e["step"] == "start_slot" and "pid" in e["data"])
    switched = next(e for e in events if e["to_status"] == "live")
    validated = next(e for e in events if e["from_status"] == "validating")
    bento_ms = ready["data"]["elapsed_ms"]
    validation_ms = (ts(validated["at"]) - ts(ready["at"])) * 1000
    switch_ms = switched["data"]["switch_ms"]
    overhead = total_ms - bento_ms - validation_ms - switch_ms
    return {"total_ms": total_ms, "bentoml_startup_ms": bento_ms, "validation_ms": validation_ms,
            "switch_ms": switch_ms, "agent_overhead_ms": overhead,
            "spawn_gap_ms": (ts(started["at"]) - ts(events[1]["at"])) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--routers", default="haproxy,nginx", help="comma-separated, run one after the other")
    ap.add_argument("--bin", default=os.environ.get("MODEL_DEPLOYER_BIN", str(ROOT / ".build/release/model-deployer")))
    ap.add_argument("--log-level", default="warning",
                    help="the agent's; 'debug' adds its 'rollback timing' lines (ledger time) to the rollback rows")
    args = ap.parse_args()
    tags = dict(l.strip().split("=", 1) for l in args.tags.read_text().splitlines() if "=" in l)
    ver = {k: tags[f"model_{k}"].split(":", 1)[1] for k in ("v1", "v2")}
    results = {}
    for router in args.routers.split(","):
        print(f"\n######## router: {router}")
        results[router] = run(args, ver, router)
    if len(results) > 1:
        def med(xs): return statistics.median(xs) if xs else float("nan")
        print("\nside by side (medians over the rounds; failed = summed over the rounds)")
        print(f"  {'router':<8} {'switch':>8} {'rb agent':>9} {'rb switch':>10} {'rb rtt':>8} {'rb e2e':>8} {'failed/served':>14}")
        for router, (rows, rbs) in results.items():
            failed = sum(r["failed"] for r in rows + rbs)
            served = sum(r["ok"] + r["failed"] for r in rows + rbs)
            print(f"  {router:<8} {med([r['switch_ms'] for r in rows]):>6.1f}ms {med([r['agent_ms'] for r in rbs]):>7.1f}ms "
                  f"{med([r['switch_ms'] for r in rbs]):>8.1f}ms {med([r['round_trip_ms'] for r in rbs]):>6.1f}ms "
                  f"{med([r['e2e_ms'] for r in rbs if r['e2e_ms'] is not None]):>6.1f}ms {failed:>6} / {served:<6}")
    return 0


def run(args, ver: dict, router: str):
    env_name = f"bench-{router}"  # each router's endpoint on its own port
    home = Path(tempfile.mkdtemp(prefix="md-deploy-bench-"))
    (home / "policy.json").write_text(json.dumps({"version": 1, "environments": {
        env_name: {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 3600}}}))
    agent = Agent(args.bin, home, router, args.log_level)
    rows, rollbacks = [], []
    try:
        def deploy(kind: str, load: Load | None) -> dict:
            plan = agent.call("deploy.plan", {"model_name": "iris_clf", "model_version": ver[kind], "environment": env_name,
                                              "requested_by": "bench", "smoke_tests": smoke(kind)})
            t = time.perf_counter()
            out = agent.call("deploy.execute", {"deployment_id": plan["deployment_id"]})
            total = (time.perf_counter() - t) * 1000
            assert out["status"] == "live", out
            return breakdown(agent, out["deployment_id"], total) | {"endpoint": out["endpoint_url"], "strategy": out["deployment_strategy"]}

        first = deploy("v1", None)
        print(f"first deployment (direct): {first['total_ms']:.0f} ms total, BentoML start-up {first['bentoml_startup_ms']:.0f} ms")
        url = first["endpoint"]
        for r in range(args.rounds):
            with Load(url) as load:
                time.sleep(0.5)
                row = deploy("v2", load)  # each round ends rolled back to v1
                time.sleep(0.5)
            row["failed"], row["ok"] = load.failed, load.ok
            rows.append(row)
            with Load(url) as load:
                time.sleep(0.5)
                t = time.monotonic()
                rb = agent.call("deploy.rollback", {"model_name": "iris_clf", "environment": env_name, "requested_by": "bench"})
                rt = (time.monotonic() - t) * 1000
                time.sleep(0.5)
            # End to end: the first answer from v1 ("[0]") a client got after the call was sent. The clients
            # pause 5 ms between requests, so this is up to a few ms late.
            after = [(at, a) for at, a in load.answers if at >= t]
            first_v1 = next((at for at, a in after if a == "[0]"), None)
            events = agent.call("deploy.status", {"deployment_id": rb["deployment_id"]})["events"]
            data = next((e["data"] for e in events if "switch_ms" in e.get("data", {})), {})
            sw = data.get("switch_ms", float("nan"))
            # The switch's laps (and, from the agent of this commit on, the call's checks before it).
            split = {k[:-3]: data[k] for k in SPLIT_KEYS if k in data}
            rollbacks.append({"deployment_id": rb["deployment_id"], "round_trip_ms": rt, "agent_ms": rb["duration_ms"], "switch_ms": sw, "split": split,
                              "e2e_ms": None if first_v1 is None else (first_v1 - t) * 1000,
                              "failed": load.failed, "ok": load.ok})
    finally:
        agent.close()
        stop_everything(home)
    # With --log-level debug: the agent's own account of each rollback, the ledger's time included.
    timings = {}
    for line in (home / "agent.log").read_text(errors="replace").splitlines():
        if '"rollback timing"' in line:
            t = json.loads(line)
            timings[t.get("deployment_id")] = t
    for r in rollbacks:
        t = timings.get(r["deployment_id"])
        if t:
            r["split"]["ledger"] = t["ledger_ms"]

    def med(xs): return statistics.median(xs)
    print(f"\nblue-green updates under load ({len(rows)} rounds, medians; each round also lists its own figures):")
    print(f"  {'round':>5} {'total':>8} {'bentoml':>8} {'validate':>9} {'switch':>7} {'overhead':>9} {'failed':>7} {'served':>7}")
    for i, r in enumerate(rows):
        print(f"  {i + 1:>5} {r['total_ms']:>8.0f} {r['bentoml_startup_ms']:>8.0f} {r['validation_ms']:>9.0f} "
              f"{r['switch_ms']:>7.0f} {r['agent_overhead_ms']:>9.0f} {r['failed']:>7} {r['ok']:>7}")
    print(f"  median: execute->live {med([r['total_ms'] for r in rows]):.0f} ms = BentoML start-up "
          f"{med([r['bentoml_startup_ms'] for r in rows]):.0f} + validation {med([r['validation_ms'] for r in rows]):.0f} "
          f"+ switch {med([r['switch_ms'] for r in rows]):.0f} + agent overhead {med([r['agent_overhead_ms'] for r in rows]):.0f} ms "
          f"(target overhead <= 300 ms)")
    print(f"  failed requests during updates: {sum(r['failed'] for r in rows)} of {sum(r['ok'] + r['failed'] for r in rows)} (target 0)")
    print(f"\nrollbacks to the warm slot under load ({len(rollbacks)}):")
    for i, r in enumerate(rollbacks):
        e2e = "n/a" if r["e2e_ms"] is None else f"{r['e2e_ms']:.1f} ms"
        split = ", ".join(f"{k} {v:.1f}" for k, v in r["split"].items())
        print(f"  {i + 1:>5} agent {r['agent_ms']:.1f} ms (router switch {r['switch_ms']:.1f} ms: {split}), round trip {r['round_trip_ms']:.1f} ms, "
              f"end to end {e2e}, failed {r['failed']} of {r['ok'] + r['failed']}")
    agent_ms = sorted(r["agent_ms"] for r in rollbacks)
    p95 = agent_ms[min(len(agent_ms) - 1, max(0, -(-95 * len(agent_ms) // 100) - 1))]
    print(f"  agent: p50 {med(agent_ms):.1f} ms, p95 {p95:.1f} ms (nearest rank over {len(agent_ms)}); per lap, median: "
          + ", ".join(f"{k} {med([r['split'][k] for r in rollbacks if k in r['split']]):.2f}"
                      for k in dict.fromkeys(k for r in rollbacks for k in r["split"])))
    print(f"  median: agent {med([r['agent_ms'] for r in rollbacks]):.1f} ms (target <= 10 ms), round trip "
          f"{med([r['round_trip_ms'] for r in rollbacks]):.1f} ms, end to end "
          f"{med([r['e2e_ms'] for r in rollbacks if r['e2e_ms'] is not None] or [float('nan')]):.1f} ms (target <= 50 ms); "
          f"failed requests {sum(r['failed'] for r in rollbacks)} (target 0)")
    return rows, rollbacks


if __name__ == "__main__":
    raise SystemExit(main())
