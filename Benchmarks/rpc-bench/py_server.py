#!/usr/bin/env python3
"""A plain-Python stdio JSON-RPC 2.0 server doing the same work as the agent for `ping`: newline-delimited
JSON in, one parse and one serialization per message. By default answers are batched per read (like the
agent, which flushes when its input is drained); with --flush-each it is the textbook loop (`for line in
stdin`, write and flush each answer). The baselines for Benchmarks/rpc-bench/bench.py. Standard library only."""

import json
import os
import sys


def handle(msg):
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request"}}
    if "id" not in msg:
        return None
    if msg["method"] == "ping":
        return {"jsonrpc": "2.0", "id": msg["id"], "result": {}}
    return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}


def main_flush_each():
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    out = sys.stdout
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            reply = handle(json.loads(line))
        except ValueError:
            reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
        if reply is not None:
            out.write(dumps(reply) + "\n")
            out.flush()


def main():
    if "--flush-each" in sys.argv[1:]:
        return main_flush_each()
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    pending = b""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    while True:
        chunk = os.read(fd_in, 1 << 16)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            else:
                reply = handle(msg)
            if reply is not None:
                out.append(dumps(reply))
        if out:
            data = ("\n".join(out) + "\n").encode()
            while data:
                data = data[os.write(fd_out, data):]


if __name__ == "__main__":
    main()
