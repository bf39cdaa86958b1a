#!/usr/bin/env python3
"""JSON-RPC core benchmark: prints, side by side in one run, for the agent (`model-deployer serve`), a
plain-Python stdio JSON-RPC server (py_server.py) and the MCP Python SDK's FastMCP server
(fastmcp_server.py):

- pipelined ping throughput (messages/s): N pings written by `cat` into the server's stdin while this
  process reads the answers; timed from starting `cat` to the last answer read. FastMCP gets `initialize` first and then
  MCP `ping`s.
- cold start: spawn -> first answer (the answer to `ping`; for FastMCP the answer to `initialize`),
  median and p90 of R runs.
- idle RSS (VmRSS from /proc/PID/status) after start-up and one answer, and after the flood.

Usage: .venv/bin/python Benchmarks/rpc-bench/bench.py [--agent-bin PATH] [--n 200000] [--n-fastmcp 5000]
       [--cold-runs 30] [--fastmcp-cold-runs 30]
plain-python batches answers per read like the agent; py-flush-each writes and flushes every answer.
A benchmark, not a test: it prints figures and the targets next to them; it never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


class Server:
    """How to start one contender and what its first exchange is."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], mcp: bool):
        self.name, self.argv, self.env, self.mcp = name, argv, env, mcp

    def spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=self.env, bufsize=0)

    def first_request(self) -> bytes:
        if self.mcp:
            return (json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "rpc-bench", "version": "1"}}}) + "\n").encode()
        return b'{"jsonrpc":"2.0","id":0,"method":"ping"}\n'

    def after_first(self) -> bytes:
        return b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n' if self.mcp else b""


def read_lines(fd: int, n: int, buf: bytearray) -> bytearray:
    """Reads until `n` newline-terminated frames arrived; returns what is left over after them."""
    count = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise RuntimeError(f"server closed stdout after {count} of {n} answers")
        buf += chunk
        count += chunk.count(b"\n")
        if count >= n:
            return buf


def first_answer(p: subprocess.Popen, server: Server) -> None:
    os.write(p.stdin.fileno(), server.first_request())
    buf = read_lines(p.stdout.fileno(), 1, bytearray())
    first = json.loads(buf.split(b"\n", 1)[0])
    assert first.get("id") == 0 and "result" in first, first
    if server.after_first():
        os.write(p.stdin.fileno(), server.after_first())


def stop(p: subprocess.Popen) -> float:
    """Closes stdin and returns how long the server took to exit (ms)."""
    t = time.perf_counter()
    p.stdin.close()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return float("nan")
    return (time.perf_counter() - t) * 1000


def cold_start(server: Server, runs: int) -> dict:
    times, exits = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = server.spawn()
        first_answer(p, server)
        times.append((time.perf_counter() - t0) * 1000)
        exits.append(stop(p))
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
            "min_ms": times[0], "exit_after_eof_median_ms": statistics.median(exits)}


def throughput(server: Server, n: int) -> dict:
    p = server.spawn()
    first_answer(p, server)
    time.sleep(0.3)
    idle = rss_kib(p.pid)
    payload = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % (i + 1) for i in range(n))
    with tempfile.NamedTemporaryFile(prefix="rpc-bench-", suffix=".jsonl") as f:
        f.write(payload)
        f.flush()
        # `cat` (C) feeds the server's stdin while this process only reads: the client is not the bottleneck.
        t0 = time.perf_counter()
        writer = subprocess.Popen(["cat", f.name], stdout=p.stdin)
        buf = read_lines(p.stdout.fileno(), n, bytearray())
        elapsed = time.perf_counter() - t0
        writer.wait()
    # Every answer arrived and is a ping result (parsed after the clock stopped).
    lines = bytes(buf).splitlines()
    ids = set()
    for line in lines:
        m = json.loads(line)
        assert m.get("result") == {}, m
        ids.add(m["id"])
    assert ids == set(range(1, n + 1)), f"{len(ids)} distinct answers of {n}"
    after = rss_kib(p.pid)
    stop(p)
    return {"n": n, "seconds": elapsed, "msgs_per_s": n / elapsed, "idle_rss_kib": idle, "rss_after_flood_kib": after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent-bin", default=os.environ.get("MODEL_DEPLOYER_BIN", str(REPO / ".build/release/model-deployer")))
    ap.add_argument("--python", default=sys.executable, help="interpreter for the Python servers (needs `mcp`)")
    ap.add_argument("--n", type=int, default=200_000, help="pings for the agent and the plain-Python server")
    ap.add_argument("--n-fastmcp", type=int, default=5_000, help="pings for FastMCP (it is slow)")
    ap.add_argument("--cold-runs", type=int, default=30)
    ap.add_argument("--fastmcp-cold-runs", type=int, default=30)
    ap.add_argument("--skip-fastmcp", action="store_true")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="rpc-bench-")
    env = dict(os.environ, MODEL_DEPLOYER_HOME=home, BENTOML_DO_NOT_TRACK="true", MODEL_DEPLOYER_LOG_LEVEL="warning")
    env.pop("MODEL_DEPLOYER_DATABASE_URL", None)
    servers = [
        (Server("agent", [args.agent_bin, "serve"], env, mcp=False), args.n, args.cold_runs),
        (Server("plain-python", [args.python, str(HERE / "py_server.py")], env, mcp=False), args.n, args.cold_runs),
        (Server("py-flush-each", [args.python, str(HERE / "py_server.py"), "--flush-each"], env, mcp=False),
         args.n, args.cold_runs),
    ]
    if not args.skip_fastmcp:
        servers.append((Server("fastmcp", [args.python, str(HERE / "fastmcp_server.py")], env, mcp=True),
                        args.n_fastmcp, args.fastmcp_cold_runs))

    version = subprocess.run([args.agent_bin, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# rpc-bench  {time.strftime('%Y-%m-%d %H:%M:%S')}  {version}  cpus={os.cpu_count()}  "
          f"python={sys.version.split()[0]}  loadavg={os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    for server, n, runs in servers:
        print(f"  {server.name}: cold start x{runs} ...", file=sys.stderr, flush=True)
        cold = cold_start(server, runs)
        print(f"  {server.name}: {n} pipelined pings ...", file=sys.stderr, flush=True)
        tp = throughput(server, n)
        results[server.name] = {**cold, **tp}

    names = list(results)
    rows = [
        ("pipelined ping (msg/s)", lambda r: f"{r['msgs_per_s']:,.0f}"),
        ("  pings sent", lambda r: f"{r['n']:,}"),
        ("cold start median (ms)", lambda r: f"{r['median_ms']:.1f}"),
        ("cold start p90 (ms)", lambda r: f"{r['p90_ms']:.1f}"),
        ("cold start min (ms)", lambda r: f"{r['min_ms']:.1f}"),
        ("exit after stdin EOF, median (ms)", lambda r: f"{r['exit_after_eof_median_ms']:.1f}"),
        ("idle RSS (MiB)", lambda r: f"{r['idle_rss_kib'] / 1024:.1f}"),
        ("RSS after the flood (MiB)", lambda r: f"{r['rss_after_flood_kib'] / 1024:.1f}"),
    ]
    w = 36
    print(f"{'':{w}}" + "".join(f"{n:>15}" for n in names))
    for label, fmt in rows:
        print(f"{label:{w}}" + "".join(f"{fmt(results[n]):>15}" for n in names))

    a, py, naive = results["agent"], results["plain-python"], results["py-flush-each"]
    ratio = a["msgs_per_s"] / py["msgs_per_s"]
    ratio_naive = a["msgs_per_s"] / naive["msgs_per_s"]
    print()
    print("plain-python batches its answers per read like the agent; py-flush-each writes and flushes each answer.")
    print("targets (agent):")
    print(f"  ping throughput >= 8x plain Python   {ratio:6.1f}x       {'met' if ratio >= 8 else 'NOT met'}"
          f"   (vs py-flush-each: {ratio_naive:.1f}x)")
    print(f"  ping throughput >= 400,000 msg/s     {a['msgs_per_s']:,.0f}  {'met' if a['msgs_per_s'] >= 400_000 else 'NOT met'}")
    print(f"  cold start median <= 10 ms           {a['median_ms']:.1f} ms      {'met' if a['median_ms'] <= 10 else 'NOT met'}")
    print(f"  idle RSS <= 15 MiB                   {a['idle_rss_kib'] / 1024:.1f} MiB     {'met' if a['idle_rss_kib'] <= 15 * 1024 else 'NOT met'}")
    if "fastmcp" in results:
        print(f"  (agent vs FastMCP: {a['msgs_per_s'] / results['fastmcp']['msgs_per_s']:.0f}x throughput, "
              f"{results['fastmcp']['median_ms'] / a['median_ms']:.0f}x faster cold start)")
    if os.environ.get("RPC_BENCH_JSON"):
        Path(os.environ["RPC_BENCH_JSON"]).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
