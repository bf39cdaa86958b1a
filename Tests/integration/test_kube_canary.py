"""Canary on Kubernetes by replica ratio, through the agent binary against a real API server (the `kube`
fixture of test_kube_deploy.py, in an environment of its own with `replicas: 3`).

Without a traffic router the Service selects the Pods of both versions and the share each version gets is
the ratio of their Pods: with n the environment's replicas and w the candidate's weight, stable n and
candidate clamp(round(n*w/(100-w)), 1, n) for w <= 50, candidate n and stable clamp(round(n*(100-w)/w), 1, n)
above. Nothing counts a Service's traffic per version, so the analysis is fed by the agent's own probes of
each version through the API server's pod proxy.

Real: the agent binary, its SQLite ledger, kubectl, etcd, kube-apiserver (the Service's selector, the
Deployments' replicas, the proxy every smoke test and probe goes through) and kube-controller-manager
(ReplicaSets, Pods, the Endpoints of the Services). Stood in for: the kubelet, the scheduler and the
containers (kube_support.py's `KubeletStandIn` and `StandInContainer`). Every Pod has the same address, so
the stand-in knows which version a probe was meant for only from the `X-Model-Deployer-Version` header the
agent sends with it (on the analysis probes, not on smoke tests), and cannot tell which Pod it reached: it
counts requests by that header and makes a version fail by it. The agent sends that header with its default transport (`kubectl proxy`) only; under
MODEL_DEPLOYER_KUBE_TRANSPORT=exec the checks that need it are skipped. Which versions the Service
can send traffic to is asserted on its selector, the Deployments' replicas and the Pods its Endpoints list.
"""

from __future__ import annotations

import json
import time

import pytest

from deploy_support import SMOKE_INPUT, version
from kube_support import ANSWER
from test_canary import run
from test_deploy import MODEL
from test_kube_deploy import PROXY, kube  # noqa: F401 - the Kubernetes deployer fixture

ENV = "kcanary"
N = 3
CANARY = {"steps": [25, 50, 75, 100], "pause_seconds": 1, "min_requests": 10,
          "analysis": {"interval_seconds": 2, "min_requests": 10, "failure_limit": 2}}
SMOKE = [{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}]
# The third version: any bento of the example (the stand-in answers for every version alike).
THIRD = "flaky"


def split(weight: int, n: int = N) -> tuple[int, int]:
    """(candidate, stable) Pods at `weight` percent: the arithmetic of the module's docstring."""
    def clamp(x: float) -> int:
        return min(n, max(1, int(x + 0.5)))
    if weight <= 50:
        return clamp(n * weight / (100 - weight)), n
    return n, clamp(n * (100 - weight) / weight)


@pytest.fixture
def kc(kube):  # noqa: F811
    """The Kubernetes deployer with one environment `kcanary`: kubeqa's settings with `replicas: 3` (and a
    progress deadline long enough for three Pods made ready one by one by the stand-in)."""
    policy = json.loads((kube.home / "policy.json").read_text())
    env = json.loads(json.dumps(policy["environments"]["kubeqa"]))
    env["kubernetes"].update(replicas=N, progress_deadline_seconds=60)
    policy["environments"] = {ENV: env}
    (kube.home / "policy.json").write_text(json.dumps(policy))
    kube.agent.close()
    kube.agent = kube.start()
    return kube


def replicas(k) -> dict[str, int]:
    """spec.replicas of every Deployment in the test's namespace, by its exact version."""
    return {d["metadata"]["annotations"]["model-deployer/version-name"]: d["spec"]["replicas"]
            for d in k.json("get", "deployments")["items"]}


def wait_endpoints(k, service: str, want: dict[str, int], deadline_s: float = 30) -> dict[str, int]:
    """The Pods the Service's Endpoints list, by version, once they are exactly `want` (the endpoints
    controller follows selectors and Pods asynchronously); the last ones seen after `deadline_s` otherwise."""
    deadline = time.monotonic() + deadline_s
    while True:
        seen = k.endpoint_versions(service)
        if seen == want or time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def v1_then_v2_blue_green(d) -> tuple[str, str]:
    """v1 (direct), then v2 by blue-green: v2 selected, v1 kept warm, both at N replicas. Returns the
    stable Service's name and v2's deployment id."""
    k = d.k
    v1, v2 = version(d.tags, "v1"), version(d.tags, "v2")
    x1 = d.deploy("v1", env=ENV, smoke_tests=SMOKE)
    assert x1["status"] == "live" and x1["deployment_strategy"] == "direct", x1
    x2 = d.deploy("v2", env=ENV, smoke_tests=SMOKE, strategy="blue_green")
    assert x2["status"] == "live" and x2["deployment_strategy"] == "blue_green", x2
    assert k.selected_version() == v2
    assert replicas(k) == {v1: N, v2: N}, replicas(k)
    service = d.status(x2["deployment_id"])["deployment"]["runtime"]["service"]
    assert wait_endpoints(k, service, {v2: N}) == {v2: N}
    return service, x2["deployment_id"]


def plan_canary(d, kind: str) -> dict:
    params = {"model_name": MODEL, "model_version": version(d.tags, kind), "environment": ENV, "requested_by": "alice",
              "strategy": "canary", "canary": CANARY, "smoke_tests": SMOKE}
    r = d.call("deploy.plan", params)
    assert "result" in r, r
    assert r["result"]["deployment"]["deployment_strategy"] == "canary", r["result"]["plan"]["reasons"]
    return r["result"]


def test_canary_by_replica_ratio_on_kubernetes(kc):
    d, k = kc, kc.k
    v1, v2, v3 = version(d.tags, "v1"), version(d.tags, "v2"), version(d.tags, THIRD)
    service, _ = v1_then_v2_blue_green(d)

    plan = plan_canary(d, THIRD)
    reasons = plan["plan"]["reasons"]
    assert any("replica" in r for r in reasons), reasons
    assert any("approximate" in r for r in reasons), reasons

    before = d.container.counts()
    at_step: dict[int, dict] = {}

    def observe(p: dict) -> None:
        # Read the cluster while the canary is at the step the notification announces (the next step
        # comes after at least one analysis interval).
        if p.get("step") != "canary_step" or not p.get("message", "").startswith("canary step"):
            return
        w = p["data"]["weight"]
        if w >= 100 or w in at_step:
            return
        seen = {"index": p["data"]["step_index"], "replicas": replicas(k), "selector": k.selector()}
        if not at_step:
            # The first step: the Endpoints list the Pods of both versions, and none of the warm v1's.
            cand, stable = split(w)
            seen["endpoints"] = wait_endpoints(k, service, {v2: stable, v3: cand})
        at_step[w] = seen

    out, seen = run(d, plan["deployment_id"], on_progress=observe)
    print(json.dumps(at_step, indent=1))
    assert out["status"] == "live", (out, [p["message"] for _, p in seen])

    assert sorted(at_step) == [25, 50, 75], at_step
    for w, s in at_step.items():
        cand, stable = split(w)
        assert s["replicas"] == {v1: 0, v2: stable, v3: cand}, (w, s["replicas"])
        # The widened selector: the model's and environment's labels, no version.
        assert "model-deployer/version" not in s["selector"], (w, s["selector"])
        assert s["selector"].get("model-deployer/model") == MODEL and s["selector"].get("model-deployer/environment") == ENV, s
    assert at_step[25]["replicas"] == {v1: 0, v2: 3, v3: 1}
    assert at_step[25]["endpoints"] == {v2: 3, v3: 1}, at_step[25]["endpoints"]

    # The analysis was fed by probes of each version: each window saw requests of both, and the stand-in
    # received at least as many requests labelled with each version.
    windows = [p["data"]["analysis"] for _, p in seen if p["step"] == "analysis"]
    assert windows, [p["message"] for _, p in seen]
    for a in windows:
        assert a["candidate"]["requests"] > 0 and a["stable"]["requests"] > 0, a
    after = d.container.counts()
    grew = {v: after.get(v, 0) - before.get(v, 0) for v in (v1, v2, v3)}
    print("probe requests by version header during the canary:", grew)
    if PROXY:
        assert grew[v3] >= sum(a["candidate"]["requests"] for a in windows), (grew, windows)
        assert grew[v2] >= sum(a["stable"]["requests"] for a in windows), (grew, windows)
        assert grew[v1] == 0, grew

    # Live: the Service selects v3 alone, at N Pods; v2 is kept warm at N; v1 stays at 0.
    assert k.selected_version() == v3
    assert replicas(k) == {v1: 0, v2: N, v3: N}, replicas(k)
    assert wait_endpoints(k, service, {v3: N}) == {v3: N}
    assert d.status(plan["deployment_id"])["deployment"]["status"] == "live"


def test_a_candidate_failing_after_its_smoke_test_is_aborted_on_kubernetes(kc):
    if not PROXY:
        pytest.skip("the stand-in fails a version by the X-Model-Deployer-Version header, which only the proxy transport sends")
    d, k = kc, kc.k
    v2, v3 = version(d.tags, "v2"), version(d.tags, THIRD)
    service, _ = v1_then_v2_blue_green(d)
    # Its smoke test (no version header) and its first two probes pass; every later probe of it answers 500.
    d.container.failing_after[v3] = 2

    plan = plan_canary(d, THIRD)
    out, seen = run(d, plan["deployment_id"])
    windows = [p["data"]["analysis"] for _, p in seen if p["step"] == "analysis"]
    print(json.dumps(windows, indent=1))
    assert out["status"] == "aborted", (out, [p["message"] for _, p in seen])
    assert out["error"]["reason"] == "analysis_failed", out["error"]
    assert [w["verdict"] for w in windows][-2:] == ["fail", "fail"], windows
    assert windows[-1]["candidate"]["errors"] > 0 and windows[-1]["stable"]["errors"] == 0, windows[-1]
    # Back on the stable version alone: v2 selected at N Pods, the candidate at 0.
    assert k.selected_version() == v2
    r = replicas(k)
    assert r[v2] == N and r[v3] == 0, r
    assert wait_endpoints(k, service, {v2: N}) == {v2: N}


def test_kill_9_of_the_agent_mid_canary_then_reconcile_on_kubernetes(kc):
    d, k = kc, kc.k
    v2, v3 = version(d.tags, "v2"), version(d.tags, THIRD)
    service, live = v1_then_v2_blue_green(d)
    plan = plan_canary(d, THIRD)
    did = plan["deployment_id"]
    # Killed while the first analysis interval is being judged (the Service selects both versions then).
    d.execute_until(did, "analysis")
    assert "model-deployer/version" not in k.selector(), k.selector()
    agent = d.agent
    agent.proc.kill()
    agent.proc.wait()
    d.agent = d.start()
    st = d.status(did)
    assert st["deployment"]["status"] == "interrupted", st["deployment"]
    assert st["live"]["deployment_id"] == live
    # Reconciled: the selector is back on v2 alone, the candidate at 0, v2 at N.
    assert k.selected_version() == v2
    r = replicas(k)
    assert r[v2] == N and r[v3] == 0, r
    assert wait_endpoints(k, service, {v2: N}) == {v2: N}
