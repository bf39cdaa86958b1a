"""JSON-RPC 2.0 behaviour of `model-deployer serve` against the real binary, in both framings.

Covers: batches, notifications never answered, ids of every legal type echoed exactly, -32700 / -32600 /
-32601 / -32602 (id null when it cannot be recovered), the agent serving on after bad frames (truncated
JSON, invalid UTF-8, a 100 MiB frame), --max-frame-bytes, 100,000 pipelined pings, stdout carrying frames
only, exit on stdin EOF and on SIGTERM, the command line (--version, --help, unknown flags), and
cancellation of unknown ids. Timeouts below are liveness bounds (the agent must not hang), not speed targets.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from conftest import json_equal

def ok(rid):
    return {"jsonrpc": "2.0", "id": rid, "result": {}}


def ping(rid, **extra):
    return {"jsonrpc": "2.0", "id": rid, "method": "ping", **extra}


def assert_error(frame, code, rid=None, reason=None):
    assert isinstance(frame, dict), frame
    assert frame.get("jsonrpc") == "2.0", frame
    assert "result" not in frame, frame
    assert json_equal(frame.get("id", "<missing>"), rid), f"expected id {rid!r}: {frame}"
    assert frame["error"]["code"] == code, frame
    assert isinstance(frame["error"]["message"], str) and frame["error"]["message"], frame
    if reason is not None:
        assert frame["error"]["data"]["reason"] == reason, frame


# -- ids ------------------------------------------------------------------------------------------
LEGAL_IDS = ["abc", "", "ü-ñ-✓ \"quoted\" \\ back", 0, 1, -1, 42, 2**31, 2**53 + 1, 2**63 - 1, 1.5, -0.25, None]


def test_ids_of_every_legal_type_are_echoed_exactly(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    for rid in LEGAL_IDS:
        agent.send(ping(rid))
        frame = agent.recv()
        assert frame == ok(rid) and json_equal(frame["id"], rid), f"sent id {rid!r}, got {frame!r}"
    assert not agent.sync()


def test_ids_are_echoed_byte_for_byte_for_integers_and_fractions(spawn_agent):
    """`7` must come back as `7`, not `7.0`; `1.5` as a number, not a string."""
    agent = spawn_agent(framing="ndjson")
    agent.send_raw(b'{"jsonrpc":"2.0","id":7,"method":"ping"}')
    agent.send_raw(b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}')
    got = [agent.recv(), agent.recv()]
    assert {json.dumps(f["id"]) for f in got} == {"7", "1.5"}


# -- notifications and batches -------------------------------------------------------------------
def test_notifications_are_never_answered(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send({"jsonrpc": "2.0", "method": "ping"})
    agent.send({"jsonrpc": "2.0", "method": "ping", "params": {}})
    agent.send({"jsonrpc": "2.0", "method": "no.such.method"})
    agent.send({"jsonrpc": "2.0", "method": "history.query", "params": {"limit": "bad"}})
    agent.send({"jsonrpc": "2.0", "method": "rpc.discover"})
    assert agent.sync() == []


def test_batch_mixed(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send([ping(1), {"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "nope"}, 5,
                ping("x")])
    frame = agent.recv()
    assert isinstance(frame, list) and len(frame) == 4, frame
    by_id = {json.dumps(f.get("id")): f for f in frame}
    assert by_id['1'] == ok(1) and by_id['"x"'] == ok("x")
    assert_error(by_id['2'], -32601, 2)
    assert_error(by_id['null'], -32600, None)
    assert agent.sync() == []


def test_batch_empty_is_one_invalid_request(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send([])
    assert_error(agent.recv(), -32600, None)
    assert agent.sync() == []


def test_batch_of_notifications_gets_no_answer(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "nope"}])
    assert agent.sync() == []


def test_batch_of_junk_answers_each_element(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send([1, 2, 3])
    frame = agent.recv()
    assert isinstance(frame, list) and len(frame) == 3
    for f in frame:
        assert_error(f, -32600, None)


def test_large_batch(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send([ping(i) for i in range(5000)])
    frame = agent.recv(timeout=60)
    assert sorted(f["id"] for f in frame) == list(range(5000))
    assert all(f["result"] == {} for f in frame)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b'{"jsonrpc":"2.0","id":1,"method":"pi',             # truncated
    b'{"jsonrpc":"2.0","id":1,"method":"ping"',          # truncated object
    b'{"jsonrpc":"2.0","id":1,"method":"ping"}}',        # trailing garbage
    b'{"jsonrpc":"2.0","id":1,"method":"ping",}',        # trailing comma
    b"{'jsonrpc':'2.0','id':1,'method':'ping'}",         # not JSON quotes
    b'{"jsonrpc":"2.0","id":01,"method":"ping"}',        # leading zero
    b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping\x01"}',     # raw control character in a string
    b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}',      # lone surrogate escape
    b'["unterminated',
], ids=["truncated-string", "truncated-object", "trailing", "trailing-comma", "single-quotes", "leading-zero",
        "nan", "control-char", "lone-surrogate", "unterminated-array"])
def test_parse_errors_answer_id_null_and_keep_serving(spawn_agent, framing, body):
    agent = spawn_agent(framing=framing)
    agent.send(ping(0))
    assert agent.recv() == ok(0)
    agent.send_raw(body)
    frame = agent.recv()
    if body == b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}':
        # A lone surrogate escape is accepted by some JSON parsers; then the method is unknown.
        assert frame["error"]["code"] in (-32700, -32601), frame
    else:
        assert_error(frame, -32700, None, "parse_error")
    agent.send(ping(2))
    assert agent.recv() == ok(2)


@pytest.mark.parametrize("payload", [
    b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"\xc3\x28"}}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"\xed\xa0\x80"}}',   # encoded surrogate
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"\xc0\xaf"}}',       # overlong
], ids=["ff-fe", "bad-continuation", "encoded-surrogate", "overlong"])
def test_invalid_utf8_is_a_parse_error(spawn_agent, framing, payload):
    agent = spawn_agent(framing=framing)
    agent.send(ping(0))
    assert agent.recv() == ok(0)
    agent.send_raw(payload)
    assert_error(agent.recv(), -32700, None, "parse_error")
    agent.send(ping(2))
    assert agent.recv() == ok(2)
    # stdout stayed valid UTF-8 and parseable (checked by the fixture at teardown, too).
    agent.assert_clean()


@pytest.mark.parametrize("frame,rid", [
    ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, 1),
    ({"id": 2, "method": "ping"}, 2),
    ({"jsonrpc": 2.0, "id": 3, "method": "ping"}, 3),
    ({"jsonrpc": "2.0", "id": 4, "method": 4}, 4),
    ({"jsonrpc": "2.0", "id": 5, "method": None}, 5),
    ({"jsonrpc": "2.0", "id": 6}, 6),
    ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, None),
    ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, None),
    ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
    (42, None),
    ("ping", None),
    (None, None),
    (True, None),
], ids=["jsonrpc-1.0", "no-jsonrpc", "jsonrpc-number", "method-number", "method-null", "no-method",
        "id-object", "id-array", "id-bool", "number", "string", "null", "true"])
def test_invalid_requests(spawn_agent, framing, frame, rid):
    agent = spawn_agent(framing=framing)
    agent.send(ping(0))          # the first frame fixes the framing: NDJSON must start with { or [
    assert agent.recv() == ok(0)
    agent.send(frame)
    assert_error(agent.recv(), -32600, rid, "invalid_request")
    agent.send(ping(9))
    assert agent.recv() == ok(9)


@pytest.mark.parametrize("params", [5, "x", True])
def test_params_must_be_structured(spawn_agent, framing, params):
    """JSON-RPC: params, when present, is an object or an array. Either -32600 or -32602 is a fair answer."""
    agent = spawn_agent(framing=framing)
    agent.send(ping(1, params=params))
    frame = agent.recv()
    assert frame["error"]["code"] in (-32600, -32602) and frame["id"] == 1, frame


def test_method_not_found(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    for rid, method in [(1, "nope"), (2, "deploy.nope"), (3, "rpc.nope"), (4, ""), (5, "PING")]:
        agent.send({"jsonrpc": "2.0", "id": rid, "method": method})
        frame = agent.recv()
        assert_error(frame, -32601, rid, "method_not_found")


def test_invalid_params_name_the_field(spawn_agent, framing, openrpc):
    agent = spawn_agent(framing=framing)
    cases = [
        ("history.query", {"limit": "ten"}, "limit"),
        ("history.query", {"nope": 1}, "nope"),
        ("deploy.status", {}, "deployment_id"),
        ("deploy.status", {"deployment_id": 5}, "deployment_id"),
        ("deploy.plan", {"model_name": "../x", "model_version": "1", "environment": "dev", "requested_by": "a"}, "model_name"),
        ("initialize", {"protocolVersion": 5, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}, "protocolVersion"),
    ]
    for n, (method, params, field) in enumerate(cases):
        frame = agent.request(method, params, id=n)
        assert_error(frame, -32602, n, "invalid_params")
        assert frame["error"]["data"].get("field") == field, frame
        openrpc.check_error(frame["error"], method)


# -- frames: size limits and sync -----------------------------------------------------------------
def _writer(agent, data: bytes):
    t = threading.Thread(target=lambda: agent.write(data), daemon=True)
    t.start()
    return t


def test_100_mib_frame_is_refused_and_the_stream_stays_in_sync(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send(ping(0))
    assert agent.recv() == ok(0)
    pad = b"x" * (100 * 1024 * 1024)
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + pad + b'"}}'
    t = _writer(agent, agent.frame_bytes(body) + agent.frame_bytes(json.dumps(ping(2)).encode()))
    first = agent.recv(timeout=120)
    assert_error(first, -32600, None, "frame_too_large")
    assert agent.recv(timeout=120) == ok(2)
    t.join(timeout=120)
    assert agent.sync() == []


def test_max_frame_bytes_flag(spawn_agent, framing):
    agent = spawn_agent("--max-frame-bytes", "2048", framing=framing)
    small = ping(1, params={"pad": "y" * 1500})
    big = ping(2, params={"pad": "y" * 5000})
    agent.send(small)
    assert agent.recv() == ok(1)
    agent.send(big)
    assert_error(agent.recv(), -32600, None, "frame_too_large")
    agent.send(small | {"id": 3})
    assert agent.recv() == ok(3)


def test_frame_just_under_the_default_limit_is_served(spawn_agent, framing):
    """A 60 MiB frame is under the 64 MiB default: answered normally."""
    agent = spawn_agent(framing=framing)
    body = json.dumps(ping(1, params={"pad": "z" * (60 * 1024 * 1024)})).encode()
    t = _writer(agent, agent.frame_bytes(body))
    assert agent.recv(timeout=120) == ok(1)
    t.join(timeout=120)


def test_frames_split_across_writes_and_coalesced(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    data = b"".join(agent.frame_bytes(json.dumps(ping(i)).encode()) for i in range(50))
    for i in range(0, len(data), 7):                 # 7-byte dribbles, frames split anywhere
        agent.write(data[i:i + 7])
    got = sorted(agent.recv()["id"] for _ in range(50))
    assert got == list(range(50))


def test_ndjson_tolerates_blank_lines_and_crlf(spawn_agent):
    agent = spawn_agent(framing="ndjson")
    agent.write(b'\n  \n{"jsonrpc":"2.0","id":1,"method":"ping"}\r\n\n{"jsonrpc":"2.0","id":2,"method":"ping"}\n')
    assert sorted(agent.recv()["id"] for _ in range(2)) == [1, 2]
    assert agent.sync() == []


def test_content_length_accepts_content_type_header(spawn_agent):
    agent = spawn_agent(framing="lsp")
    body = json.dumps(ping(1)).encode()
    agent.write(b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" % len(body) + body)
    assert agent.recv() == ok(1)
    agent.write(b"content-length: %d\r\n\r\n" % len(body) + body)   # header names are case-insensitive
    assert agent.recv() == ok(1)


def test_content_length_reply_header_is_exact(spawn_agent, agent_bin, agent_env):
    """Replies use exactly `Content-Length: N\\r\\n\\r\\n` (Python LSP clients match that)."""
    body = json.dumps(ping(1)).encode()
    p = subprocess.run([str(agent_bin), "serve"], input=b"Content-Length: %d\r\n\r\n" % len(body) + body,
                       capture_output=True, env=agent_env, timeout=30)
    reply = json.dumps(ok(1), separators=(",", ":")).encode()
    assert p.stdout.startswith(b"Content-Length: "), p.stdout
    header, _, rest = p.stdout.partition(b"\r\n\r\n")
    assert header == b"Content-Length: %d" % len(rest)
    assert json.loads(rest) == json.loads(reply)
    assert p.returncode == 0


def test_answers_use_the_detected_framing_with_leading_whitespace(spawn_agent, agent_bin, agent_env):
    p = subprocess.run([str(agent_bin), "serve"], input=b"\n \t" + json.dumps(ping(1)).encode() + b"\n",
                       capture_output=True, env=agent_env, timeout=30)
    assert p.stdout.endswith(b"\n") and json.loads(p.stdout) == ok(1) and p.returncode == 0


# -- flooding -------------------------------------------------------------------------------------
def test_100000_pipelined_pings_are_all_answered(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    n = 100_000
    chunk = b"".join(agent.frame_bytes(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % i) for i in range(n))
    t = _writer(agent, chunk)
    seen = bytearray(n)
    for _ in range(n):
        f = agent.recv(timeout=60)
        assert f.get("result") == {}, f
        assert not seen[f["id"]], f"id {f['id']} answered twice"
        seen[f["id"]] = 1
    t.join(timeout=60)
    assert all(seen)
    assert agent.sync() == []


def test_mixed_flood_of_good_and_bad_frames(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    frames = []
    expect = {}
    for i in range(3000):
        kind = i % 5
        if kind == 0:
            frames.append(agent.frame_bytes(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % i)); expect[i] = "ok"
        elif kind == 1:
            frames.append(agent.frame_bytes(b'{"jsonrpc":"2.0","id":%d,"method":"nope"}' % i)); expect[i] = -32601
        elif kind == 2:
            frames.append(agent.frame_bytes(b'{"jsonrpc":"2.0","method":"ping"}'))
        elif kind == 3:
            frames.append(agent.frame_bytes(b'{"jsonrpc":"2.0","id":%d,"meth' % i)); expect[None] = expect.get(None, 0)
        else:
            frames.append(agent.frame_bytes(b'{"jsonrpc":"1.0","id":%d,"method":"ping"}' % i)); expect[i] = -32600
    t = _writer(agent, b"".join(frames))
    n_parse = sum(1 for i in range(3000) if i % 5 == 3)
    total = sum(1 for k in expect if k is not None) + n_parse
    parse_errors = 0
    for _ in range(total):
        f = agent.recv(timeout=60)
        if f["id"] is None:
            assert f["error"]["code"] == -32700
            parse_errors += 1
        elif expect[f["id"]] == "ok":
            assert f == ok(f["id"])
        else:
            assert f["error"]["code"] == expect[f["id"]], f
    t.join(timeout=60)
    assert parse_errors == n_parse
    assert agent.sync() == []


# -- cancellation ---------------------------------------------------------------------------------
def test_cancelling_unknown_ids_is_ignored(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 12345}})
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "nope"}})
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {}})
    agent.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}})
    agent.send(ping(1))
    assert agent.recv() == ok(1)
    # Cancelling a request that already finished is ignored too.
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
    assert agent.sync() == []


# -- process lifecycle ----------------------------------------------------------------------------
def test_exit_0_on_stdin_eof(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send(ping(1))
    assert agent.recv() == ok(1)
    t0 = time.monotonic()
    agent.close_stdin()
    assert agent.wait(timeout=10) == 0
    print(f"exit after EOF took {(time.monotonic() - t0) * 1000:.1f} ms")


def test_requests_written_before_eof_are_answered(agent_bin, agent_env, framing):
    frames = [ping(i) for i in range(100)] + [{"jsonrpc": "2.0", "id": "h", "method": "history.query", "params": {"limit": "x"}}]
    data = b""
    for f in frames:
        body = json.dumps(f).encode()
        data += body + b"\n" if framing == "ndjson" else b"Content-Length: %d\r\n\r\n" % len(body) + body
    p = subprocess.run([str(agent_bin), "serve"], input=data, capture_output=True, env=agent_env, timeout=30)
    assert p.returncode == 0
    if framing == "ndjson":
        out = [json.loads(line) for line in p.stdout.splitlines()]
    else:
        out, rest = [], p.stdout
        while rest:
            header, _, rest = rest.partition(b"\r\n\r\n")
            n = int(header.split(b": ")[1])
            out.append(json.loads(rest[:n]))
            rest = rest[n:]
    assert len(out) == 101
    assert sorted(f["id"] for f in out if isinstance(f["id"], int)) == list(range(100))


def test_eof_in_the_middle_of_a_frame_exits_cleanly(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send(ping(1))
    assert agent.recv() == ok(1)
    if framing == "ndjson":
        agent.write(b'{"jsonrpc":"2.0","id":2,"meth')
    else:
        agent.write(b'Content-Length: 100\r\n\r\n{"jsonrpc"')
    agent.close_stdin()
    assert agent.wait(timeout=10) == 0


def test_sigterm_exits_cleanly(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send(ping(1))
    assert agent.recv() == ok(1)
    agent.proc.send_signal(signal.SIGTERM)
    rc = agent.wait(timeout=15)
    assert rc in (0, 128 + signal.SIGTERM), f"SIGTERM should end the agent cleanly, got exit {rc}"


def test_stdout_carries_frames_only_and_logs_go_to_stderr(agent_bin, agent_env):
    data = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\nnot json\n{"jsonrpc":"2.0","id":2,"method":"nope"}\n'
    p = subprocess.run([str(agent_bin), "serve", "--log-level", "debug"], input=data, capture_output=True,
                       env=agent_env, timeout=30)
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert json.loads(line)["jsonrpc"] == "2.0"
    for line in p.stderr.splitlines():
        if line.strip():
            json.loads(line)             # logs are JSON lines


# -- the command line -----------------------------------------------------------------------------
def run_cli(agent_bin, *args, env=None):
    return subprocess.run([str(agent_bin), *args], capture_output=True, env=env, timeout=30, stdin=subprocess.DEVNULL)


def test_version(agent_bin, agent_env):
    p = run_cli(agent_bin, "--version", env=agent_env)
    assert p.returncode == 0
    assert p.stdout.decode().startswith("model-deployer ")
    assert any(c.isdigit() for c in p.stdout.decode())


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"], ["help", "serve"], ["serve", "--help"]])
def test_help(agent_bin, agent_env, args):
    p = run_cli(agent_bin, *args, env=agent_env)
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "serve" in text and "Usage" in text


@pytest.mark.parametrize("args", [["--bogus"], ["serve", "--bogus"], ["serve", "--max-frame-bytes", "lots"],
                                  ["serve", "--log-level", "loud"], ["frobnicate"], ["serve", "--home"]])
def test_unknown_flags_exit_2_with_a_message(agent_bin, agent_env, args):
    p = run_cli(agent_bin, *args, env=agent_env)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == b""
    assert p.stderr.strip(), "a message on stderr"
    bad = args[-1] if args[-1].startswith("-") or args[-1] == "frobnicate" else args[-2]
    assert bad.encode() in p.stderr, p.stderr


# -- hardening: exact ids, header resync, batch limit, EOF drain, signals ------------------------
def frame_raw(body: bytes, framing: str) -> bytes:
    return body + b"\n" if framing == "ndjson" else b"Content-Length: %d\r\n\r\n" % len(body) + body


def split_raw(out: bytes, framing: str) -> list[bytes]:
    """The bodies of the agent's frames, as bytes (no JSON round trip that would change numbers)."""
    if framing == "ndjson":
        return [line for line in out.split(b"\n") if line]
    bodies = []
    while out:
        header, sep, out = out.partition(b"\r\n\r\n")
        assert sep and header.startswith(b"Content-Length: "), header[:100]
        n = int(header[len(b"Content-Length: "):])
        bodies.append(out[:n])
        out = out[n:]
    return bodies


def run_raw(agent_bin, agent_env, data: bytes, framing: str, timeout: float = 60) -> list[bytes]:
    p = subprocess.run([str(agent_bin), "serve"], input=data, capture_output=True, env=agent_env, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return split_raw(p.stdout, framing)


ODD_IDS = ["18446744073709551616", "123456789012345678901234567890", "-123456789012345678901234567890", "1e400",
           "-1e400", "1E-400", "-0", "-0.0", "1.50", "1E2", "0.1", "9223372036854775808", "-9223372036854775809"]


def test_ids_are_echoed_as_their_exact_text(agent_bin, agent_env, framing):
    data = b""
    for rid in ODD_IDS:
        data += frame_raw(b'{"jsonrpc":"2.0","id":%s,"method":"ping"}' % rid.encode(), framing)
        data += frame_raw(b'{"jsonrpc":"2.0","id":%s,"method":"no.such"}' % rid.encode(), framing)
    batch = b",".join(b'{"jsonrpc":"2.0","id":%s,"method":"ping"}' % rid.encode() for rid in ODD_IDS)
    data += frame_raw(b"[" + batch + b"]", framing)
    bodies = run_raw(agent_bin, agent_env, data, framing)
    assert len(bodies) == 2 * len(ODD_IDS) + 1
    for k, rid in enumerate(ODD_IDS):
        assert bodies[2 * k] == b'{"jsonrpc":"2.0","id":%s,"result":{}}' % rid.encode()
        assert bodies[2 * k + 1].startswith(b'{"jsonrpc":"2.0","id":%s,"error":{"code":-32601' % rid.encode())
    assert bodies[-1] == b"[" + b",".join(b'{"jsonrpc":"2.0","id":%s,"result":{}}' % rid.encode() for rid in ODD_IDS) + b"]"


@pytest.mark.parametrize("bad", [
    b"Content-Length: abc\r\n\r\n",
    b"Content-Length: -5\r\n\r\n",
    b"Content-Length: \r\n\r\n",
    b"Content-Length: 99999999999999999999999999\r\n\r\n",
    b"Content-Type: application/json\r\n\r\n",
    b"Content-Length: 2\r\nContent-Length: 70\r\n\r\n",
    b"X: 1\r\n\r\n",
], ids=["non-numeric", "negative", "empty", "overflow", "no-length", "conflicting", "other-header"])
def test_a_bad_content_length_header_costs_only_its_own_frame(agent_bin, agent_env, bad):
    data = b""
    for i in range(5):
        data += frame_raw(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % (10 + i), "content-length")
        data += bad + b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % (100 + i)
    data += frame_raw(b'{"jsonrpc":"2.0","id":"last","method":"ping"}', "content-length")
    answers = [json.loads(b) for b in run_raw(agent_bin, agent_env, data, "content-length")]
    assert [a["id"] for a in answers if "result" in a] == [10, 11, 12, 13, 14, "last"], answers
    errors = [a for a in answers if "error" in a]
    assert len(errors) == 5
    for e in errors:
        assert_error(e, -32700, None, "parse_error")


def test_junk_between_content_length_frames_is_skipped(agent_bin, agent_env):
    data = (frame_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping"}', "content-length")
            + b'{"jsonrpc":"2.0","id":99,"method":"ping"}\n'        # an NDJSON line in a Content-Length stream
            + frame_raw(b'{"jsonrpc":"2.0","id":2,"method":"ping"}', "content-length")
            + b"garbage without any header end"
            + frame_raw(b'{"jsonrpc":"2.0","id":3,"method":"ping"}', "content-length"))
    answers = [json.loads(b) for b in run_raw(agent_bin, agent_env, data, "content-length")]
    assert [a["id"] for a in answers if "result" in a] == [1, 2, 3], answers
    assert all(a["error"]["code"] == -32700 for a in answers if "error" in a)


def test_eof_inside_a_frame_is_reported_in_the_streams_framing(agent_bin, agent_env):
    """Nothing was answered before: the error alone must still use Content-Length framing."""
    bodies = run_raw(agent_bin, agent_env, b'Content-Length: 100\r\n\r\n{"jsonrpc":"2.0","id":1', "content-length")
    assert len(bodies) == 1
    assert_error(json.loads(bodies[0]), -32700, None, "parse_error")


def test_batch_limit(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send([ping(i) for i in range(10_000)])
    frame = agent.recv(timeout=60)
    assert [f["id"] for f in frame] == list(range(10_000))
    agent.send([ping(i) for i in range(10_001)])
    refused = agent.recv(timeout=60)
    assert_error(refused, -32600, None, "batch_too_large")
    assert refused["error"]["data"]["max_batch_size"] == 10_000
    agent.send(ping("after"))
    assert agent.recv() == ok("after")


def test_a_batch_refused_as_too_large_runs_nothing(spawn_agent, agent_home):
    """A refused batch runs none of its elements: no ledger is even opened by its history queries."""
    agent = spawn_agent()
    agent.send([{"jsonrpc": "2.0", "id": i, "method": "history.query"} for i in range(10_001)])
    assert_error(agent.recv(timeout=60), -32600, None, "batch_too_large")
    assert agent.sync() == []
    assert not any(agent_home.iterdir()), list(agent_home.iterdir())


def test_a_batch_in_flight_at_eof_is_answered(agent_bin, agent_env, framing):
    """A batch of task-run methods written just before EOF is answered (it used to be dropped more often than not)."""
    body = b'[{"jsonrpc":"2.0","id":"h","method":"history.query"},{"jsonrpc":"2.0","id":"p","method":"ping"}]'
    for _ in range(15):
        bodies = run_raw(agent_bin, agent_env, frame_raw(body, framing), framing)
        assert len(bodies) == 1, bodies
        answers = {a["id"]: a for a in json.loads(bodies[0])}
        assert set(answers) == {"h", "p"}
        assert answers["p"] == ok("p")
        # Shutdown cancels in-flight work: the query either finished or says it was cancelled.
        assert "result" in answers["h"] or answers["h"]["error"]["code"] == -32800, answers["h"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM], ids=["SIGINT", "SIGHUP", "SIGTERM"])
def test_termination_signals_shut_down_cleanly(spawn_agent, framing, sig):
    agent = spawn_agent(framing=framing)
    agent.send(ping(1))
    assert agent.recv() == ok(1)
    agent.proc.send_signal(sig)
    assert agent.wait(timeout=15) == 0, f"{sig.name} must end the agent with its clean shutdown (exit 0)"
    assert f"{sig.name}: finishing in-flight work" in agent.stderr_tail()


# -- large frames do not hold up the small ones ------------------------------------------------------
def _big_query(rid: str) -> dict:
    # About 16 MB of params (a real plan with large smoke-test inputs looks like this to the reader).
    return {"jsonrpc": "2.0", "id": rid, "method": "history.query",
            "params": {"model_name": "iris", "padding": [[5.1, 3.5, 1.4, 0.2]] * 700_000}}


def test_a_ping_behind_a_large_frame_is_answered_first(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send(_big_query("big"))
    agent.send(ping("small"))
    first, second = agent.recv(timeout=60), agent.recv(timeout=60)
    # The large frame is parsed on a thread of its own; the reader answers the ping meanwhile.
    assert first == ok("small"), first
    assert second["id"] == "big" and second["error"]["code"] == -32602 and second["error"]["data"]["field"] == "padding"


def test_a_cancel_that_overtakes_a_large_request_still_reaches_it(spawn_agent, framing):
    agent = spawn_agent(framing=framing)
    agent.send(_big_query("big"))
    agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "big"}})
    answer = agent.recv(timeout=60)
    assert answer["id"] == "big" and answer["error"]["code"] == -32800, answer
    agent.send(ping(2))
    assert agent.recv() == ok(2)
