#!/usr/bin/env python3
"""The agent's own overhead per step against a real API server, through the agent binary over JSON-RPC.

    agent_bench.py [--rounds N] [--canaries M] [--keep]

Environment (as scripts/test.sh sets it): MODEL_DEPLOYER_TEST_KUBECONFIG and MODEL_DEPLOYER_KUBECTL (the
throwaway control plane of scripts/kube-cluster.sh), MODEL_DEPLOYER_BIN (release binary),
MODEL_DEPLOYER_TEST_BENTOML_HOME and MODEL_DEPLOYER_TEST_EXAMPLE_TAGS (examples/iris/build.sh),
MODEL_DEPLOYER_BENTOML.

It makes a scratch namespace, stands in for the kubelet and the containers with the integration tests' own
helpers (Tests/integration/kube_support.py: Pods bound and marked Ready through the status subresource, one
HTTP server answering for every Pod), and starts `model-deployer serve` with `MODEL_DEPLOYER_LOG_LEVEL=debug`,
at which the agent logs every API call (start time, duration; `"msg":"kubectl"` lines) to stderr: a kubectl
run with MODEL_DEPLOYER_KUBE_TRANSPORT=exec, an HTTP request through its `kubectl proxy` by default. Then:

- N rounds of: deploy.execute of another version over the live one (blue-green, no bake; each step's time
  is the time from its first deploy.progress frame to the next step's, as the client receives them), then
  deploy.rollback, a warm switch back (the previous Deployment kept scaled up; the call's time from request
  sent to answer received, with the kubelet stand-in paused: nothing needs to change in the Pods, and its
  kubectl processes would only add load);
- with --canaries M, M canary deployments after the rounds (steps 50 -> 100, 1 s pause, 1 s analysis
  intervals, in an environment of 3 replicas per version): a canary step's time ("canary step") is from the
  frame that raises the weight to the next frame (the step taken, or live at 100), so it holds the replica split (the warm previous version scaled to 0 and its
  Pods awaited, the two versions scaled, the selector widened) and, at 100, the narrowing (the candidate
  scaled back up and awaited, then the selector); the analysis intervals (probing time, not overhead) are
  not counted;
- the floors, N times each from here: a bare `kubectl get service -o json` (one kubectl process, one round
  trip) and one GET of the Service through a `kubectl proxy --unix-socket` started here (one round trip).

Per step it prints the end-to-end time, the API calls inside it (count and the time during which at least
one ran, from the agent's log) and the agent's own overhead: end-to-end minus that time (JSON-RPC, ledger
writes, JSON rendering and parsing, process spawning). "wait ready" also contains the stand-in's 300 ms pass period.
"""

from __future__ import annotations

import argparse
import json
import shutil
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tests" / "integration"))

from conftest import Agent, binary_path  # noqa: E402
from deploy_support import SMOKE_INPUT, example_tags, version  # noqa: E402
from kube_support import ANSWER, CONTEXT, Kubectl, KubeletStandIn, StandInContainer, host_address, kube_env, kube_proxies  # noqa: E402

MODEL = "iris_clf"
ENV = "kubebench"
CANARY_ENV = "kubebench-canary"
STEP_NAMES = {"start_slot": "apply (start slot)", "readiness": "wait ready", "smoke_tests": "smoke tests",
              "baseline": "baseline (old version's latency, 20 proxy calls)", "switch": "selector switch",
              "canary_step": "canary step (replica split, 50 %)", "canary_promote": "canary step 100 % (narrowing)"}
CANARY = {"steps": [50, 100], "pause_seconds": 1, "min_requests": 1,
          "analysis": {"interval_seconds": 1, "min_requests": 5, "failure_limit": 2}}


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))] if s else float("nan")


def covered(intervals: list[tuple[float, float]], end: float) -> float:
    """Seconds during which at least one kubectl ran (the bake's calls run side by side), up to `end`."""
    total, reach = 0.0, float("-inf")
    for a, b in sorted(intervals):
        b = min(b, end)
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


class Bench:
    def __init__(self, cfg: str, kubectl: str):
        self.k = Kubectl(cfg, kubectl, "md-agent-bench-" + uuid.uuid4().hex[:6])
        self.k.run("create", "namespace", self.k.ns, namespaced=False)
        host = host_address()
        self.container = StandInContainer(host)
        self.kubelet = KubeletStandIn(self.k, host)
        self.home = Path(tempfile.mkdtemp(prefix="md-agent-bench-"))
        policy = {"environments": {ENV: {
            "gates": [], "bake_seconds": 0, "keep_warm_seconds": 3600, "startup_deadline_seconds": 90,
            "runtime": "kubernetes",
            "kubernetes": {"context": CONTEXT, "namespace": self.k.ns, "image": "registry.example/iris_classifier:{bento_version}",
                           "replicas": 1, "progress_deadline_seconds": 60, "container_port": self.container.port}}}}
        # The canaries' environment: the same, with 3 replicas per version (a split of 1 Pod is 50 % at every step).
        canary_env = json.loads(json.dumps(policy["environments"][ENV]))
        canary_env["kubernetes"]["replicas"] = 3
        policy["environments"][CANARY_ENV] = canary_env
        (self.home / "policy.json").write_text(json.dumps(policy))
        env = dict(os.environ, MODEL_DEPLOYER_HOME=str(self.home), BENTOML_DO_NOT_TRACK="true", KUBECONFIG=cfg,
                   MODEL_DEPLOYER_KUBECTL=kubectl, MODEL_DEPLOYER_LOG_LEVEL="debug",
                   BENTOML_HOME=os.environ["MODEL_DEPLOYER_TEST_BENTOML_HOME"],
                   MODEL_DEPLOYER_BENTOML=os.environ.get("MODEL_DEPLOYER_BENTOML", "bentoml"))
        env.pop("MODEL_DEPLOYER_DATABASE_URL", None)
        self.stderr = self.home / "agent.stderr"
        self.agent = Agent([str(binary_path()), "serve"], "ndjson", env, self.stderr)

    def close(self, keep: bool) -> None:
        self.agent.close()
        left = kube_proxies(self.home)
        if left:
            print(f"agent_bench: the agent left kubectl proxies running: {left}", file=sys.stderr)
        self.kubelet.close()
        self.container.close()
        self.k.run("delete", "namespace", self.k.ns, "--wait=false", namespaced=False, check=False)
        if keep:
            print(f"agent home kept: {self.home} (agent.stderr has every kubectl run)")
        else:
            shutil.rmtree(self.home, ignore_errors=True)

    def api_call_lines(self) -> list[dict]:
        """The agent's log lines of API calls (a kubectl run or a proxy request), in order."""
        out = []
        for line in self.stderr.read_text(errors="replace").splitlines():
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("component") == "kubectl" and "ms" in o:
                out.append(o)
        return out

    def transports(self) -> set[str]:
        """The transports the agent's API-call log lines name (`exec` or `proxy`)."""
        return {o.get("transport", "exec") for o in self.api_call_lines()}

    def kubectl_runs(self) -> list[tuple[float, float, str]]:
        """(start s, ms, what) of every API call (kubectl run or proxy request) the agent logged so far."""
        return [(o["ts"], o["ms"], o["kubectl"] + (" --raw" if o.get("raw") else "")) for o in self.api_call_lines()]

    def timed(self, method: str, params: dict) -> tuple[dict, list[tuple[float, str]], float, float]:
        """Sends one request; returns its response, the (arrival time, step) of each progress frame, and the
        send and answer times (wall clock, s)."""
        rid = f"b{uuid.uuid4().hex[:8]}"
        frames: list[tuple[float, str]] = []
        self.messages: list[tuple[float, str]] = []
        t0 = time.time()
        self.agent.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            f = self.agent.recv(timeout=300)
            t = time.time()
            if f.get("method") == "deploy.progress":
                # The agent's own time of the step (its clock is the one its kubectl log lines use).
                at = datetime.fromisoformat(f["params"]["at"].replace("Z", "+00:00")).timestamp()
                frames.append((min(at, t), f["params"]["step"]))
                self.messages.append((min(at, t), f["params"]["message"]))
            elif f.get("id") == rid:
                return f, frames, t0, t

    def deploy(self, kind: str, env: str = ENV, **extra) -> list[tuple[str, float, float]]:
        """Plan + execute `kind`; returns the execute's steps as (step, start s, end s)."""
        params = {"model_name": MODEL, "model_version": version(self.tags, kind), "environment": env, "requested_by": "bench",
                  "smoke_tests": [{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}], **extra}
        plan = self.agent.request("deploy.plan", params, timeout=120)
        assert "result" in plan, plan
        resp, frames, t0, t1 = self.timed("deploy.execute", {"deployment_id": plan["result"]["deployment_id"]})
        assert resp.get("result", {}).get("status") == "live", resp
        steps: list[tuple[str, float, float]] = []
        for i, (t, step) in enumerate(frames):
            end = frames[i + 1][0] if i + 1 < len(frames) else t1
            if steps and steps[-1][0] == step:
                steps[-1] = (step, steps[-1][1], end)
            else:
                steps.append((step, t, end))
        return steps

    def rollback(self) -> tuple[float, float]:
        resp, _, t0, t1 = self.timed("deploy.rollback", {"model_name": MODEL, "environment": ENV, "requested_by": "bench",
                                                        "reason": "benchmark"})
        assert resp.get("result", {}).get("status") == "live", resp
        return t0, t1

    def proxy_floor(self, n: int) -> list[float]:
        """n GETs of the Service through a `kubectl proxy --unix-socket` started here (one HTTP request each)."""
        svc = self.service_name()
        sock = self.home / "floor.sock"
        p = subprocess.Popen([self.k.kubectl, "--context", CONTEXT, "proxy", f"--unix-socket={sock}"], env=self.k.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while not sock.exists():
                assert time.monotonic() < deadline and p.poll() is None, "kubectl proxy did not start"
                time.sleep(0.02)
            request = (f"GET /api/v1/namespaces/{self.k.ns}/services/{svc} HTTP/1.1\r\nHost: localhost\r\n"
                       "Accept: application/json\r\nConnection: close\r\n\r\n").encode()
            out = []
            for _ in range(n + 1):
                t = time.monotonic()
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    while True:
                        try:
                            c.connect(str(sock))
                            break
                        except (ConnectionRefusedError, FileNotFoundError):
                            assert time.monotonic() < deadline, "kubectl proxy does not answer"
                            time.sleep(0.02)
                            t = time.monotonic()
                    c.sendall(request)
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
                assert data.startswith(b"HTTP/1.1 200"), data[:200]
                out.append((time.monotonic() - t) * 1000)
            return out[1:]  # the first request also waits for the proxy's first connection to the API server
        finally:
            p.terminate()
            p.wait()

    def service_name(self) -> str:
        """The stable Service of the rounds' environment."""
        items = self.k.json("get", "services", "-l", f"model-deployer/role=active,model-deployer/environment={ENV}")["items"]
        assert len(items) == 1, items
        return items[0]["metadata"]["name"]

    def floor(self, n: int) -> list[float]:
        svc = self.service_name()
        out = []
        for _ in range(n):
            t = time.monotonic()
            self.k.run("get", "service", svc, "-o", "json")
            out.append((time.monotonic() - t) * 1000)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="rounds of deploy.execute then deploy.rollback")
    ap.add_argument("--canaries", type=int, default=0, help="canary deployments after the rounds (steps 50 -> 100)")
    ap.add_argument("--keep", action="store_true", help="keep the agent's home (its stderr log) afterwards")
    args = ap.parse_args()
    found = kube_env()
    if found is None:
        print("agent_bench: set MODEL_DEPLOYER_TEST_KUBECONFIG and MODEL_DEPLOYER_KUBECTL (scripts/kube-cluster.sh start)", file=sys.stderr)
        return 2
    b = Bench(*found)
    try:
        b.tags = example_tags()
        # The first call reconciles and the first execute creates the Services: warm-up, not counted.
        b.deploy("v1")
        b.deploy("v2")
        windows: dict[str, list[tuple[float, float]]] = {}
        rollbacks: list[tuple[float, float]] = []
        # v2 stays live: each round deploys another version over it and rolls back to the warm v2 (a version
        # rolled back from cannot come back by rollback, only by a new deployment, as here).
        kinds = ["broken", "v1"]  # "broken" is only broken when the stand-in is told so: a third version here
        for i in range(args.rounds):
            last = b.deploy(kinds[i % 2])
            for step, s, e in last:
                windows.setdefault(step, []).append((s, e))
            b.kubelet.paused.set()
            time.sleep(0.4)
            rollbacks.append(b.rollback())
            b.kubelet.paused.clear()
        # Canaries, in their own environment (3 replicas): v1 then v2 (warm-up), then each candidate is the
        # version that is neither live nor the warm previous one.
        if args.canaries:
            b.deploy("v1", env=CANARY_ENV)
            b.deploy("v2", env=CANARY_ENV)
        live, warm = "v2", "v1"
        for _ in range(args.canaries):
            kind = next(k for k in ["v1", "broken", "v2"] if k not in (live, warm))
            b.deploy(kind, env=CANARY_ENV, strategy="canary", canary=CANARY)
            # A step: from the frame that raises the weight to the next frame (the step taken, or live at 100).
            for i, (t, message) in enumerate(b.messages[:-1]):
                if message.startswith("canary: raising"):
                    key = "canary_promote" if message.endswith("to 100% of the traffic") else "canary_step"
                    windows.setdefault(key, []).append((t, b.messages[i + 1][0]))
            live, warm = kind, live
        b.kubelet.paused.set()
        floor = b.floor(args.rounds)
        http_floor = b.proxy_floor(args.rounds)
        b.kubelet.paused.clear()
        runs = b.kubectl_runs()

        def row(name: str, spans: list[tuple[float, float]]) -> None:
            total, kms, calls = [], [], []
            for s, e in spans:
                inside = [(t, t + ms / 1000) for (t, ms, _) in runs if s <= t < e]
                total.append((e - s) * 1000)
                kms.append(covered(inside, e) * 1000)
                calls.append(len(inside))
            own = [t - k for t, k in zip(total, kms)]
            print(f"| {name} | {len(spans)} | {pct(total, .5):.0f} | {pct(total, .95):.0f} | {statistics.median(calls):g} "
                  f"| {pct(kms, .5):.0f} | {pct(own, .5):.0f} | {pct(own, .95):.0f} |")

        print(f"agent_bench: {args.rounds} rounds of execute + rollback, {args.canaries} canaries, load average {os.getloadavg()[0]:.1f}, "
              f"agent transport {'/'.join(sorted(b.transports())) or '?'}")
        print("| step | n | end to end p50 ms | p95 ms | API calls (median) | API ms p50 | agent's own ms p50 | own p95 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for step in STEP_NAMES:
            if step in windows:
                row(f"execute: {STEP_NAMES[step]}", windows[step])
        # The other steps (execute, register, done) are ledger writes only: no kubectl run, a few ms.
        row("deploy.rollback (warm)", rollbacks)
        print(f"| kubectl get service (floor, from here) | {len(floor)} | {pct(floor, .5):.0f} | {pct(floor, .95):.0f} | 1 | | | |")
        print(f"| GET service through kubectl proxy (floor, from here) | {len(http_floor)} | {pct(http_floor, .5):.1f} "
              f"| {pct(http_floor, .95):.1f} | 1 | | | |")
        # What the API calls of the rollbacks were (the call plan), once.
        s, e = rollbacks[-1]
        print("last rollback's API calls:", ", ".join(f"{what} {ms:.1f} ms" for (t, ms, what) in runs if s <= t < e))
        s, e = windows.get("switch", [(0, 0)])[-1]
        print("last switch's API calls:", ", ".join(f"{what} {ms:.1f} ms" for (t, ms, what) in runs if s <= t < e))
        print("API calls of the last execute's steps:",
              "; ".join(f"{step}: {sum(1 for (t, _, _) in runs if s <= t < e)}" for step, s, e in last))
    finally:
        b.close(args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
