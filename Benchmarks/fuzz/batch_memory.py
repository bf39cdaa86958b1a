#!/usr/bin/env python3
"""Memory of large JSON-RPC batches: peak and resident RSS of `model-deployer serve` around batches of
`history.query` (a task-run method, the expensive kind of batch element) against an empty temporary ledger.

For each size N: a fresh agent, one batch of N requests, wait for the answer (or the batch_too_large
refusal), then read VmHWM (peak) and VmRSS (resident, 0.5 s after the answer) from /proc. Prints one line
per size. A benchmark: it prints figures and never fails on them.

Usage: .venv/bin/python Benchmarks/fuzz/batch_memory.py [--agent-bin PATH] [--sizes 1000,10000,400000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS"):
            out[k] = int(v.split()[0])
    return out


def measure(agent_bin: str, n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="md-batchmem-") as home:
        env = dict(os.environ, MODEL_DEPLOYER_HOME=home, MODEL_DEPLOYER_LOG_LEVEL="error")
        env.pop("MODEL_DEPLOYER_DATABASE_URL", None)
        p = subprocess.Popen([agent_bin, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env, bufsize=0)
        p.stdin.write(b'{"jsonrpc":"2.0","id":0,"method":"history.query"}\n')   # ledger opened before measuring
        p.stdout.readline()
        before = status(p.pid)
        body = b"[" + b",".join(b'{"jsonrpc":"2.0","id":%d,"method":"history.query","params":{"limit":5}}' % i
                                for i in range(n)) + b"]\n"
        t0 = time.monotonic()
        p.stdin.write(body)
        answer = json.loads(p.stdout.readline())
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
        after = status(p.pid)
        p.stdin.close()
        p.wait(timeout=60)
    kind = f"{len(answer)} answers" if isinstance(answer, list) else answer.get("error", {}).get("data", {}).get("reason")
    return {"n": n, "answer": kind, "seconds": elapsed, "rss_before_mib": before["VmRSS"] / 1024,
            "peak_mib": after["VmHWM"] / 1024, "rss_after_mib": after["VmRSS"] / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent-bin", default=os.environ.get("MODEL_DEPLOYER_BIN",
                                                          str(REPO / ".build" / "release" / "model-deployer")))
    ap.add_argument("--sizes", default="1000,10000,400000")
    a = ap.parse_args()
    print(f"agent {a.agent_bin}")
    for n in (int(s) for s in a.sizes.split(",")):
        r = measure(a.agent_bin, n)
        per = (r["peak_mib"] - r["rss_before_mib"]) * 1024 / n
        print(f"batch of {n:>7} history.query: {r['answer']:>18} in {r['seconds']:6.2f} s; RSS before "
              f"{r['rss_before_mib']:7.1f} MiB, peak {r['peak_mib']:7.1f} MiB ({per:5.2f} KiB/element), "
              f"0.5 s after the answer {r['rss_after_mib']:7.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
