"""Deployments through the agent binary (JSON-RPC) into a real Kubernetes API server, with an environment
whose policy says `runtime: "kubernetes"`.

Real: the agent binary, its SQLite ledger, kubectl 1.20, etcd, kube-apiserver (server-side apply and
validation, the Service's selector, the service proxy every smoke test and probe goes through) and
kube-controller-manager (ReplicaSets, Pods, the Endpoints of the Services, the progress deadline).

Stood in for (no container runtime can run here): the kubelet and the scheduler, by `KubeletStandIn` and
`StandInContainer` in kube_support.py (its docstring says exactly what they write and answer). Every Pod has
the same address, so an answer through the proxy proves the proxy path and the Endpoints, not which version
answered: which version serves is asserted on the Service's selector and on which Pods its Endpoints list.

The agent talks to the API server through its default transport: one `kubectl proxy --unix-socket` under
<home>/kube, each call an HTTP request on that socket. Every test checks that no proxy of the agent's home
is left once its agents have exited.

Needs MODEL_DEPLOYER_TEST_KUBECONFIG and MODEL_DEPLOYER_KUBECTL (scripts/test.sh starts the control plane);
skips without them, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from deploy_support import SMOKE_INPUT, example_tags, version
from kube_support import ANSWER, CONTEXT, Kubectl, KubeletStandIn, StandInContainer, host_address, kube_env, kube_proxies
from test_deploy import MODEL, Deployer

# The agent's transport to the API server: `proxy` (its default) unless the environment says `exec`, which
# this suite also runs under (then no kubectl proxy may appear at all).
PROXY = os.environ.get("MODEL_DEPLOYER_KUBE_TRANSPORT", "proxy") == "proxy"


def _kube_env() -> tuple[str, str]:
    found = kube_env()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("MODEL_DEPLOYER_TEST_KUBECONFIG / MODEL_DEPLOYER_KUBECTL unset under CI: the control plane must run")
        pytest.skip("no Kubernetes control plane: set MODEL_DEPLOYER_TEST_KUBECONFIG and MODEL_DEPLOYER_KUBECTL (scripts/test.sh does)")
    return found


class KubeDeployer(Deployer):
    def __init__(self, *a, kubeconfig: str, kubectl: str, **kw):
        self.kubeconfig = kubeconfig
        self.kubectl_path = kubectl
        super().__init__(*a, **kw)

    def start(self):
        self.env["KUBECONFIG"] = self.kubeconfig
        self.env["MODEL_DEPLOYER_KUBECTL"] = self.kubectl_path
        return self.spawn_agent(env=self.env)


@pytest.fixture
def kube(spawn_agent, agent_home, openrpc):
    cfg, kubectl = _kube_env()
    tags = example_tags()
    ns = "md-e2e-" + uuid.uuid4().hex[:8]
    k = Kubectl(cfg, kubectl, ns)
    k.run("create", "namespace", ns, namespaced=False)
    host = host_address()
    container = StandInContainer(host)
    kubelet = KubeletStandIn(k, host)
    policy = {"environments": {"kubeqa": {
        "gates": [], "bake_seconds": 2, "keep_warm_seconds": 600, "startup_deadline_seconds": 90,
        "runtime": "kubernetes",
        "kubernetes": {"context": CONTEXT, "namespace": ns, "image": "registry.example/iris_classifier:{bento_version}",
                       "replicas": 1, "progress_deadline_seconds": 6, "container_port": container.port}}}}
    (agent_home / "policy.json").write_text(json.dumps(policy))
    d = KubeDeployer(spawn_agent, agent_home, tags, openrpc, kubeconfig=cfg, kubectl=kubectl)
    d.k, d.kubelet, d.container = k, kubelet, container
    yield d
    for a in spawn_agent.agents:
        a.close()
    # The agents stopped the kubectl proxies they started.
    assert kube_proxies(agent_home) == {}, kube_proxies(agent_home)
    assert not list((agent_home / "kube").glob("*.pid")) if (agent_home / "kube").is_dir() else True
    kubelet.close()
    container.close()
    k.run("delete", "namespace", ns, "--wait=false", namespaced=False, check=False)


def _deploy(d: KubeDeployer, kind: str, **extra) -> dict:
    smoke = [{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}]
    return d.deploy(kind, env="kubeqa", smoke_tests=smoke, **extra)


def test_plan_execute_blue_green_rollback_and_stuck_rollout_on_kubernetes(kube):
    d, k = kube, kube.k
    v1, v2 = version(d.tags, "v1"), version(d.tags, "v2")

    # The plan says where it runs, and the cluster's scheduler (not this host) places the Pods.
    plan = d.call("deploy.plan", {"model_name": MODEL, "model_version": v1, "environment": "kubeqa", "requested_by": "alice",
                                  "smoke_tests": [{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}]})["result"]
    reasons = " ".join(plan["plan"]["reasons"])
    assert "runtime kubernetes" in reasons and k.ns in reasons, reasons
    x = d.call("deploy.execute", {"deployment_id": plan["deployment_id"]})["result"]
    assert x["status"] == "live", x
    assert k.selected_version() == v1
    # All of it went through one kubectl proxy, its socket under the agent's home (or, when that path is too
    # long for a socket address, in the agent's private directory under /tmp).
    proxies = kube_proxies(d.home)
    assert len(proxies) == (1 if PROXY else 0), proxies
    if PROXY:
        name = f"{d.agent.proc.pid}.sock"
        in_home = f"{d.home / 'kube'}/"
        where = in_home if len(in_home) + 13 + len(name) < 100 else f"/tmp/model-deployer-{os.geteuid()}/"
        sock = next(iter(proxies.values()))
        assert sock.startswith(where) and sock.endswith("-" + name), (sock, where)

    st = d.status(plan["deployment_id"])
    rt = st["deployment"]["runtime"]
    assert rt["kind"] == "kubernetes" and rt["context"] == CONTEXT and rt["namespace"] == k.ns, rt
    assert rt["service"] == k.service()["metadata"]["name"]
    dep1 = k.deployment(rt["deployment"])
    assert dep1["metadata"]["labels"]["model-deployer/deployment-id"] == plan["deployment_id"]
    assert dep1["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "model-deployer"
    assert st["slot_alive"] is True and st["endpoint_alive"] is True, st
    assert st["live"]["endpoint_url"] == f"http://{rt['service']}.{k.ns}.svc:80"
    hist = d.call("history.query", {"environment": "kubeqa"})["result"]["deployments"]
    assert hist[0]["runtime"] == rt

    # v2: blue-green by the Service's selector; v1's Deployment stays scaled up (warm).
    x2 = _deploy(d, "v2")
    assert x2["status"] == "live", x2
    # The deployment records the Service's in-cluster URL, as the registry does (it once recorded a loopback port).
    assert x2["endpoint_url"] == f"http://{rt['service']}.{k.ns}.svc:80", x2
    assert k.selected_version() == v2
    assert dep1["metadata"]["name"] != d.status(x2["deployment_id"])["deployment"]["runtime"]["deployment"]
    assert k.deployment(rt["deployment"])["spec"]["replicas"] == 1
    endpoints = k.json("get", "endpoints", rt["service"])
    pods = [a["targetRef"]["name"] for s in endpoints.get("subsets", []) for a in s.get("addresses", [])]
    v2_pods = [p["metadata"]["name"] for p in k.json("get", "pods", "-l", f"model-deployer/version={v2}")["items"]]
    # The endpoints controller follows the selector asynchronously.
    deadline = time.monotonic() + 30
    while sorted(pods) != sorted(v2_pods) and time.monotonic() < deadline:
        time.sleep(0.3)
        endpoints = k.json("get", "endpoints", rt["service"])
        pods = [a["targetRef"]["name"] for s in endpoints.get("subsets", []) for a in s.get("addresses", [])]
    assert sorted(pods) == sorted(v2_pods) and pods, (pods, v2_pods)

    # Rollback: the selector goes back to the warm v1.
    rb = d.call("deploy.rollback", {"model_name": MODEL, "environment": "kubeqa", "requested_by": "alice"})
    assert "result" in rb, rb
    assert rb["result"]["status"] == "live" and rb["result"]["to_version"] == v1, rb
    assert k.selected_version() == v1

    # A version whose image cannot be pulled: stuck (progressDeadlineSeconds exceeded), reported in words,
    # torn down (scaled to 0), and v1 untouched.
    d.kubelet.broken_versions.add(version(d.tags, "broken"))
    xb = d.deploy("broken", env="kubeqa", smoke_tests=[{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}])
    assert xb["status"] == "failed", xb
    msg = xb["error"]["message"]
    assert "ImagePullBackOff" in msg or "image" in msg.lower(), msg
    assert "progress" in msg.lower() or "deadline" in msg.lower(), msg
    assert k.selected_version() == v1
    broken = d.status(xb["deployment_id"])["deployment"]["runtime"]["deployment"]
    assert k.deployment(broken)["spec"]["replicas"] == 0
    assert k.deployment(rt["deployment"])["spec"]["replicas"] == 1


def test_kill_9_of_the_agent_mid_rollout_then_reconcile_on_kubernetes(kube):
    d, k = kube, kube.k
    v1, v2 = version(d.tags, "v1"), version(d.tags, "v2")
    x1 = _deploy(d, "v1")
    assert x1["status"] == "live", x1
    # v2's Pods are never made ready by the stand-in, so the agent is killed while it waits for them.
    d.kubelet.broken_versions.add(v2)
    plan = d.call("deploy.plan", {"model_name": MODEL, "model_version": v2, "environment": "kubeqa", "requested_by": "alice",
                                  "smoke_tests": [{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}]})["result"]
    did = plan["deployment_id"]
    agent = d.agent
    d.execute_until(did, "readiness")
    orphans = kube_proxies(d.home)
    assert len(orphans) == (1 if PROXY else 0), orphans
    agent.proc.kill()
    agent.proc.wait()
    # kill -9 leaves the agent's kubectl proxy running; the next agent kills it and starts its own.
    assert all(os.path.exists(f"/proc/{pid}") for pid in orphans), orphans
    d.agent = d.start()
    st = d.status(did)
    now = kube_proxies(d.home)
    assert len(now) == (1 if PROXY else 0) and not set(now) & set(orphans), (orphans, now)
    assert st["deployment"]["status"] == "interrupted", st["deployment"]
    assert st["deployment"]["error"]["reason"] == "interrupted"
    assert any(e["step"] == "reconcile" for e in st["events"])
    assert st["live"]["deployment_id"] == x1["deployment_id"]
    # Reconciled by label: v2's Deployment is scaled to 0 (kept), v1 untouched and still selected.
    assert k.selected_version() == v1
    assert k.deployment(st["deployment"]["runtime"]["deployment"])["spec"]["replicas"] == 0
    v1_dep = d.status(x1["deployment_id"])["deployment"]["runtime"]["deployment"]
    assert k.deployment(v1_dep)["spec"]["replicas"] == 1


def test_two_agents_on_one_postgres_ledger_make_exactly_one_rollout_in_the_cluster(kube):
    base = os.environ.get("MODEL_DEPLOYER_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("MODEL_DEPLOYER_TEST_DATABASE_URL unset under CI")
        pytest.skip("needs a Postgres: set MODEL_DEPLOYER_TEST_DATABASE_URL (scripts/test.sh does)")
    d, k = kube, kube.k
    v1, v2 = version(d.tags, "v1"), version(d.tags, "v2")
    name = "kube_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", base, "-X", "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    try:
        d.env["MODEL_DEPLOYER_DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + name
        a = d.agent = d.start()
        x1 = _deploy(d, "v1")
        assert x1["status"] == "live", x1
        b = d.start()
        smoke = [{"api": "predict", "input": SMOKE_INPUT, "expect": ANSWER}]
        params = {"model_name": MODEL, "model_version": v2, "environment": "kubeqa", "requested_by": "alice", "smoke_tests": smoke}
        pa = a.request("deploy.plan", params)["result"]["deployment_id"]
        # A second plan of the same rollout while the first is pending is refused by the shared ledger...
        second = b.request("deploy.plan", dict(params, requested_by="carol"))
        assert second.get("error", {}).get("data", {}).get("reason") == "rollout_in_progress", second
        # ...and both agents executing the one plan at once make one rollout.
        a.send({"jsonrpc": "2.0", "id": "x", "method": "deploy.execute", "params": {"deployment_id": pa}})
        b.send({"jsonrpc": "2.0", "id": "x", "method": "deploy.execute", "params": {"deployment_id": pa}})
        ra, rb = a.wait_response("x", timeout=180), b.wait_response("x", timeout=180)
        outcomes = [r.get("result", {}).get("status") for r in (ra, rb)]
        assert "live" in outcomes, (ra, rb)
        loser = rb if outcomes[0] == "live" else ra
        # The other one is refused, or (idempotent) reports the same live outcome without running it again.
        reason = loser.get("error", {}).get("data", {}).get("reason")
        assert reason in ("rollout_in_progress", "status_conflict", "not_executable") or loser.get("result", {}).get("status") == "live", loser
        events = d.status(pa)["events"]
        # The Deployment was applied once: one "slot ... started" event in the shared ledger.
        assert sum(1 for e in events if e["step"] == "start_slot" and e["message"].startswith("slot ")) == 1, events
        assert k.selected_version() == v2
        # One Deployment per version, each in one slot: v1 warm and v2 live, nothing else.
        slotted = k.json("get", "deployments", "-l", "model-deployer/slot")["items"]
        assert sorted(dep["metadata"]["labels"]["model-deployer/version"] for dep in slotted) == sorted([v1, v2]), slotted
        live = d.call("history.query", {"environment": "kubeqa", "model_version": v2, "status": "live"})["result"]["deployments"]
        assert len(live) == 1, live
    finally:
        for ag in d.spawn_agent.agents:
            ag.close()
        subprocess.run(["psql", base, "-X", "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)
