#!/usr/bin/env python3
"""Prints how long a history.query and a ping wait while two deploy.plan requests with 15 MB smoke-test
inputs are being parsed, validated, hashed and stored (hardening issue, item 12).

Usage: BENTOML_HOME=<example store> python Benchmarks/rpc-bench/starvation.py <model-deployer> <tags file>
(the tags file is what examples/iris/build.sh prints)."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

binary, tags_file = sys.argv[1], sys.argv[2]
tags = dict(line.strip().split("=", 1) for line in open(tags_file) if "=" in line)
v1 = tags["model_v1"].split(":")[1]
home = tempfile.mkdtemp()
with open(f"{home}/policy.json", "w") as f:
    json.dump({"version": 1, "environments": {"qa": {"gates": []}, "bake": {"gates": []}}}, f)
env = dict(os.environ, MODEL_DEPLOYER_HOME=home, BENTOML_DO_NOT_TRACK="true")
agent = subprocess.Popen([binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
answered: dict = {}


def reader():
    for line in agent.stdout:
        msg = json.loads(line)
        if "id" in msg:
            answered[msg["id"]] = time.monotonic()


threading.Thread(target=reader, daemon=True).start()


def send(obj):
    agent.stdin.write((json.dumps(obj) + "\n").encode())
    agent.stdin.flush()


def wait_for(*ids):
    while not all(i in answered for i in ids):
        time.sleep(0.002)


send({"jsonrpc": "2.0", "id": "warm", "method": "history.query", "params": {}})
wait_for("warm")
big = {"input": [[5.1, 3.5, 1.4, 0.2]] * 700_000}
start = time.monotonic()
for i, environment in enumerate(["qa", "bake"]):
    send({"jsonrpc": "2.0", "id": f"plan{i}", "method": "deploy.plan",
          "params": {"model_name": "iris_clf", "model_version": v1, "environment": environment, "requested_by": "alice",
                     "smoke_tests": [{"api": "predict", "input": big}]}})
sent_history = time.monotonic()
send({"jsonrpc": "2.0", "id": "history", "method": "history.query", "params": {"limit": 1}})
sent_ping = time.monotonic()
send({"jsonrpc": "2.0", "id": "ping", "method": "ping"})
wait_for("plan0", "plan1", "history", "ping")
print(f"smoke input per plan: {len(json.dumps(big)) / 1e6:.1f} MB")
print(f"history.query answered {1000 * (answered['history'] - sent_history):.0f} ms after it was sent")
print(f"ping answered {1000 * (answered['ping'] - sent_ping):.0f} ms after it was sent")
print(f"the two plans answered {answered['plan0'] - start:.1f} s and {answered['plan1'] - start:.1f} s after the first was sent")
agent.stdin.close()
agent.wait()
