#!/usr/bin/env python3
"""The official MCP Python SDK server (FastMCP) over stdio with one trivial tool: the MCP baseline for
Benchmarks/rpc-bench/bench.py."""

from mcp.server.fastmcp import FastMCP

mcp = FastMCP("rpc-bench")


@mcp.tool()
def echo(text: str) -> str:
    """Returns its input."""
    return text


if __name__ == "__main__":
    mcp.run()  # stdio
