"""The agent's MCP tools as LangChain tools, over one explicit MCP session.

::

    from model_deployer_client.mcp_tools import deployer_session, load_deployer_tools

    async with deployer_session(home="/tmp/md") as session:      # one agent process for the whole flow
        tools = await load_deployer_tools(session)                # deploy_plan, deploy_execute, ...
        by_name = {t.name: t for t in tools}
        text = await by_name["history_query"].ainvoke({"limit": 5})

With an explicit session every tool call goes to the same agent process (``MultiServerMCPClient`` without
a session starts a new process per call). ``deploy_approve`` is only listed when the agent runs with
``--mcp-allow-approve`` (``allow_approve=True``): an LLM should not approve its own deployment.
"""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping, Sequence, TextIO

from .client import find_binary


def server_parameters(
    binary: str | os.PathLike[str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    database_url: str | None = None,
    allow_approve: bool = False,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Any:
    """Returns ``mcp.StdioServerParameters`` that start ``model-deployer serve`` with these options.

    The whole current environment is passed on (plus ``env``), so ``BENTOML_HOME``,
    ``MODEL_DEPLOYER_*`` and ``PATH`` reach the agent (the SDK's default passes only a few variables).
    """
    from mcp import StdioServerParameters

    args = ["serve"]
    if home is not None:
        args += ["--home", os.fspath(home)]
    if database_url is not None:
        args += ["--database-url", database_url]
    if allow_approve:
        args.append("--mcp-allow-approve")
    args += list(extra_args)
    return StdioServerParameters(command=find_binary(binary), args=args, env={**os.environ, **(env or {})})


@asynccontextmanager
async def deployer_session(
    binary: str | os.PathLike[str] | None = None,
    *,
    errlog: TextIO = sys.stderr,
    **options: Any,
) -> AsyncIterator[Any]:
    """Starts the agent and yields an initialized ``mcp.ClientSession`` (closed, with the agent, on exit).

    ``options`` are those of :func:`server_parameters`.
    """
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client

    params = server_parameters(binary, **options)
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def load_deployer_tools(session: Any, **kwargs: Any) -> list[Any]:
    """Returns the agent's MCP tools as LangChain ``BaseTool``s bound to ``session``.

    ``kwargs`` go to ``langchain_mcp_adapters.tools.load_mcp_tools`` (e.g. ``callbacks``).
    """
    from langchain_mcp_adapters.tools import load_mcp_tools

    return await load_mcp_tools(session, **kwargs)


def tool_result(content: Any) -> Any:
    """Returns the agent's JSON result from a tool's output (``tool.ainvoke(args)`` content, a
    ``ToolMessage``, or a string). Failed calls come back as ``{"error": {code, message, data}}``."""
    import json

    if hasattr(content, "artifact") and isinstance(getattr(content, "artifact"), dict):
        structured = content.artifact.get("structured_content")
        if structured is not None:
            return structured
    if hasattr(content, "content"):
        content = content.content
    if not isinstance(content, str):
        texts = [block.get("text", "") for block in content if isinstance(block, dict) and block.get("type") == "text"]
        content = texts[0] if texts else ""
    # The agent's JSON comes first; a text after it (guidance for the model at a gate) is not data.
    value, _ = json.JSONDecoder().raw_decode(content.lstrip())
    return value
