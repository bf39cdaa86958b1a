"""Shared fixtures for the integration tests that drive the real `model-deployer` binary.

- `agent_bin`: the binary (`$MODEL_DEPLOYER_BIN`, default `<repo>/.build/release/model-deployer`).
- `agent_home`: a fresh `MODEL_DEPLOYER_HOME` per test.
- `agent_env`: the environment a spawned agent gets (home set, BentoML tracking off).
- `spawn_agent(*args, framing="ndjson"|"lsp", env=None, home=None)`: starts `model-deployer serve ...`
  and returns an `Agent`; every agent is closed at the end of the test and its stdout checked for
  garbage (stdout must carry protocol frames only).
- `openrpc`: the parsed `protocol/openrpc.json`; `OpenRPC` validates results and errors against it.

`Agent` speaks either framing: `send(obj)` writes one frame, `send_raw(bytes)` writes bytes as one frame
body (for invalid JSON), `write(bytes)` writes bytes with no framing at all, `recv()` returns the next
parsed frame, `request(method, params)` sends a request and returns its response (keeping the
notifications that arrived meanwhile in `agent.notifications`).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocol"
EXAMPLES = PROTOCOL / "examples"
FRAMINGS = ("ndjson", "lsp")


def binary_path() -> Path:
    return Path(os.environ.get("MODEL_DEPLOYER_BIN", REPO / ".build" / "release" / "model-deployer"))


class NoFrame(AssertionError):
    """No frame arrived within the time allowed."""


class Agent:
    """A running `model-deployer serve` and a client speaking one framing to it."""

    def __init__(self, argv: list[str], framing: str, env: dict[str, str], stderr_path: Path):
        assert framing in FRAMINGS, framing
        self.framing = framing
        self.argv = argv
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, bufsize=0)
        self.frames: queue.Queue[Any] = queue.Queue()
        self.garbage: list[str] = []          # anything on stdout that is not a well-formed frame
        self.notifications: list[dict] = []   # notifications seen by request()
        self._pending: list[Any] = []         # frames read by request() that were not its answer
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- writing -----------------------------------------------------------------------------
    def frame_bytes(self, body: bytes) -> bytes:
        if self.framing == "ndjson":
            return body + b"\n"
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    @staticmethod
    def encode(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def write(self, data: bytes) -> None:
        """Writes bytes as they are (no framing)."""
        with self._write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send_raw(self, body: bytes | str) -> None:
        """Writes `body` as one frame, whatever it contains."""
        if isinstance(body, str):
            body = body.encode()
        self.write(self.frame_bytes(body))

    def send(self, obj: Any) -> None:
        self.send_raw(self.encode(obj))

    def send_many(self, objs: Iterable[Any], chunk: int = 1 << 16) -> None:
        """Writes many frames with few syscalls (pipelining)."""
        buf = bytearray()
        for o in objs:
            buf += self.frame_bytes(self.encode(o))
            if len(buf) >= chunk:
                self.write(bytes(buf))
                buf.clear()
        if buf:
            self.write(bytes(buf))

    def close_stdin(self) -> None:
        with self._write_lock:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    # -- reading -----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        out = self.proc.stdout
        buf = bytearray()
        try:
            while True:
                chunk = out.read1(1 << 20) if hasattr(out, "read1") else os.read(out.fileno(), 1 << 20)
                if not chunk:
                    break
                buf += chunk
                pos = self._parse(buf)
                if pos:
                    del buf[:pos]
        finally:
            if buf.strip():
                self.garbage.append(f"trailing bytes at EOF: {bytes(buf[:200])!r}")
            self.frames.put(EOFError)

    def _parse(self, buf: bytearray) -> int:
        """Parses complete frames from buf; returns how many bytes were consumed."""
        pos = 0
        n = len(buf)
        if self.framing == "ndjson":
            while True:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    return pos
                self._deliver(bytes(buf[pos:nl]))
                pos = nl + 1
        while pos < n:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                if n - pos > 4096:
                    self.garbage.append(f"no header end: {bytes(buf[pos:pos + 200])!r}")
                    return n
                return pos
            header = bytes(buf[pos:end])
            if not header.startswith(b"Content-Length: ") or b"\r\n" in header:
                # The agent must emit exactly `Content-Length: N\r\n\r\n`.
                self.garbage.append(f"bad header: {header[:200]!r}")
                return n
            try:
                length = int(header[len(b"Content-Length: "):])
            except ValueError:
                self.garbage.append(f"bad header: {header[:200]!r}")
                return n
            if end + 4 + length > n:
                return pos
            self._deliver(bytes(buf[end + 4:end + 4 + length]))
            pos = end + 4 + length
        return pos

    def _deliver(self, body: bytes) -> None:
        try:
            text = body.decode("utf-8")          # strict: invalid UTF-8 on stdout is garbage
            self.frames.put(json.loads(text))
        except (UnicodeDecodeError, ValueError) as e:
            self.garbage.append(f"unparseable frame ({e}): {body[:200]!r}")

    def recv(self, timeout: float = 10.0) -> Any:
        """The next frame from the agent (pending frames first)."""
        if self._pending:
            return self._pending.pop(0)
        try:
            item = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise NoFrame(f"no frame from the agent within {timeout} s; stderr tail:\n{self.stderr_tail()}") from None
        if item is EOFError:
            self.frames.put(EOFError)     # stay at EOF
            raise NoFrame(f"agent stdout closed (exit {self.proc.poll()}); stderr tail:\n{self.stderr_tail()}")
        return item

    def recv_nothing(self, timeout: float = 0.3) -> None:
        """Asserts no frame arrives within `timeout` (used sparingly; prefer a sentinel ping)."""
        assert not self._pending, f"unexpected frames: {self._pending}"
        try:
            item = self.frames.get(timeout=timeout)
        except queue.Empty:
            return
        if item is EOFError:
            self.frames.put(EOFError)
            return
        raise AssertionError(f"unexpected frame: {item!r}")

    def next_id(self) -> int:
        return next(self._ids) + 1_000_000

    def request(self, method: str, params: Any = None, id: Any = "<auto>", timeout: float = 30.0) -> dict:
        """Sends one request and returns its response; notifications go to `self.notifications`,
        other responses are kept for later `recv()` calls."""
        rid = self.next_id() if id == "<auto>" else id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.wait_response(rid, timeout)

    def wait_response(self, rid: Any, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoFrame(f"no response with id {rid!r} within {timeout} s; got {skipped!r}")
                frame = self.recv(timeout=left) if not self._pending else self._pending.pop(0)
                if isinstance(frame, dict) and "method" in frame and "id" not in frame:
                    self.notifications.append(frame)
                elif isinstance(frame, dict) and "id" in frame and same_id(frame["id"], rid):
                    return frame
                else:
                    skipped.append(frame)
        finally:
            self._pending[:0] = skipped

    def sync(self, timeout: float = 30.0) -> list[Any]:
        """Sends a sentinel ping and returns every frame that arrived before its answer."""
        rid = f"sync-{self.next_id()}"
        self.send({"jsonrpc": "2.0", "id": rid, "method": "ping"})
        before = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(frame, dict) and frame.get("id") == rid:
                assert frame.get("result") == {}, frame
                return before
            before.append(frame)

    # -- lifecycle ---------------------------------------------------------------------------
    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            self._stderr.flush()
            return self.stderr_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.close_stdin()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        self._stderr.close()

    def assert_clean(self) -> None:
        assert not self.garbage, f"stdout carried non-protocol bytes: {self.garbage[:5]}"


def same_id(a: Any, b: Any) -> bool:
    """JSON-equal ids, including the JSON type (1 != 1.0 != "1", True is not 1)."""
    return type(a) is type(b) and a == b


# -- OpenRPC -------------------------------------------------------------------------------------
class OpenRPC:
    """protocol/openrpc.json with helpers to validate wire values against it (JSON Schema draft 7)."""

    URI = "urn:model-deployer:openrpc"

    def __init__(self, doc: dict):
        from jsonschema import Draft7Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        self.doc = doc
        self.registry = Registry().with_resource(self.URI, Resource.from_contents(doc, default_specification=DRAFT7))
        self._validator_cls = Draft7Validator
        self.methods = {m["name"]: m for m in doc["methods"]}
        self.notifications = {n["name"]: n for n in doc.get("x-notifications", [])}
        self.errors_by_code = {e["code"]: e for e in doc.get("x-errors", [])}

    def validator(self, pointer: str):
        return self._validator_cls({"$ref": f"{self.URI}#{pointer}"}, registry=self.registry)

    def _check(self, pointer: str, value: Any, what: str) -> None:
        errors = sorted(self.validator(pointer).iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors[:10]]
            raise AssertionError(f"{what} does not match {pointer}:\n  " + "\n  ".join(lines)
                                 + f"\nvalue: {json.dumps(value)[:2000]}")

    def method_index(self, method: str) -> int:
        for i, m in enumerate(self.doc["methods"]):
            if m["name"] == method:
                return i
        raise KeyError(f"method {method!r} is not in openrpc.json")

    def check_result(self, method: str, result: Any) -> None:
        self._check(f"/methods/{self.method_index(method)}/result/schema", result, f"result of {method}")

    def check_params(self, method: str, params: Any) -> None:
        self._check(f"/methods/{self.method_index(method)}/x-params-schema", params, f"params of {method}")

    def check_notification(self, frame: dict) -> None:
        names = [n["name"] for n in self.doc["x-notifications"]]
        assert frame["method"] in names, f"notification {frame['method']!r} is not in x-notifications"
        i = names.index(frame["method"])
        self._check(f"/x-notifications/{i}/params", frame.get("params", {}), f"params of {frame['method']}")

    def check_error(self, error: dict, method: str | None = None) -> None:
        """The error object matches ErrorObject, its reason belongs to its code, and (when the method is
        known) the code is one the method documents (standard codes are always allowed)."""
        self._check("/components/schemas/ErrorObject", error, "error")
        code = error["code"]
        if "data" in error:
            reasons = self.errors_by_code[code]["reasons"]
            assert error["data"]["reason"] in reasons, \
                f"reason {error['data']['reason']!r} is not documented for code {code} (x-errors: {reasons})"
        if method in self.methods and code not in (-32700, -32600, -32601, -32602, -32603):
            documented = set()
            for e in self.methods[method].get("errors", []):
                name = e["$ref"].rsplit("/", 1)[-1]
                documented.add(self.doc["components"]["errors"][name]["code"])
            assert code in documented, f"{method} answered code {code}, which its `errors` do not list ({sorted(documented)})"


@pytest.fixture(scope="session")
def openrpc_doc() -> dict:
    return json.loads((PROTOCOL / "openrpc.json").read_text())


@pytest.fixture(scope="session")
def openrpc(openrpc_doc) -> OpenRPC:
    return OpenRPC(openrpc_doc)


# -- agent fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def agent_bin() -> Path:
    p = binary_path()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"model-deployer binary not found at {p}: run `swift build -c release --static-swift-stdlib "
                    f"--product model-deployer` or set MODEL_DEPLOYER_BIN", pytrace=False)
    return p


@pytest.fixture
def agent_home(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def agent_env(agent_home) -> dict[str, str]:
    env = dict(os.environ)
    env["MODEL_DEPLOYER_HOME"] = str(agent_home)
    env["BENTOML_DO_NOT_TRACK"] = "true"
    env.pop("MODEL_DEPLOYER_DATABASE_URL", None)
    return env


@pytest.fixture
def spawn_agent(agent_bin, agent_env, tmp_path):
    agents: list[Agent] = []
    counter = itertools.count()

    def spawn(*args: str, framing: str = "ndjson", env: dict[str, str] | None = None,
              subcommand: str | None = "serve") -> Agent:
        argv = [str(agent_bin)] + ([subcommand] if subcommand else []) + list(args)
        e = dict(agent_env)
        if env:
            e.update(env)
        a = Agent(argv, framing, e, tmp_path / f"agent-{next(counter)}.stderr")
        agents.append(a)
        return a

    spawn.agents = agents  # so a fixture can stop its agents before it stops what they run
    yield spawn
    for a in agents:
        a.close()
    for a in agents:
        a.assert_clean()


@pytest.fixture(params=FRAMINGS)
def framing(request) -> str:
    return request.param


# -- transcripts ---------------------------------------------------------------------------------
PLACEHOLDER_TYPES = {
    "<any>": lambda v: True,
    "<string>": lambda v: isinstance(v, str),
    "<integer>": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "<number>": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "<boolean>": lambda v: isinstance(v, bool),
    "<object>": lambda v: isinstance(v, dict),
    "<array>": lambda v: isinstance(v, list),
    "<null-or-string>": lambda v: v is None or isinstance(v, str),
}


def _timestamp(v: Any) -> bool:
    import re
    return isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", v) is not None


def _uuid(v: Any) -> bool:
    import re
    return isinstance(v, str) and re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", v) is not None


PLACEHOLDER_TYPES["<timestamp>"] = _timestamp
PLACEHOLDER_TYPES["<uuid>"] = _uuid


class Bindings(dict):
    """Values captured by `"<$name>"` placeholders during one replay."""


def substitute(value: Any, bindings: Bindings) -> Any:
    """Replaces `"<$name>"` in a frame to send by the captured value."""
    if isinstance(value, str) and value.startswith("<$") and value.endswith(">"):
        name = value[2:-1]
        if name not in bindings:
            raise AssertionError(f"transcript uses {value} before capturing it")
        return bindings[name]
    if isinstance(value, list):
        return [substitute(v, bindings) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, bindings) for k, v in value.items()}
    return value


def match(expected: Any, actual: Any, bindings: Bindings, path: str = "$") -> list[str]:
    """Differences between an expected value (with placeholders, see protocol/examples/README.md) and an actual
    one; empty when they match. Captures `"<$name>"` bindings as it goes (only when the whole value matches)."""
    trial = Bindings(bindings)
    problems = _match(expected, actual, trial, path)
    if not problems:
        bindings.update(trial)
    return problems


def _match(expected: Any, actual: Any, b: Bindings, path: str) -> list[str]:
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        if expected.startswith("<$"):
            name = expected[2:-1]
            if name in b:
                return [] if json_equal(b[name], actual) else [f"{path}: expected <${name}> = {b[name]!r}, got {actual!r}"]
            b[name] = actual
            return []
        if expected.startswith("<<"):                         # escaped literal: "<<x>" means the string "<x>"
            return [] if actual == expected[1:] else [f"{path}: expected {expected[1:]!r}, got {actual!r}"]
        check = PLACEHOLDER_TYPES.get(expected)
        if check is not None:
            return [] if check(actual) else [f"{path}: expected {expected}, got {actual!r}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        more = expected.get("<more>") is True
        problems = []
        for k, v in expected.items():
            if k == "<more>":
                continue
            if v == "<absent>":
                if k in actual:
                    problems.append(f"{path}.{k}: expected absent, got {actual[k]!r}")
                continue
            if k not in actual:
                problems.append(f"{path}.{k}: missing")
                continue
            problems += _match(v, actual[k], b, f"{path}.{k}")
        if not more:
            extra = set(actual) - set(expected)
            if extra:
                problems.append(f"{path}: unexpected members {sorted(extra)}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected an array, got {actual!r}"]
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} elements, got {len(actual)}: {actual!r}"]
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in _match(e, a, b, f"{path}[{i}]")]
    return [] if json_equal(expected, actual) else [f"{path}: expected {expected!r}, got {actual!r}"]


def json_equal(a: Any, b: Any) -> bool:
    """Equality with JSON types: 1 and 1.0 differ, true and 1 differ."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def match_unordered(expected: list, actual: list, bindings: Bindings, path: str) -> list[str]:
    """Matches two lists as multisets (each expected element to a distinct actual one)."""
    if len(expected) != len(actual):
        return [f"{path}: expected {len(expected)} frames, got {len(actual)}: {json.dumps(actual)[:2000]}"]
    remaining = list(range(len(actual)))

    def solve(i: int, b: Bindings) -> Bindings | None:
        if i == len(expected):
            return b
        for j in list(remaining):
            trial = Bindings(b)
            e, a = expected[i], actual[j]
            if isinstance(e, list) and isinstance(a, list):
                probs = match_unordered(e, a, trial, f"{path}[{j}]")
            else:
                probs = _match(e, a, trial, f"{path}[{j}]")
            if not probs:
                remaining.remove(j)
                got = solve(i + 1, trial)
                if got is not None:
                    return got
                remaining.append(j)
        return None

    result = solve(0, Bindings(bindings))
    if result is None:
        return [f"{path}: frames do not match.\n  expected: {json.dumps(expected)[:3000]}\n  actual:   {json.dumps(actual)[:3000]}"]
    bindings.update(result)
    return []


def load_transcript(path: Path) -> list[dict]:
    steps = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        step = json.loads(line)
        assert isinstance(step, dict) and len(step) == 1, f"{path.name}:{n}: a line is one object with one key"
        (key,) = step
        assert key in ("send", "send_raw", "recv", "comment", "serve_args", "env", "requires", "signing"), f"{path.name}:{n}: unknown key {key!r}"
        step["line"] = n
        steps.append(step)
    return steps
