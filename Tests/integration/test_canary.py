"""Canary on real BentoML slots behind HAProxy (`serve` with MODEL_DEPLOYER_ROUTER=haproxy) under a steady client
load: the weight steps, the share each version served (counted by the client's answers and by the router's request
log, as the analysis events report it), no traffic (inconclusive), deploy.abort mid-canary, and faulty candidates
(the example's flaky and slow versions) aborted by the analysis. Each test uses its own environment names."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest

from deploy_support import SMOKE_INPUT, TEST_POLICY, Load, version
from test_haproxy_deploy import deployer  # noqa: F401 - the HAProxy deployer fixture

ANSWER = {"v1": "[0]", "v2": "[10]", "flaky": "[20]", "slow": "[30]"}
EXPECT = {"v1": [0, 2, 1], "v2": [10, 12, 11], "flaky": [20, 22, 21], "slow": [30, 32, 31]}
CANARY = {"steps": [5, 25, 50, 100], "pause_seconds": 6, "min_requests": 10, "max_inconclusive_seconds": 15,
          "analysis": {"interval_seconds": 3, "failure_limit": 2, "min_requests": 5}}
ENVS = ["cstep", "cquiet", "cabort", "cflaky", "cslow", "cbake"]


@pytest.fixture
def canary(deployer):  # noqa: F811
    """The HAProxy deployer with canary environments (no gates, the stable version kept warm)."""
    policy = json.loads(json.dumps(TEST_POLICY))
    for env in ENVS:
        policy["environments"][env] = {"gates": [], "bake_seconds": 8 if env == "cbake" else 0, "keep_warm_seconds": 900, "canary": CANARY}
    (deployer.home / "policy.json").write_text(json.dumps(policy))
    deployer.agent.close()
    deployer.agent = deployer.start()
    return deployer


def plan_canary(d, kind: str, env: str, **canary) -> str:
    params = {"model_name": "iris_clf", "model_version": version(d.tags, kind), "environment": env, "requested_by": "alice",
              "strategy": "canary", "smoke_tests": [{"api": "predict", "input": SMOKE_INPUT, "expect": EXPECT[kind]}]}
    if canary:
        params["canary"] = canary
    r = d.call("deploy.plan", params)
    assert "result" in r, r
    assert r["result"]["deployment"]["deployment_strategy"] == "canary", r["result"]["plan"]["reasons"]
    assert r["result"]["plan"]["config"]["canary"]["analysis"]["interval_seconds"] == 3
    return r["result"]["deployment_id"]


def run(d, deployment_id: str, rid: str = "exec", on_progress=None, timeout: float = 300) -> tuple[dict, list[tuple[float, dict]]]:
    """deploy.execute, collecting its progress notifications with their arrival time; `on_progress` may act on one."""
    d.agent.send({"jsonrpc": "2.0", "id": rid, "method": "deploy.execute", "params": {"deployment_id": deployment_id}})
    seen: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while True:
        f = d.agent.recv(timeout=max(0.1, deadline - time.monotonic()))
        if f.get("method") == "deploy.progress":
            d.openrpc.check_notification(f)
            seen.append((time.monotonic(), f["params"]))
            if on_progress:
                on_progress(f["params"])
        elif f.get("id") == rid:
            assert "result" in f, f
            return f["result"], seen
        elif on_progress and "id" in f:
            on_progress(f)


def test_canary_steps_serve_each_version_its_weight(canary):
    v1 = canary.deploy("v1", env="cstep")
    assert v1["status"] == "live", v1
    dep = plan_canary(canary, "v2", "cstep")
    with Load(v1["endpoint_url"], threads=4) as load:
        time.sleep(1)
        out, seen = run(canary, dep)
        time.sleep(1)
    assert out["status"] == "live", out
    assert load.failed == 0, load.failures[:5]
    # The weight steps as reported, each with its weights by version.
    steps = [(t, p) for t, p in seen if p["step"] == "canary_step" and p["message"].startswith("canary step")]
    assert [p["data"]["weight"] for _, p in steps] == [5, 25, 50], [p["message"] for _, p in steps]
    v1v, v2v = version(canary.tags, "v1"), version(canary.tags, "v2")
    assert steps[0][1]["data"]["weights"] == {v1v: 95, v2v: 5}
    raises = [t for t, p in seen if p["step"] == "canary_step" and p["message"].startswith("canary: raising")]
    analysis = [p for _, p in seen if p["step"] == "analysis"]
    for i, (start, p) in enumerate(steps):
        w = p["data"]["weight"]
        end = raises[i + 1]
        # Counted by the client: the answers it got while this step's weights were in force.
        answers = [a for t, a in load.answers if start + 0.3 <= t <= end - 0.3]
        share = 100 * sum(1 for a in answers if a == ANSWER["v2"]) / len(answers)
        assert len(answers) > 100, (w, len(answers))
        assert abs(share - w) <= 2, (w, share, len(answers))
        # Counted by the router (its request log, as the analysis windows at this step report it).
        windows = [a["data"]["analysis"] for a in analysis if a["data"]["step_index"] == i]
        cand = sum(x["candidate"]["requests"] for x in windows)
        stab = sum(x["stable"]["requests"] for x in windows)
        # A single slow interval of a healthy version on this shared machine is noise; the failure limit
        # (2 in a row) is what aborts, and this canary went live.
        assert windows and windows[-1]["verdict"] == "pass", windows
        assert abs(100 * cand / (cand + stab) - w) <= 2, (w, cand, stab)
        print(f"step {w}%: client {share:.2f}% of {len(answers)}, router {100 * cand / (cand + stab):.2f}% of {cand + stab}")
    # Live: every answer is v2's now, and v1 stays warm for a rollback.
    assert load.answers[-1][1] == ANSWER["v2"]
    def traffic_at(at: str) -> dict[str, int]:
        r = canary.call("history.query", {"model_name": "iris_clf", "environment": "cstep", "traffic_at": at})["result"]
        return {t["version"]: t["weight"] for t in r["traffic"]}

    # history.query answers the share each version had at an instant: during the 25% step, and once live.
    at_25 = next(a["at"] for a in analysis if a["data"]["step_index"] == 1)
    assert traffic_at(at_25) == {v1v: 75, v2v: 25}
    live_at = datetime.fromisoformat(out["deployment_timestamp"].replace("Z", "+00:00")) + timedelta(seconds=1)
    assert traffic_at(live_at.isoformat().replace("+00:00", "Z")) == {v2v: 100}


def test_no_traffic_pauses_the_canary_as_inconclusive(canary):
    v1 = canary.deploy("v1", env="cquiet")
    assert v1["status"] == "live", v1
    dep = plan_canary(canary, "v2", "cquiet")
    out, seen = run(canary, dep)
    windows = [p for _, p in seen if p["step"] == "analysis"]
    assert windows and all(p["data"]["analysis"]["verdict"] == "inconclusive" for p in windows)
    assert all(p["message"].startswith("analysis at 5%: inconclusive") for p in windows), [p["message"] for p in windows]
    assert all(p["status"] == "canary" for p in windows)
    # It never advanced on no data, and gave up after max_inconclusive_seconds with traffic on v1.
    assert not [p for _, p in seen if p["step"] == "canary_step" and p.get("data", {}).get("weight", 5) > 5]
    assert out["status"] == "aborted" and out["error"]["reason"] == "analysis_inconclusive", out


def test_abort_mid_canary_puts_traffic_back_on_stable(canary):
    v1 = canary.deploy("v1", env="cabort")
    assert v1["status"] == "live", v1
    dep = plan_canary(canary, "v2", "cabort")
    sent = []

    def abort_at_first_window(p):
        if p.get("step") == "analysis" and not sent:
            canary.agent.send({"jsonrpc": "2.0", "id": "abort", "method": "deploy.abort",
                               "params": {"deployment_id": dep, "requested_by": "carol", "reason": "by hand"}})
            sent.append(time.monotonic())
        elif p.get("id") == "abort":
            sent.append(p)

    with Load(v1["endpoint_url"], threads=4) as load:
        time.sleep(1)
        out, _ = run(canary, dep, on_progress=abort_at_first_window)
        if len(sent) < 2:
            sent.append(canary.agent.wait_response("abort", timeout=60))
        time.sleep(2)
    assert sent[1]["result"]["deployment"]["status"] == "aborted", sent[1]
    assert out["status"] == "aborted" and out["error"]["reason"] == "aborted", out
    assert load.failed == 0, load.failures[:5]
    after = [a for t, a in load.answers if t > time.monotonic() - 1.5]
    assert after and set(after) == {ANSWER["v1"]}, set(after)


@pytest.mark.parametrize("kind", ["flaky", "slow"])
def test_a_faulty_candidate_is_aborted_within_two_intervals(canary, kind):
    env = "cflaky" if kind == "flaky" else "cslow"
    v1 = canary.deploy("v1", env=env)
    assert v1["status"] == "live", v1
    # 25% first, so the candidate's share of this load fills an interval quickly.
    dep = plan_canary(canary, kind, env, steps=[25, 100])
    with Load(v1["endpoint_url"], threads=4) as load:
        time.sleep(1)
        out, seen = run(canary, dep)
        time.sleep(2)
    assert out["status"] == "aborted", out
    assert out["error"]["reason"] == "analysis_failed", out["error"]
    windows = [p["data"]["analysis"] for _, p in seen if p["step"] == "analysis"]
    assert len(windows) <= 2, windows
    assert [w["verdict"] for w in windows] == ["fail", "fail"], windows
    after = [a for t, a in load.answers if t > time.monotonic() - 1.5]
    assert after and set(after) == {ANSWER["v1"]}, set(after)
    print(kind, json.dumps(windows[-1]))


def test_the_blue_green_bake_judges_real_traffic(canary):
    """The slow version's probe baseline is as slow as its bake probes (half of both are delayed), so a bake
    against probes passes it; against v1's real traffic just before the switch it is rolled back."""
    v1 = canary.deploy("v1", env="cbake")
    assert v1["status"] == "live", v1
    params = {"model_name": "iris_clf", "model_version": version(canary.tags, "slow"), "environment": "cbake", "requested_by": "alice",
              "smoke_tests": [{"api": "predict", "input": SMOKE_INPUT, "expect": EXPECT["slow"]}]}
    # Two client threads: enough traffic for the analysis, not so much that v1's own p95 on this 2-core
    # machine reaches half of the slow version's 300 ms.
    with Load(v1["endpoint_url"], threads=2) as load:
        time.sleep(11)  # a full real-traffic window of v1 before the switch
        dep = canary.call("deploy.plan", params)["result"]["deployment_id"]
        out, seen = run(canary, dep)
        time.sleep(1.5)
    assert out["deployment_strategy"] == "blue_green"
    windows = [p["message"] for _, p in seen if p["step"] == "bake_window"]
    print("\n".join(windows))
    assert any(m.startswith("bake window (real traffic): p95") for m in windows), windows
    st = canary.status(dep)
    assert st["deployment"]["status"] == "rolled_back", st["deployment"]
    assert st["deployment"]["error"]["reason"] == "latency_regression", st["deployment"]["error"]
    assert load.answers[-1][1] == ANSWER["v1"]
    assert load.failed == 0, load.failures[:5]
