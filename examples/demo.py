#!/usr/bin/env python3
"""The main job: a real deployment of the bundled example model with the embedded SQLite ledger.

  v1 goes live (direct: nothing to switch from), v2 replaces it blue-green while a client keeps calling
  the endpoint, one call rolls back to v1 (still warm: a single router switch), a broken version fails
  its smoke test without touching traffic, v2 goes live again as a canary (10 -> 50 -> 100 % of the
  traffic, with a step gate a person approves), and a faulty version (30 % HTTP 500) is aborted by the
  canary's analysis with the traffic back on v2. Every step prints its progress; the ledger's history is
  printed at the end.

Run through scripts/demo.sh (which installs and builds everything first). Options:
  --keep      leave the deployment serving afterwards (default: stop the slots and the router)
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

from model_deployer_client import DeployerClient, format_canary_table

ROOT = Path(__file__).resolve().parent.parent
SMOKE_INPUT = {"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]}
EXPECT = {"v1": [0, 2, 1], "v2": [10, 12, 11], "broken": [0, 2, 1], "flaky": [20, 22, 21]}
# The canary steps of the demo: short pauses and analysis windows, so it takes seconds, not minutes.
CANARY = {"steps": [10, 50, 100], "pause_seconds": 3, "min_requests": 20, "max_inconclusive_seconds": 120,
          "analysis": {"interval_seconds": 2, "failure_limit": 2, "min_requests": 10}}


def bold(s: str) -> str:
    return f"\033[1m{s}\033[0m" if os.isatty(1) else s


def progress(note: dict) -> None:
    print(f"    {note['progress']:5.0f}%  {note['step']:<12} {note['message']}", flush=True)


class Traffic:
    """A client calling the endpoint in the background, counting answers and failures."""

    def __init__(self, url: str, threads: int = 1):
        self.host, port = url[len("http://"):].rstrip("/").split(":")
        self.port = int(port)
        self.ok = self.failed = 0
        self.answers: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        body = json.dumps({"input": [[5.1, 3.5, 1.4, 0.2]]})
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=10)
                c.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                text = r.read().decode()
                c.close()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        self.answers[text] = self.answers.get(text, 0) + 1
                    else:
                        self.failed += 1
            except OSError:
                with self.lock:
                    self.failed += 1
            time.sleep(0.01)

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        print(f"    client traffic meanwhile: {self.ok} answered, {self.failed} failed; answers {self.answers}")


def stop_everything(home: Path) -> None:
    """Stops the BentoML slots and the router (HAProxy's processes, or nginx) this demo started under `home`."""
    marker = f"MODEL_DEPLOYER_SLOT={home}/slots/".encode()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if any(e.startswith(marker) for e in Path(f"/proc/{d}/environ").read_bytes().split(b"\0")):
                    os.kill(int(d), signal.SIGTERM)
            except OSError:
                pass
    for pid_file in (home / "router").glob("**/nginx.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGQUIT)
        except (OSError, ValueError):
            pass
    for pid_file in (home / "router").glob("ep-*.pid"):  # one HAProxy process per endpoint
        try:
            pid = int(pid_file.read_text().split()[0])
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].split(b"/")[-1].startswith(b"haproxy"):
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass


async def main(home: Path, tags: dict[str, str], keep: bool) -> int:
    version = {k: tags[f"model_{k}"].split(":", 1)[1] for k in ("v1", "v2", "broken", "flaky")}
    smoke = lambda kind: [{"api": "predict", "input": SMOKE_INPUT, "expect": EXPECT[kind]}]  # noqa: E731
    env = "staging"
    async with DeployerClient(home=home, policy=ROOT / "examples" / "demo-policy.json", progress="off") as agent:

        async def deploy(kind: str, notes: list | None = None, **options) -> dict:
            plan = await agent.plan("iris_clf", version[kind], env, requested_by="alice", smoke_tests=smoke(kind),
                                    **options)
            p = plan["plan"]
            print(f"  plan {plan['deployment_id']}: {p['strategy']} to slot {p['config']['slot']}, status {plan['status']}")
            for reason in p["reasons"]:
                print(f"    - {reason}")
            if plan["status"] == "awaiting_approval":
                a = await agent.approve(plan["deployment_id"], approver="bob", comment="looks good")
                print(f"  bob approved the deploy gate -> {a['status']}")

            def note(n: dict) -> None:
                progress(n)
                if notes is not None:
                    notes.append(n)

            out = await agent.execute(plan["deployment_id"], on_progress=note)
            while out["status"] == "awaiting_step":  # a canary step gate: a person looks, then approves
                print(bold(f"  waiting at a step gate; the canary so far (router-counted requests/errors/p95):"))
                print("    " + format_canary_table(notes or []).replace("\n", "\n    "))
                print(f"  bob approves the next step, as he would with: deployctl approve {plan['deployment_id']} "
                      "--gate step --approver bob")
                step = await agent.approve(plan["deployment_id"], approver="bob", gate="step",
                                           comment="analysis passes", on_progress=note)
                out = step.get("output") or {**out, "status": step["status"]}
            print(f"  -> {bold(out['status'])}: {out['model_name']}:{out['model_version']} at {out['endpoint_url']} "
                  f"(strategy {out['deployment_strategy']}, previous {out['previous_version']})")
            if out.get("error"):
                print(f"     error: {out['error']['reason']}: {out['error']['message'][:160]}")
            return out

        print(bold(f"1. deploy v1 ({version['v1']}) to {env}"))
        v1 = await deploy("v1")
        if v1["status"] != "live":
            return 1
        url = v1["endpoint_url"]
        print(f"    baseline: {json.dumps({k: round(v, 2) for k, v in v1['metrics_baseline'].items()})}")

        print(bold(f"2. deploy v2 ({version['v2']}) blue-green while a client keeps calling {url}"))
        with Traffic(url):
            v2 = await deploy("v2")
            await asyncio.sleep(1)

        print(bold("3. roll back to v1 in one call: v1 is still warm in its slot"))
        with Traffic(url):
            rb = await agent.rollback("iris_clf", env, requested_by="carol", reason="demo: back to v1", on_progress=progress)
            await asyncio.sleep(0.5)
        print(f"  -> {bold(rb['status'])}: {rb['from_version']} -> {rb['to_version']} in {rb['duration_ms']:.0f} ms")

        print(bold(f"4. deploy a broken version ({version['broken']}): its smoke test fails, traffic stays on v1"))
        with Traffic(url):
            await deploy("broken")

        print(bold(f"5. v2 again, as a canary: 10 -> 50 -> 100 % of the traffic, a step gate before each raise"))
        notes: list[dict] = []
        with Traffic(url, threads=2) as traffic:
            canary = await deploy("v2", notes, strategy="canary", canary={**CANARY, "step_gates": True})
            await asyncio.sleep(0.5)
        print("    " + format_canary_table(notes).replace("\n", "\n    "))

        print(bold(f"6. a faulty version ({version['flaky']}: 30 % of its answers are HTTP 500) as a canary: "
                   "the analysis aborts it"))
        with Traffic(url, threads=2) as traffic:
            faulty = await deploy("flaky", [], strategy="canary", canary=CANARY)
            await asyncio.sleep(1)
            served_before = dict(traffic.answers)
            await asyncio.sleep(1)
            after = {k: traffic.answers.get(k, 0) - served_before.get(k, 0) for k in traffic.answers}
        print(f"    answers in the second after the abort: {after} (v2 answers [10])")

        print(bold("7. the ledger (history.query, newest first)"))
        hist = await agent.history(model_name="iris_clf", environment=env, limit=10)
        for d in hist["deployments"]:
            err = f" ({d['error']['reason']})" if d.get("error") else ""
            print(f"  {d['created_at']}  {d['deployment_id']}  {d['model_version']}  {d['deployment_strategy']:<10} {d['status']}{err}")
        ok = (v2["status"] == "live" and rb["status"] == "live" and canary["status"] == "live"
              and faulty["status"] == "aborted" and (faulty.get("error") or {}).get("reason") == "analysis_failed")
    if keep:
        print(f"\nStill serving at {url} (POST /predict). Ledger: {home}/deployer.db. Stop: scripts/demo.sh --stop")
    else:
        stop_everything(home)
        print(f"\nStopped the slots and the router. Ledger kept at {home}/deployer.db (run with --keep to leave it serving).")
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--tags", type=Path, required=True, help="the output of examples/iris/build.sh")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--stop", action="store_true", help="only stop what a --keep run left serving")
    args = ap.parse_args()
    if args.stop:
        stop_everything(args.home.resolve())
        raise SystemExit(0)
    tags = dict(line.strip().split("=", 1) for line in args.tags.read_text().splitlines() if "=" in line)
    raise SystemExit(asyncio.run(main(args.home.resolve(), tags, args.keep)))
