"""What the Kubernetes tests and Benchmarks/kube-bench/agent_bench.py share: a kubectl wrapper for the
test's own reads, and the stand-ins for what cannot run here (no container runtime).

Stood in for: the kubelet and the scheduler. `KubeletStandIn` binds each Pod to a Node object and writes the
Pod's status through the status subresource, as a kubelet would: Running and Ready at this host's
non-loopback address, or, for a version marked broken, waiting in ImagePullBackOff. The containers are
stood in for by `StandInContainer`, one small HTTP server on that address and the policy's container_port:
GET (/readyz, /livez) answers 200, POST (/predict) answers a fixed JSON list (`ANSWER`). Every Pod has the
same address, so an answer through the proxy proves the proxy path and the Endpoints, not which version
answered. The one thing the stand-in knows of versions is the `X-Model-Deployer-Version` header, which the
agent sends (proxy transport only) with each probe of a Kubernetes canary's analysis, through the API
server's pod proxy; smoke tests through a Service carry none. It counts the requests carrying that header by
its value (`served`; `posts`, the POSTs among them), and for a version listed in `failing_after` with K,
every POST carrying that version's header after its first K such POSTs answers 500 (a version that breaks
once the canary has started). Requests without the header are never failed.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

CONTEXT = "model-deployer-test"
ANSWER = [0, 2, 1]


def kube_env() -> tuple[str, str] | None:
    """(kubeconfig, kubectl) from MODEL_DEPLOYER_TEST_KUBECONFIG and MODEL_DEPLOYER_KUBECTL, or None."""
    cfg = os.environ.get("MODEL_DEPLOYER_TEST_KUBECONFIG")
    kubectl = os.environ.get("MODEL_DEPLOYER_KUBECTL")
    if not cfg or not kubectl or not Path(cfg).is_file():
        return None
    return cfg, kubectl


def host_address() -> str:
    """This host's first non-loopback IPv4 address (the API server refuses to proxy to loopback)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))
        return s.getsockname()[0]
    finally:
        s.close()


def kube_proxies(home: Path | str) -> dict[int, str]:
    """The `kubectl proxy --unix-socket=...` processes the agent with home `home` started: pid -> socket.
    Its proxies put their socket under <home>/kube (or, when that path is too long for a socket address,
    elsewhere, and then their pid file under <home>/kube names them)."""
    kube_dir = Path(home) / "kube"
    recorded: set[int] = set()
    for f in kube_dir.glob("*.pid") if kube_dir.is_dir() else []:
        try:
            recorded.add(int(f.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or b"proxy" not in args:
            continue
        sockets = [a[len(b"--unix-socket="):].decode() for a in args if a.startswith(b"--unix-socket=")]
        if sockets and (sockets[0].startswith(f"{kube_dir}/") or int(entry) in recorded):
            found[int(entry)] = sockets[0]
    return found


class Kubectl:
    def __init__(self, kubeconfig: str, kubectl: str, namespace: str):
        self.env = dict(os.environ, KUBECONFIG=kubeconfig)
        self.kubectl = kubectl
        self.ns = namespace

    def run(self, *args: str, stdin: str | None = None, namespaced: bool = True, check: bool = True) -> str:
        argv = [self.kubectl, "--context", CONTEXT] + (["-n", self.ns] if namespaced else []) + list(args)
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=30)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {p.stderr}")
        return p.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json"))

    def service(self) -> dict:
        items = self.json("get", "services", "-l", "model-deployer/role=active")["items"]
        assert len(items) == 1, items
        return items[0]

    def selected_version(self) -> str:
        return self.service()["spec"]["selector"]["model-deployer/version"]

    def deployment(self, name: str) -> dict:
        return self.json("get", "deployment", name)

    def selector(self) -> dict[str, str]:
        """The stable Service's whole selector (during a Kubernetes canary it names no version)."""
        return self.service()["spec"]["selector"]

    def endpoint_versions(self, service: str) -> dict[str, int]:
        """The ready addresses the Endpoints of `service` list, counted by their Pod's exact version (its
        model-deployer/version-name annotation, else its model-deployer/version label; "?" for a Pod gone
        between the two reads)."""
        ep = self.json("get", "endpoints", service)
        names = [a["targetRef"]["name"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [] if a.get("targetRef")]
        pods = {p["metadata"]["name"]: p["metadata"] for p in self.json("get", "pods")["items"]}
        out: dict[str, int] = {}
        for n in names:
            meta = pods.get(n, {})
            v = (meta.get("annotations") or {}).get("model-deployer/version-name") or (meta.get("labels") or {}).get("model-deployer/version", "?")
            out[v] = out.get(v, 0) + 1
        return out


class StandInContainer:
    """Answers where every container would (see the module's docstring)."""

    VERSION_HEADER = "X-Model-Deployer-Version"

    def __init__(self, host: str):
        # Set by a test: version -> K, that version's POSTs answer 500 after its first K.
        self.failing_after: dict[str, int] = {}
        # Requests (any method) by the value of their version header; `posts`: the POSTs among them.
        self.served: dict[str, int] = {}
        self.posts: dict[str, int] = {}
        self.lock = threading.Lock()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bytes, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _count(self, post: bool) -> bool:
                """Counts the request by its version header; True when it must fail."""
                v = self.headers.get(stand_in.VERSION_HEADER)
                if v is None:
                    return False
                with stand_in.lock:
                    stand_in.served[v] = stand_in.served.get(v, 0) + 1
                    if not post:
                        return False
                    stand_in.posts[v] = stand_in.posts.get(v, 0) + 1
                    k = stand_in.failing_after.get(v)
                    return k is not None and stand_in.posts[v] > k

            def do_GET(self):  # noqa: N802
                self._count(post=False)
                self._answer(b'{"ok":true}')

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self._count(post=True):
                    self._answer(b'{"error":"stand-in: this version fails"}', status=500)
                else:
                    self._answer(json.dumps(ANSWER).encode())

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counts(self) -> dict[str, int]:
        """A copy of `served`."""
        with self.lock:
            return dict(self.served)

    def close(self) -> None:
        self.server.shutdown()


class KubeletStandIn:
    """What the scheduler and a kubelet would write for the namespace's Pods, every 300 ms."""

    NODE = "kubelet-stand-in"

    def __init__(self, k: Kubectl, pod_ip: str):
        self.k = k
        self.pod_ip = pod_ip
        self.broken_versions: set[str] = set()
        self.stop_flag = threading.Event()
        # Set: the stand-in skips its passes (a benchmark keeps its kubectl processes off the machine while
        # it times steps that need no Pod to change).
        self.paused = threading.Event()
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.NODE}}
        k.run("apply", "-f", "-", stdin=json.dumps(node), namespaced=False)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)

    def _loop(self) -> None:
        while not self.stop_flag.is_set():
            if self.paused.is_set():
                self.stop_flag.wait(0.3)
                continue
            try:
                self._pass()
            except Exception as e:  # a controller changed a Pod meanwhile: the next pass retries
                print("kubelet stand-in:", e)
            self.stop_flag.wait(0.3)

    def _pass(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for pod in self.k.json("get", "pods")["items"]:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                self.k.run("delete", "pod", name, "--grace-period=0", "--force", "--ignore-not-found", check=False)
                continue
            if not pod["spec"].get("nodeName"):
                binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                           "target": {"apiVersion": "v1", "kind": "Node", "name": self.NODE}}
                self.k.run("create", "--raw", f"/api/v1/namespaces/{self.k.ns}/pods/{name}/binding", "-f", "-",
                           stdin=json.dumps(binding), namespaced=False)
                pod = self.k.json("get", "pod", name)
            broken = pod["metadata"]["labels"].get("model-deployer/version") in self.broken_versions
            status = pod.get("status", {})
            if broken:
                if any(c.get("state", {}).get("waiting") for c in status.get("containerStatuses", [])):
                    continue
                status.update({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now}],
                    "containerStatuses": [{"name": "bento", "ready": False, "restartCount": 0, "image": pod["spec"]["containers"][0]["image"],
                                           "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                                "message": "Back-off pulling image"}}}]})
            else:
                if any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])):
                    continue
                status.update({"phase": "Running", "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}], "hostIP": self.pod_ip,
                               "startTime": now, "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                                                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                               "containerStatuses": [{"name": "bento", "ready": True, "restartCount": 0, "image": "stand-in",
                                                      "imageID": "", "started": True, "state": {"running": {"startedAt": now}}}]})
            pod["status"] = status
            self.k.run("replace", "--raw", f"/api/v1/namespaces/{self.k.ns}/pods/{name}/status", "-f", "-",
                       stdin=json.dumps(pod), namespaced=False)
