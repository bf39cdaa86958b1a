"""Shared pytest fixtures of the client tests: the real agent binary, a fresh agent home (torn down after the test:
slots and router stopped), and, when MODEL_DEPLOYER_TEST_BENTOML_HOME is set, a BentoML store with the iris
example models (examples/iris/build.sh fills it if it is empty)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CLIENT_SRC = REPO / "clients" / "python" / "src"

# Test the working tree, not whatever copy of the package is installed in the venv.
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(CLIENT_SRC), os.environ.get("PYTHONPATH")) if p)


def agent_binary() -> str:
    """The agent under test: $MODEL_DEPLOYER_BIN, else <repo>/.build/release/model-deployer."""
    explicit = os.environ.get("MODEL_DEPLOYER_BIN")
    path = explicit or str(REPO / ".build" / "release" / "model-deployer")
    if not os.access(path, os.X_OK):
        if explicit:
            pytest.fail(f"MODEL_DEPLOYER_BIN={explicit} is not an executable file")
        pytest.skip(f"agent binary not built: {path} (swift build -c release, or set MODEL_DEPLOYER_BIN)")
    return path


@pytest.fixture(scope="session")
def agent_bin() -> str:
    return agent_binary()


# Fast, deterministic policy for test environments: short bake and keep-warm windows.
TEST_POLICY = {
    "environments": {
        "clienttest": {"gates": ["deploy"], "four_eyes": True, "bake_seconds": 1, "keep_warm_seconds": 5},
        "clientprod": {
            "gates": ["deploy", "promote"],
            "four_eyes": True,
            "bake_seconds": 1,
            "keep_warm_seconds": 5,
        },
        # No gate, and the previous version stays warm long enough for a test to look at it (and kill it).
        "clientwarm": {"gates": [], "bake_seconds": 1, "keep_warm_seconds": 600},
        # Canary tests (HAProxy): no deploy gate, the canary settings come with each plan.
        "clientcanary": {"gates": [], "bake_seconds": 1, "keep_warm_seconds": 600},
    }
}

CANARY_ENV = {"MODEL_DEPLOYER_ROUTER": "haproxy"}
"""Agent environment of the canary tests: a router that splits traffic by weight."""


class Traffic:
    """Steady POST /predict calls to an endpoint from `threads` threads, each on one kept connection (as
    real clients do; HAProxy keeps them open through weight changes). Records every answer with the
    monotonic time it arrived; a failure is an exception or a non-200 answer."""

    def __init__(self, url: str, threads: int = 3) -> None:
        import threading

        host, port = url[len("http://"):].rstrip("/").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, int, str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        import http.client
        import time

        body = json.dumps(SETOSA)
        conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                text = answer.read().decode()
                status = answer.status
            except Exception as exc:  # noqa: BLE001 - every failure counts
                text, status = repr(exc), 0
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.answers.append((time.monotonic(), status, text))
            time.sleep(0.005)

    def between(self, start: float, end: float = float("inf")) -> list[tuple[int, str]]:
        with self.lock:
            return [(status, text) for t, status, text in self.answers if start <= t < end]

    def failed(self, start: float = 0.0, end: float = float("inf")) -> list[tuple[int, str]]:
        return [(status, text) for status, text in self.between(start, end) if status != 200]


@pytest.fixture
def traffic():
    return Traffic


@pytest.fixture
def agent_home(tmp_path: Path):
    """A fresh agent home with the test policy; whatever deployments started there is stopped afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "policy.json").write_text(json.dumps(TEST_POLICY))
    yield home
    teardown_home(home)


@dataclass(frozen=True)
class IrisStore:
    """A BentoML store holding the iris example models (see examples/iris)."""

    home: Path
    model_name: str
    v1: str
    v2: str
    broken: str
    flaky: str
    """Answers like v1 + 20 ([20] for SETOSA); 30 % of its /predict requests answer HTTP 500."""
    slow: str
    """Answers like v1 + 30 ([30] for SETOSA); half of its /predict requests take 300 ms longer."""

    def env(self) -> dict[str, str]:
        return {
            "BENTOML_HOME": str(self.home),
            "BENTOML_DO_NOT_TRACK": "true",
            "MODEL_DEPLOYER_BENTOML": str(VENV_BIN / "bentoml"),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }


def _tags_file_versions() -> dict[str, str]:
    """Model versions from build.sh's output ($MODEL_DEPLOYER_TEST_EXAMPLE_TAGS: `model_v1=iris_clf:VER` lines)."""
    path = os.environ.get("MODEL_DEPLOYER_TEST_EXAMPLE_TAGS")
    if not path or not os.path.isfile(path):
        return {}
    found = {}
    for line in Path(path).read_text().splitlines():
        key, _, tag = line.partition("=")
        if key.startswith("model_") and tag.startswith("iris_clf:"):
            found[key[len("model_"):]] = tag.split(":", 1)[1]
    return found


def _models_by_kind(store: Path) -> dict[str, str]:
    """Newest iris_clf version of each kind, read from the store's model.yaml files."""
    found: dict[str, tuple[str, str]] = {}
    root = store / "models" / "iris_clf"
    if not root.is_dir():
        return {}
    for version_dir in root.iterdir():
        meta = version_dir / "model.yaml"
        if not meta.is_file():
            continue
        text = meta.read_text()
        kind = None
        created = ""
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("kind:") and kind is None:
                kind = stripped.split(":", 1)[1].strip().strip("'\"")
            if stripped.startswith("creation_time:"):
                created = stripped.split(":", 1)[1].strip().strip("'\"")
        if kind and (kind not in found or created > found[kind][0]):
            found[kind] = (created, version_dir.name)
    return {kind: version for kind, (_, version) in found.items()}


@pytest.fixture(scope="session")
def iris_store() -> IrisStore:
    home = os.environ.get("MODEL_DEPLOYER_TEST_BENTOML_HOME")
    if not home:
        pytest.skip("needs BentoML: set MODEL_DEPLOYER_TEST_BENTOML_HOME to a BentoML store (examples/iris/build.sh fills it)")
    store = Path(home)
    kinds = _tags_file_versions() or _models_by_kind(store)
    if not {"v1", "v2", "broken", "flaky", "slow"} <= kinds.keys():
        build = REPO / "examples" / "iris" / "build.sh"
        subprocess.run(
            [str(build), str(VENV_BIN.parent)],
            check=True,
            env={**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true"},
            stdout=subprocess.DEVNULL,
        )
        kinds = _models_by_kind(store)
    return IrisStore(home=store, model_name="iris_clf", v1=kinds["v1"], v2=kinds["v2"], broken=kinds["broken"],
                     flaky=kinds["flaky"], slow=kinds["slow"])


SETOSA = {"input": [[5.1, 3.5, 1.4, 0.2]]}
"""A /predict request body: v1 answers [0], v2 answers [10], flaky [20] (or HTTP 500), slow [30], broken answers
HTTP 500 (examples/iris)."""


def smoke(expect: list[int]) -> list[dict]:
    """A smoke test of the iris service's predict API expecting `expect` for SETOSA."""
    return [{"api": "predict", "input": SETOSA, "expect": expect}]


@pytest.fixture
def smoke_test():
    return smoke


@pytest.fixture(scope="session")
def jq() -> str:
    path = shutil.which("jq")
    if path is None:
        pytest.skip("deployctl needs jq")
    return path


def teardown_home(home: Path) -> None:
    """Stops what deployments under `home` left running: BentoML slots (whole trees) and the router (HAProxy or nginx).

    Only processes recorded in this home's slot.json / nginx.pid / ep-*.pid files (started by this test) are signalled.
    """
    import signal
    import time

    def children(pid: int) -> list[int]:
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
        return out

    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except OSError:
            return ""

    victims: list[int] = []
    for slot in home.glob("slots/*/*/*/slot.json"):
        try:
            info = json.loads(slot.read_text())
        except (OSError, ValueError):
            continue
        pid = int(info.get("pid") or 0)
        # Only a process that still is this slot's `bentoml serve ... --port P` (pids get reused).
        if pid <= 0 or f"--port\0{info.get('port')}" not in cmdline(pid) or "bentoml" not in cmdline(pid):
            continue
        victims.append(pid)
        victims.extend(children(pid))
    for pid in victims:
        for send in (lambda p: os.killpg(p, signal.SIGTERM), lambda p: os.kill(p, signal.SIGTERM)):
            try:
                send(pid)
            except (ProcessLookupError, PermissionError):
                pass
    nginx_pid = home / "router" / "run" / "nginx.pid"
    if nginx_pid.is_file():
        try:
            pid = int(nginx_pid.read_text().strip())
            if str(home) not in cmdline(pid):
                raise ProcessLookupError(pid)
            os.kill(pid, signal.SIGTERM)
            victims.append(pid)  # wait for it too: the next test may want its port
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    # The default router, HAProxy: one process per endpoint, its config under this home's router/.
    for pidfile in (home / "router").glob("ep-*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
            if str(home) not in cmdline(pid):
                raise ProcessLookupError(pid)
            os.kill(pid, signal.SIGTERM)
            victims.append(pid)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5
    for pid in victims:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def slot_pids(home: Path, slot: str) -> list[int]:
    """Processes running for `slot` (blue or green) of any deployment under `home`: the slot manager puts
    MODEL_DEPLOYER_SLOT=<home>/slots/.../<slot> in the environment of the process tree it starts."""
    wanted_prefix = f"MODEL_DEPLOYER_SLOT={home}/slots/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(wanted_prefix) and variable.rsplit(b"/", 1)[-1] == slot.encode():
                found.append(int(entry.name))
                break
    return found


def kill_slot(home: Path, slot: str) -> list[int]:
    """SIGKILLs the processes of `slot` under `home` and waits until they are gone (or only zombies).

    Returns the pids killed; fails the test if there were none (the slot was not running)."""
    import signal
    import time

    pids = slot_pids(home, slot)
    assert pids, f"no process runs for slot {slot} under {home}"
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    deadline = time.monotonic() + 30  # a guard against hanging, not a measurement
    while any(running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"slot {slot} processes survived SIGKILL: {pids}"
        time.sleep(0.05)
    return pids
