#!/usr/bin/env python3
"""Client overhead per call: DeployerClient / SyncDeployerClient vs the raw agent round trip.

    MODEL_DEPLOYER_BIN=.build/release/model-deployer python clients/python/bench_client.py [--calls N]

"raw" writes one NDJSON request to the agent's stdin and blocks on os.read for the answer line: the
floor any client pays (agent work + two pipe hops + Python's json). The clients add futures, the event
loop, id matching and (sync) a thread hop. Prints mean / p50 / p99 per call and the overhead over raw.
A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from model_deployer_client import DeployerClient, SyncDeployerClient, find_binary  # noqa: E402


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean": statistics.fmean(ordered) * 1e3,
        "p50": ordered[len(ordered) // 2] * 1e3,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
    }


def raw_round_trips(binary: str, home: str, method: str, params: dict, calls: int) -> list[float]:
    agent = subprocess.Popen([binary, "serve", "--home", home], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, bufsize=0)
    assert agent.stdin and agent.stdout
    fd_in, fd_out = agent.stdin.fileno(), agent.stdout.fileno()
    buffer = b""
    samples = []
    try:
        for i in range(calls):
            frame = json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode() + b"\n"
            start = time.perf_counter()
            os.write(fd_in, frame)
            while b"\n" not in buffer:
                buffer += os.read(fd_out, 65536)
            line, buffer = buffer.split(b"\n", 1)
            json.loads(line)
            samples.append(time.perf_counter() - start)
    finally:
        agent.stdin.close()
        agent.wait(10)
    return samples


async def async_round_trips(binary: str, home: str, method: str, params: dict, calls: int) -> list[float]:
    samples = []
    async with DeployerClient(binary, home=home, stderr="devnull") as client:
        for _ in range(calls):
            start = time.perf_counter()
            await client.call(method, params)
            samples.append(time.perf_counter() - start)
    return samples


async def async_pipelined(binary: str, home: str, calls: int) -> float:
    async with DeployerClient(binary, home=home, stderr="devnull") as client:
        start = time.perf_counter()
        await asyncio.gather(*(client.ping() for _ in range(calls)))
        return calls / (time.perf_counter() - start)


def sync_round_trips(binary: str, home: str, method: str, params: dict, calls: int) -> list[float]:
    samples = []
    with SyncDeployerClient(binary, home=home, stderr="devnull") as client:
        for _ in range(calls):
            start = time.perf_counter()
            client.call(method, params)
            samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--bin", default=None)
    args = parser.parse_args()
    binary = find_binary(args.bin)
    home = tempfile.mkdtemp(prefix="md-bench-")
    calls = args.calls
    print(f"agent: {binary}\ncalls per row: {calls} (sequential, one in flight)\n")
    print(f"{'method':<14} {'path':<8} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'overhead ms':>12}")
    for method, params in (("ping", {}), ("history.query", {"limit": 5})):
        raw_runs = raw_round_trips(binary, home, method, params, calls)
        raw = summary(raw_runs)
        rows = [
            ("raw", raw),
            ("async", summary(asyncio.run(async_round_trips(binary, home, method, params, calls)))),
            ("sync", summary(sync_round_trips(binary, home, method, params, calls))),
        ]
        for name, s in rows:
            overhead = "" if name == "raw" else f"{s['mean'] - raw['mean']:+.3f}"
            print(f"{method:<14} {name:<8} {s['mean']:>8.3f} {s['p50']:>8.3f} {s['p99']:>8.3f} {overhead:>12}")
    rate = asyncio.run(async_pipelined(binary, home, calls * 5))
    print(f"\npipelined pings through DeployerClient (asyncio.gather of {calls * 5}): {rate:,.0f} calls/s")


if __name__ == "__main__":
    main()
