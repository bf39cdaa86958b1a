"""Scratch (not committed): client-side latency by 250 ms bin after each traffic change."""
import http.client, json, threading, time
import pytest
from deploy_support import SMOKE_INPUT, TEST_POLICY, version
from test_haproxy_deploy import deployer  # noqa
from test_canary import run, EXPECT, ANSWER

class TimedLoad:
    def __init__(self, url, threads):
        host, port = url[len("http://"):].rstrip("/").split(":")
        self.host, self.port = host, int(port); self.stop_flag = threading.Event(); self.lock = threading.Lock()
        self.rows = []; self.failed = 0
        self.ws = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
    def __enter__(self):
        [w.start() for w in self.ws]; return self
    def __exit__(self, *a):
        self.stop_flag.set(); [w.join(15) for w in self.ws]
    def _run(self):
        body = json.dumps({"input": [[5.1, 3.5, 1.4, 0.2]]}); conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None: conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                t0 = time.monotonic(); conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse(); text = r.read().decode(); t1 = time.monotonic()
                with self.lock: self.rows.append((t0, t1, text))
            except Exception:
                with self.lock: self.failed += 1
                conn = None
            time.sleep(0.005)

def bins(rows, t, answer, span=4.0, w=0.25):
    out = []
    for i in range(int(span / w)):
        lat = sorted((b - a) * 1000 for a, b, x in rows if t + i * w <= b < t + (i + 1) * w and x == answer)
        out.append(f"{len(lat)}:{lat[int(0.95 * (len(lat) - 1))]:.0f}" if lat else "0:-")
    return " ".join(out)

@pytest.mark.parametrize("strategy", ["canary", "blue_green"])
def test_transient(deployer, strategy):
    env = "zzc" if strategy == "canary" else "zzb"
    policy = json.loads(json.dumps(TEST_POLICY))
    policy["environments"][env] = {"gates": [], "bake_seconds": 6 if strategy == "blue_green" else 0, "keep_warm_seconds": 900,
        "canary": {"steps": [5, 25, 100], "pause_seconds": 3, "min_requests": 10, "max_inconclusive_seconds": 30,
                   "analysis": {"interval_seconds": 2, "failure_limit": 2, "min_requests": 5}}}
    (deployer.home / "policy.json").write_text(json.dumps(policy)); deployer.agent.close(); deployer.agent = deployer.start()
    live = deployer.deploy("v1", env=env)
    with TimedLoad(live["endpoint_url"], 12) as load:
        time.sleep(3)
        for n in range(3):
            kind = "v2" if n % 2 == 0 else "v1"; other = "v1" if kind == "v2" else "v2"
            params = {"model_name": "iris_clf", "model_version": version(deployer.tags, kind), "environment": env, "requested_by": "alice",
                      "strategy": strategy, "smoke_tests": [{"api": "predict", "input": SMOKE_INPUT, "expect": EXPECT[kind]}]}
            dep = deployer.call("deploy.plan", params)["result"]["deployment_id"]
            out, seen = run(deployer, dep, rid=f"e{n}")
            changes = [(t, p["message"][:60]) for t, p in seen if p["step"] in ("canary_step", "switch_traffic") ]
            time.sleep(1)
            for t, m in changes:
                print(f"run {n+1} {m}\n  cand {bins(load.rows, t - 1, ANSWER[kind])}\n  stab {bins(load.rows, t - 1, ANSWER[other])}")
            for t, p in seen:
                if p["step"] in ("analysis", "bake_window"): print(f"  {t - changes[0][0]:6.2f} {p['message'][:200]}")
