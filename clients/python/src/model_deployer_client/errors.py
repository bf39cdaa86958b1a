"""Exceptions raised by the clients."""

from __future__ import annotations

from typing import Any


class ModelDeployerClientError(Exception):
    """Base class of every exception this package raises."""


class DeployerError(ModelDeployerClientError):
    """A JSON-RPC error answered by the agent.

    ``code`` is the JSON-RPC code (-32001 not found, -32004 approval, ...), ``reason`` the stable
    ``data.reason`` string (``plan_stale``, ``self_approval_forbidden``, ...; ``None`` if the agent sent
    none), ``data`` the whole error data object.
    """

    def __init__(self, code: int, message: str, data: Any = None, *, method: str | None = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        self.method = method
        self.reason: str | None = data.get("reason") if isinstance(data, dict) else None
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        reason = f" [{self.reason}]" if self.reason else ""
        return f"{where}{self.message} (code {self.code}){reason}"

    def __reduce__(self):  # keep pickling (multiprocessing, LangGraph checkpoints) working
        return (_rebuild_deployer_error, (self.code, self.message, self.data, self.method))


def _rebuild_deployer_error(code: int, message: str, data: Any, method: str | None) -> DeployerError:
    return DeployerError(code, message, data, method=method)


class AgentDiedError(ModelDeployerClientError):
    """The agent process exited (or its pipe broke) before answering.

    ``returncode`` is the exit status (negative: killed by that signal; ``None`` if unknown) and
    ``stderr_tail`` the agent's last lines of stderr, which usually say why.
    """

    def __init__(self, message: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        text = message
        if returncode is not None:
            text += f" (exit status {returncode})"
        if stderr_tail:
            text += "\n--- agent stderr (last lines) ---\n" + stderr_tail
        super().__init__(text)


class ProtocolError(ModelDeployerClientError):
    """The agent wrote something that is not a JSON-RPC frame."""
