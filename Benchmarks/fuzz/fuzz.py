#!/usr/bin/env python3
"""Seeded stream fuzzer for `model-deployer serve`: mutated frames in both framings against the real binary.

Each run starts one agent per framing (NDJSON and Content-Length) against a fresh temporary home and writes
a stream that mixes well-formed *probe* requests (unique ids; every one must be answered) with mutated frames:
truncation, byte flips and insertions, invalid UTF-8, random Unicode (lone surrogates, NUL, emoji), huge and
odd numbers (`1e400`, `-0`, 30-digit integers, `NaN`), deep nesting (within and beyond the parser's limit),
oversized frames, bad and oversized Content-Length headers (non-numeric, negative, overflowing, missing,
conflicting, junk before the header, lengths that lie in either direction), frames in the other framing,
batches (valid, mutated, empty, over the batch limit), notifications, `$/cancelRequest`, responses.

Probes are methods that are cheap and answer whatever happens: `ping`, unknown methods, `history.query` (its
answer may be an error or -32800 after a `$/cancelRequest`; any answer counts), some with ids only an exact
echo gets right (integers beyond 64 bits). A mutation that can only cost frames after it (a Content-Length
that claims more bytes than the body) is followed by a sacrificial notification short enough that only it is
lost. Then a final `ping`, EOF, and the checks: every probe answered, every output frame valid JSON, the
final ping answered, exit status 0.

Usage: .venv/bin/python Benchmarks/fuzz/fuzz.py [--frames 10000000] [--seed N] [--agent-bin PATH]
Prints the seed, frames, frames/s, answers and the agent's peak RSS (VmHWM). Exit status 1 on a failed check.
The test suite runs the same engine on 100,000 frames (Tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_FRAME = 1 << 20          # --max-frame-bytes for the fuzzed agent: oversized frames stay cheap to send
MAX_BATCH = 10_000           # the agent's batch limit (README)
ODD_NUMBERS = ["1e400", "-1e400", "1E-400", "-0", "-0.0", "18446744073709551616", "123456789012345678901234567890",
               "1.50", "9223372036854775808", "-9223372036854775809", "0.1e1", "5e-324"]
BAD_NUMBERS = ["NaN", "Infinity", "-", "01", "1.", ".5", "1e", "+1", "0x10", "1_000", "--1"]
METHODS = ["ping", "ping", "ping", "ping", "no.such.method", "history.query", "rpc.nope", "ping"]


def frame(body: bytes, framing: str) -> bytes:
    return body + b"\n" if framing == "ndjson" else b"Content-Length: %d\r\n\r\n" % len(body) + body


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass
class Plan:
    """What the stream promised: probe ids that must be answered (as JSON texts keyed to a slot)."""
    probes: dict = field(default_factory=dict)      # id (as parsed by Python) -> probe number
    frames: int = 0


class Generator:
    def __init__(self, rng: random.Random, framing: str, plan: Plan):
        self.rng, self.framing, self.plan = rng, framing, plan
        self.other = "lsp" if framing == "ndjson" else "ndjson"
        self.serial = 0

    # -- requests -------------------------------------------------------------------------------
    def random_text(self, n: int) -> str:
        r = self.rng
        pools = ["abc xyz", "üñé✓中文", "\U0001F600\U0001F680", "\x00\x01\x1f\"\\/", "\ud800\udfff"]
        pool = r.choice(pools)
        return "".join(r.choice(pool) for _ in range(n))

    def params(self):
        r = self.rng
        k = r.random()
        if k < 0.5:
            return None
        if k < 0.8:
            return {"s": self.random_text(r.randint(0, 40)).replace("\ud800", "x").replace("\udfff", "y"),
                    "n": r.choice([0, -1, 2**53, 2**70, 1.5, -0.25])}
        if k < 0.95:
            d = r.randint(1, 300)
            return {"deep": json.loads("[" * d + "]" * d)}
        return [1, "two", None, True, {"three": 3}]

    def probe(self) -> dict:
        """A valid request whose answer is required."""
        self.serial += 1
        n = len(self.plan.probes)
        rid = f"p{n}" if self.rng.random() < 0.8 else 10**25 + n       # the latter needs an exact echo
        self.plan.probes[rid] = n
        req = {"jsonrpc": "2.0", "id": rid, "method": self.rng.choice(METHODS)}
        p = self.params()
        if req["method"] == "history.query":
            p = {"limit": self.rng.choice([1, 5, "bad", -1])}
        if p is not None:
            req["params"] = p
        return req

    def other_request(self) -> dict:
        """A request whose answer does not matter (its frame is about to be mutated, or it is noise)."""
        self.serial += 1
        req = {"jsonrpc": "2.0", "id": f"m{self.serial}", "method": self.rng.choice(METHODS)}
        p = self.params()
        if p is not None and req["method"] != "history.query":
            req["params"] = p
        return req

    # -- mutations ------------------------------------------------------------------------------
    def mutate_body(self, body: bytes) -> bytes:
        r = self.rng
        k = r.randrange(9)
        b = bytearray(body)
        if k == 0 and b:                                   # truncation
            return bytes(b[: r.randrange(len(b))])
        if k == 1 and b:                                   # byte flips
            for _ in range(r.randint(1, 5)):
                b[r.randrange(len(b))] = r.randrange(256)
            return bytes(b)
        if k == 2:                                         # insertions
            for _ in range(r.randint(1, 5)):
                b[r.randint(0, len(b)):0] = bytes([r.randrange(256)])
            return bytes(b)
        if k == 3:                                         # odd or invalid numbers in the id slot
            num = r.choice(ODD_NUMBERS + BAD_NUMBERS)
            return b'{"jsonrpc":"2.0","id":%s,"method":"ping"}' % num.encode()
        if k == 4:                                         # deep nesting around or beyond the limit
            d = r.choice([511, 512, 513, 1000, 20000])
            return b'{"jsonrpc":"2.0","id":"m","method":"ping","params":' + b"[" * d + b"]" * d + b"}"
        if k == 5:                                         # invalid UTF-8 / encoded surrogates / overlong
            bad = r.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"])
            return body.replace(b'"2.0"', b'"2.0' + bad + b'"', 1)
        if k == 6:                                         # lone surrogate escapes, raw control characters
            return body.replace(b'"method"', r.choice([b'"\\ud800method"', b'"meth\x01od"', b'"\\udc00"']), 1)
        if k == 7:                                         # structure damage
            return r.choice([b"{", b"[", b"]", b"}", b"null", b"42", b'"str"', b"{}", b"[]", b"[[]]", b"[1,2,3]",
                             b'{"jsonrpc":"2.0","id":5,"result":{}}', b'{"jsonrpc":"2.0","id":6,"error":{"code":1}}',
                             b'{"jsonrpc":"1.0","id":"m","method":"ping"}', b'{"id":{"a":1},"jsonrpc":"2.0","method":"x"}',
                             body + b"}", body + b",", b"\xef\xbb\xbf" + body])
        return dumps(json.loads(body.decode("utf-8", "surrogatepass"))) * r.randint(2, 3)  # two texts in one frame

    # -- frames ---------------------------------------------------------------------------------
    def sacrificial(self) -> bytes:
        return frame(b'{"jsonrpc":"2.0","method":"ping","params":{"pad":"%s"}}' % (b"x" * self.rng.randint(20, 60)),
                     self.framing)

    def next_chunk(self) -> bytes:
        """One or a few frames (counted in plan.frames)."""
        r = self.rng
        x = r.random()
        f = self.framing
        self.plan.frames += 1
        if x < 0.40:
            return frame(dumps(self.probe()), f)
        if x < 0.46:                                       # a batch of probes, maybe with junk among them
            items = [self.probe() for _ in range(r.randint(1, 20))]
            if r.random() < 0.3:
                items.insert(r.randrange(len(items) + 1), r.choice([1, "x", None, {}, {"jsonrpc": "2.0"},
                                                                     {"jsonrpc": "2.0", "method": "ping"}]))
            return frame(dumps(items), f)
        if x < 0.50:                                       # notifications and cancellations
            return frame(dumps(r.choice([
                {"jsonrpc": "2.0", "method": "ping"},
                {"jsonrpc": "2.0", "method": "history.query", "params": {"limit": 1}},
                {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": f"p{r.randrange(len(self.plan.probes) + 1)}"}},
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "m1"}},  # never a probe: MCP cancels go unanswered
                {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1e308}},
            ])), f)
        if x < 0.85:                                       # a mutated body, correctly framed
            return frame(self.mutate_body(dumps(self.other_request())), f)
        if x < 0.88:                                       # a mutated batch
            body = dumps([self.other_request() for _ in range(r.randint(0, 8))])
            return frame(self.mutate_body(body) if r.random() < 0.7 else body, f)
        if x < 0.92:                                       # a frame in the other framing
            return frame(dumps(self.other_request()), self.other) + (b"\n" if f == "ndjson" else b"")
        if x < 0.93:                                       # blank lines, CRLF, stray white space
            return r.choice([b"\n", b"\r\n", b"  \n", b"\t\r\n"]) if f == "ndjson" else r.choice([b"\r\n", b" ", b"\n\n"])
        if x < 0.9302:                                     # oversized frame
            return frame(b'{"jsonrpc":"2.0","id":"m","method":"ping","params":{"pad":"' + b"y" * (MAX_FRAME + 10) + b'"}}', f)
        if x < 0.9303:                                     # a batch over the limit
            return frame(b"[" + b",".join([b'{"jsonrpc":"2.0","method":"ping"}'] * (MAX_BATCH + 1)) + b"]", f)
        if f == "ndjson":
            return frame(self.mutate_body(dumps(self.other_request())), f)
        return self.bad_header()

    def bad_header(self) -> bytes:
        r = self.rng
        body = dumps(self.other_request())
        k = r.randrange(9)
        if k == 0:
            return b"Content-Length: %s\r\n\r\n" % r.choice([b"abc", b"-5", b"", b"1.5", b"0x10", b"12 34",
                                                            b"99999999999999999999999999", b"\xff"]) + body
        if k == 1:
            return b"Content-Type: application/json\r\n\r\n" + body
        if k == 2:
            return b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(body), len(body) + 3) + body
        if k == 3:                                         # junk before a header
            return self.random_text(r.randint(1, 30)).encode("utf-8", "surrogatepass").replace(b"\r\n\r\n", b"") + frame(body, "lsp")
        if k == 4:                                         # a long header block
            return b"Content-Length: %d\r\nX-Pad: %s\r\n\r\n" % (len(body), b"z" * r.choice([100, 9000])) + body
        if k == 5:                                         # a length shorter than the body
            return b"Content-Length: %d\r\n\r\n" % r.randrange(len(body)) + body
        if k == 6:                                         # a length longer than the body: costs the next frame
            filler = self.sacrificial()
            return b"Content-Length: %d\r\n\r\n" % (len(body) + r.randint(1, len(filler) - 1)) + body + filler
        if k == 7:                                         # header without a body separator, then a real frame
            return b"Content-Length: 12\r\n" + frame(body, "lsp")
        return b"content-length:%d\r\n\r\n" % len(body) + body   # lower case, no space: valid


def run_one(agent_bin: str, framing: str, frames: int, seed: int, env: dict) -> dict:
    rng = random.Random(f"{seed}-{framing}")
    plan = Plan()
    gen = Generator(rng, framing, plan)
    with tempfile.TemporaryDirectory(prefix="md-fuzz-") as home:
        e = dict(env)
        e["MODEL_DEPLOYER_HOME"] = home
        e["MODEL_DEPLOYER_LOG_LEVEL"] = "error"
        e.pop("MODEL_DEPLOYER_DATABASE_URL", None)
        proc = subprocess.Popen([agent_bin, "serve", "--max-frame-bytes", str(MAX_FRAME)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=e, bufsize=0)
        answered: set = set()
        bad_output: list[str] = []
        answers = [0]
        final = threading.Event()

        def note(obj) -> None:
            if isinstance(obj, list):
                for o in obj:
                    note(o)
                return
            if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or ("result" in obj) == ("error" in obj):
                bad_output.append(repr(obj)[:200])
                return
            answers[0] += 1
            rid = obj.get("id")
            if rid == "final":
                final.set()
            elif isinstance(rid, (str, int)) and not isinstance(rid, bool):
                answered.add(rid)

        def reader() -> None:
            buf = bytearray()
            out = proc.stdout
            while True:
                chunk = os.read(out.fileno(), 1 << 20)
                if not chunk:
                    break
                buf += chunk
                pos = 0
                while True:
                    if framing == "ndjson":
                        nl = buf.find(b"\n", pos)
                        if nl < 0:
                            break
                        body, pos = bytes(buf[pos:nl]), nl + 1
                    else:
                        end = buf.find(b"\r\n\r\n", pos)
                        if end < 0:
                            break
                        n = int(buf[pos + len(b"Content-Length: "):end])
                        if end + 4 + n > len(buf):
                            break
                        body, pos = bytes(buf[end + 4:end + 4 + n]), end + 4 + n
                    try:
                        note(json.loads(body.decode("utf-8")))
                    except ValueError as err:
                        bad_output.append(f"{err}: {body[:200]!r}")
                del buf[:pos]

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        first = frame(b'{"jsonrpc":"2.0","id":"first","method":"ping"}', framing)   # fixes the framing
        t0 = time.monotonic()
        out = bytearray(first)
        written = 0
        try:
            for _ in range(frames):
                out += gen.next_chunk()
                if len(out) >= 1 << 16:
                    proc.stdin.write(out)
                    written += len(out)
                    out.clear()
            # A lying length at the very end would swallow the final ping: a sacrificial frame first.
            out += gen.sacrificial() + frame(b'{"jsonrpc":"2.0","id":"final","method":"ping"}', framing)
            proc.stdin.write(out)
            written += len(out)
        except BrokenPipeError:
            pass
        got_final = final.wait(timeout=120)
        rss_peak_kib = -1
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss_peak_kib = int(line.split()[1])
        except OSError:
            pass
        elapsed = time.monotonic() - t0
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = proc.wait(timeout=60)
        t.join(timeout=60)
    missing = [rid for rid in plan.probes if rid not in answered]
    return {"framing": framing, "frames": plan.frames, "bytes": written, "seconds": elapsed, "answers": answers[0],
            "probes": len(plan.probes), "missing": missing[:20], "missing_count": len(missing),
            "bad_output": bad_output[:5], "final_answered": got_final, "exit": rc, "rss_peak_kib": rss_peak_kib}


def run(agent_bin: str, frames: int, seed: int, env: dict | None = None) -> list[dict]:
    env = dict(os.environ if env is None else env)
    half = frames // 2
    return [run_one(agent_bin, "ndjson", half, seed, env), run_one(agent_bin, "lsp", frames - half, seed, env)]


def failures(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        tag = r["framing"]
        if r["exit"] != 0:
            out.append(f"{tag}: agent exit status {r['exit']} (it must never die)")
        if not r["final_answered"]:
            out.append(f"{tag}: the final ping was not answered")
        if r["missing_count"]:
            out.append(f"{tag}: {r['missing_count']} of {r['probes']} probe requests unanswered, e.g. {r['missing']}")
        if r["bad_output"]:
            out.append(f"{tag}: output frames that are not JSON-RPC answers: {r['bad_output']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--agent-bin", default=os.environ.get("MODEL_DEPLOYER_BIN",
                                                          str(REPO / ".build" / "release" / "model-deployer")))
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz seed {seed} (rerun with --seed {seed}), {a.frames} frames, agent {a.agent_bin}", flush=True)
    results = run(a.agent_bin, a.frames, seed)
    total_frames = sum(r["frames"] for r in results)
    total_s = sum(r["seconds"] for r in results)
    for r in results:
        print(f"{r['framing']:>7}: {r['frames']} frames, {r['bytes'] / 1e6:.1f} MB in {r['seconds']:.1f} s "
              f"({r['frames'] / r['seconds']:.0f} frames/s), {r['answers']} answers, {r['probes']} probes "
              f"({r['missing_count']} unanswered), exit {r['exit']}, agent RSS peak {r['rss_peak_kib'] / 1024:.1f} MiB")
    print(f"  total: {total_frames} frames in {total_s:.1f} s ({total_frames / total_s:.0f} frames/s)")
    bad = failures(results)
    for b in bad:
        print("FAIL:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
