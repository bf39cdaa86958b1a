"""Helpers for the end-to-end deployment tests: the example model's tags, a test policy, a steady client
load that counts failed requests, and a look at which BentoML slot processes are running."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

SMOKE_INPUT = {"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]}
EXPECT = {"v1": [0, 2, 1], "v2": [10, 12, 11], "broken": [0, 2, 1]}

# Environments for the tests: no gates where gates are not the subject, short bakes, warm slots kept.
TEST_POLICY = {
    "version": 1,
    "environments": {
        "qa": {"gates": [], "bake_seconds": 0, "keep_warm_seconds": 900},
        "bake": {"gates": [], "bake_seconds": 25, "keep_warm_seconds": 900},
        "tight": {"gates": [], "startup_deadline_seconds": 1, "bake_seconds": 0},
        "hurry": {"gates": ["deploy"], "approval_timeout": 1},
    },
}


def example_tags() -> dict[str, str]:
    """model_v1, bento_v1, model_v2, ... from the example build (skips when the test command did not build it)."""
    path = os.environ.get("MODEL_DEPLOYER_TEST_EXAMPLE_TAGS")
    if not path or not Path(path).is_file() or not os.environ.get("MODEL_DEPLOYER_TEST_BENTOML_HOME"):
        if os.environ.get("CI"):
            pytest.fail("MODEL_DEPLOYER_TEST_EXAMPLE_TAGS / MODEL_DEPLOYER_TEST_BENTOML_HOME unset: run scripts/test.sh")
        pytest.skip("needs the example BentoML store: run through scripts/test.sh")
    tags = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.strip().split("=", 1)
            tags[k] = v
    return tags


def version(tags: dict[str, str], kind: str) -> str:
    return tags[f"model_{kind}"].split(":", 1)[1]


def smoke(kind: str) -> list[dict]:
    return [{"api": "predict", "input": SMOKE_INPUT, "expect": EXPECT[kind]}]


class Load:
    """Steady POST /predict traffic against an endpoint from a few threads with keep-alive connections,
    as real clients do. Counts every failed request (an exception or a non-200 answer)."""

    def __init__(self, url: str, threads: int = 4, keep_alive: bool = True):
        assert url.startswith("http://"), url
        self.keep_alive = keep_alive  # False: a new connection per request (what a refused port shows up on)
        host, port = url[len("http://"):].rstrip("/").split(":")
        self.host, self.port = host, int(port)
        self.threads = threads
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.failures: list[str] = []
        self.answers: list[tuple[float, str]] = []   # (time, answer text), in arrival order
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "Load":
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_flag.set()
        for w in self._workers:
            w.join(timeout=15)

    def _run(self) -> None:
        body = json.dumps({"input": [[5.1, 3.5, 1.4, 0.2]]})
        conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                text = resp.read().decode()
                if not self.keep_alive:
                    conn.close()
                    conn = None
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        self.answers.append((time.monotonic(), text))
                    else:
                        self.failed += 1
                        self.failures.append(f"HTTP {resp.status}: {text[:200]}")
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failed += 1
                    self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)

    def distinct_answers(self) -> list[str]:
        """Answers in the order they first appeared."""
        seen: list[str] = []
        for _, a in self.answers:
            if a not in seen:
                seen.append(a)
        return seen


def answer(url: str) -> str:
    conn = http.client.HTTPConnection(url[len("http://"):].split(":")[0], int(url.rsplit(":", 1)[1].rstrip("/")), timeout=10)
    conn.request("POST", "/predict", body=json.dumps({"input": [[5.1, 3.5, 1.4, 0.2]]}), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode()
    assert r.status == 200, (r.status, text)
    return text


def slot_processes(home: Path) -> dict[str, list[int]]:
    """Running processes started for a slot under `home` (they carry MODEL_DEPLOYER_SLOT in their
    environment), by slot directory."""
    marker = f"MODEL_DEPLOYER_SLOT={home}/slots/".encode()
    out: dict[str, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            env = Path(f"/proc/{d}/environ").read_bytes()
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue  # a zombie holds nothing
        for entry in env.split(b"\0"):
            if entry.startswith(marker):
                slot = entry.split(b"=", 1)[1].decode()
                out.setdefault(slot.rsplit("/", 1)[-1], []).append(int(d))
    return out


def haproxy_pids(home: Path) -> dict[str, int]:
    """Live HAProxy processes of the endpoints under `home/router` (one per endpoint), by pid file name."""
    out: dict[str, int] = {}
    for pidfile in (home / "router").glob("ep-*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if cmd and cmd[0].split(b"/")[-1].startswith(b"haproxy"):
            out[pidfile.name] = pid
    return out


def nginx_pids(home: Path) -> list[int]:
    """nginx processes (master and workers, orphans included) holding a file under `home/router` open."""
    out = []
    prefix = str(home / "router") + "/"
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if b"nginx" not in Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")[0]:
                continue
            if any(os.readlink(f"/proc/{d}/fd/{fd}").startswith(prefix) for fd in os.listdir(f"/proc/{d}/fd")):
                out.append(int(d))
        except OSError:
            continue
    return out


def stop_everything(home: Path) -> None:
    """Kills whatever a test left running under `home`: slot process trees and the router (HAProxy's
    processes, or nginx)."""
    import signal
    for pids in slot_processes(home).values():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in haproxy_pids(home).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pidfile in (home / "router").glob("**/nginx.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGQUIT)
        except (ValueError, ProcessLookupError, OSError):
            pass
