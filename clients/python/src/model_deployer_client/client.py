"""The asyncio client: spawns ``model-deployer serve`` and speaks newline-delimited JSON-RPC 2.0 with it."""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Literal, Mapping, Sequence, cast

from .errors import AgentDiedError, DeployerError, ProtocolError
from .progress import ProgressMode, make_display
from .types import (
    AbortResult,
    ApproveResult,
    CanarySettings,
    Deployment,
    ExecuteResult,
    FollowResult,
    HistoryResult,
    LiveRow,
    PlanResult,
    RollbackResult,
    StopResult,
    StatusResult,
    to_output,
    with_int_error_code,
)

log = logging.getLogger("model_deployer_client")
agent_log = logging.getLogger("model_deployer_client.agent")

ProgressCallback = Callable[[dict[str, Any]], Any]
"""Called with each ``deploy.progress`` notification's params; may be a coroutine function."""

NotificationHandler = Callable[[str, Any], Any]
"""Called with (method, params) of every notification the agent sends."""

StderrMode = Literal["capture", "inherit", "devnull"]

_MAX_FRAME = 64 * 1024 * 1024
_STDERR_TAIL_LINES = 50


def find_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """Returns the agent executable: ``binary``, else ``$MODEL_DEPLOYER_BIN``, else ``model-deployer`` on PATH.

    Raises:
        FileNotFoundError: when none of those names an executable file.
    """
    if binary is not None:
        source, path = "argument", os.fspath(binary)
    elif os.environ.get("MODEL_DEPLOYER_BIN"):
        source, path = "MODEL_DEPLOYER_BIN", os.environ["MODEL_DEPLOYER_BIN"]
    else:
        found = shutil.which("model-deployer")
        if found is None:
            raise FileNotFoundError(
                "model-deployer not found: pass binary=..., set MODEL_DEPLOYER_BIN, or put it on PATH"
            )
        return found
    if os.sep not in path:
        found = shutil.which(path)
        if found:
            return found
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"model-deployer binary from {source} is not an executable file: {path}")
    return path


def format_timestamp(value: datetime | str) -> str:
    """Formats a datetime the way the agent writes them (RFC 3339 UTC, milliseconds, ``Z``)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _params(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


class DeployerClient:
    """An asyncio client of one ``model-deployer serve`` process.

    Use it as an async context manager::

        async with DeployerClient(home="/tmp/md") as client:
            plan = await client.plan("iris_clf", "latest", "staging", requested_by="ci")
            await client.approve(plan["deployment_id"], approver="alice")
            out = await client.execute(plan["deployment_id"], on_progress=print)

    Requests may run concurrently (each has its own id); ``deploy.progress`` notifications are routed to
    the callbacks of the deployment they name. JSON-RPC errors raise :class:`DeployerError`; if the agent
    exits, pending and later calls raise :class:`AgentDiedError`.

    Args:
        binary: the agent executable (default ``$MODEL_DEPLOYER_BIN`` or ``model-deployer`` on PATH).
        home: ``--home`` (the agent's state directory: ledger, slots, router).
        database_url: ``--database-url`` (``postgres://...``; default: SQLite under ``home``).
        policy: ``--policy`` file.
        log_level: ``--log-level``.
        mcp_allow_approve: pass ``--mcp-allow-approve``.
        extra_args: more arguments after ``serve``.
        env: variables added to (or, with value ``None``, removed from) the inherited environment.
        stderr: ``"capture"`` (default: keep the last lines for error messages and log them at DEBUG
            on the ``model_deployer_client.agent`` logger), ``"inherit"`` or ``"devnull"``.
        progress: progress bar for execute/approve/rollback: ``"auto"`` (only when stderr is a TTY and
            ``rich``/``tqdm`` is installed), ``"rich"``, ``"tqdm"`` or ``"off"``.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str] | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
        policy: str | os.PathLike[str] | None = None,
        log_level: str | None = None,
        mcp_allow_approve: bool = False,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        stderr: StderrMode = "capture",
        progress: ProgressMode = "auto",
    ) -> None:
        self.binary = find_binary(binary)
        self.args = [self.binary, "serve"]
        if home is not None:
            self.args += ["--home", os.fspath(home)]
        if database_url is not None:
            self.args += ["--database-url", database_url]
        if policy is not None:
            self.args += ["--policy", os.fspath(policy)]
        if log_level is not None:
            self.args += ["--log-level", log_level]
        if mcp_allow_approve:
            self.args.append("--mcp-allow-approve")
        self.args += list(extra_args)
        self._env = dict(env or {})
        self._stderr_mode = stderr
        self.progress_mode: ProgressMode = progress

        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._listeners: dict[str | None, list[ProgressCallback]] = {}
        self._orphan_listeners: list[ProgressCallback] = []
        self._notification_handlers: list[NotificationHandler] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._dead: AgentDiedError | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> "DeployerClient":
        """Spawns the agent (idempotent). Returns ``self``."""
        if self._proc is not None:
            return self
        env = dict(os.environ)
        for key, value in self._env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        stderr: int | None
        if self._stderr_mode == "capture":
            stderr = asyncio.subprocess.PIPE
        elif self._stderr_mode == "devnull":
            stderr = asyncio.subprocess.DEVNULL
        else:
            stderr = None
        self._proc = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            limit=_MAX_FRAME,
        )
        if self._proc.stderr is not None:
            self._stderr_task = asyncio.create_task(self._drain_stderr(self._proc.stderr))
        self._reader = asyncio.create_task(self._read_loop())
        return self

    async def __aenter__(self) -> "DeployerClient":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pid(self) -> int | None:
        """The agent's process id (``None`` before :meth:`start`)."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """The agent's exit status once it has exited."""
        return self._proc.returncode if self._proc else None

    @property
    def is_alive(self) -> bool:
        """Whether the agent is running and answering."""
        return self._proc is not None and self._dead is None and self._proc.returncode is None

    async def close(self, timeout: float = 5.0) -> int | None:
        """Shuts the agent down: closes its stdin, waits ``timeout`` s, then SIGTERM, then SIGKILL.

        Returns the agent's exit status. Calls still pending fail with :class:`AgentDiedError`.
        """
        proc = self._proc
        if proc is None:
            return None
        self._closing = True
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
            try:
                await proc.stdin.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("agent %s did not exit within %.1fs of stdin EOF; terminating", proc.pid, timeout)
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        return proc.returncode

    # ------------------------------------------------------------------ plumbing

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            self._stderr_tail.append(text)
            agent_log.debug("%s", text)

    async def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                if line.isspace():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    log.error("agent wrote a non-JSON frame: %r", line[:200])
                    continue
                if isinstance(message, list):
                    for item in message:
                        self._dispatch(item)
                else:
                    self._dispatch(message)
        except Exception as exc:  # pragma: no cover - transport failure
            log.error("agent reader failed: %s", exc)
        finally:
            await proc.wait()
            if self._stderr_task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
                except (asyncio.TimeoutError, Exception):
                    pass
            what = "agent was closed" if self._closing else "agent exited unexpectedly"
            self._dead = AgentDiedError(
                what, returncode=proc.returncode, stderr_tail="\n".join(self._stderr_tail) if not self._closing else ""
            )
            pending, self._pending = self._pending, {}
            for future, method in pending.values():
                if not future.done():
                    future.set_exception(
                        AgentDiedError(
                            f"{what} before answering {method}",
                            returncode=proc.returncode,
                            stderr_tail="\n".join(self._stderr_tail),
                        )
                    )

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            log.error("agent wrote a frame that is not an object: %r", message)
            return
        if "method" in message:
            if "id" in message and message["id"] is not None:
                # A request from the agent (none are defined for JSON-RPC clients): refuse it.
                self._send_nowait(
                    {
                        "jsonrpc": "2.0",
                        "id": message["id"],
                        "error": {"code": -32601, "message": f"method not found: {message['method']}"},
                    }
                )
                return
            self._on_notification(message["method"], message.get("params"))
            return
        entry = self._pending.pop(message.get("id"), None) if isinstance(message.get("id"), int) else None
        if entry is None:
            log.warning("answer for an unknown request id: %r", message.get("id"))
            return
        future, method = entry
        if future.done():
            return
        if "error" in message and message["error"] is not None:
            err = message["error"]
            if isinstance(err, dict):
                future.set_exception(
                    DeployerError(int(err.get("code", -32603)), str(err.get("message", "")), err.get("data"), method=method)
                )
            else:
                future.set_exception(ProtocolError(f"malformed error object for {method}: {err!r}"))
        else:
            future.set_result(message.get("result"))

    def _on_notification(self, method: str, params: Any) -> None:
        for handler in list(self._notification_handlers):
            self._invoke(handler, method, params)
        if method != "deploy.progress" or not isinstance(params, dict):
            return
        specific = self._listeners.get(params.get("deployment_id"), [])
        for callback in list(specific):
            self._invoke(callback, params)
        for callback in list(self._listeners.get(None, [])):
            self._invoke(callback, params)
        if not specific:
            for callback in list(self._orphan_listeners):
                self._invoke(callback, params)

    def _invoke(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        except Exception:
            log.exception("progress callback %r failed", callback)

    def _died(self) -> AgentDiedError:
        if self._dead is not None:
            return self._dead
        proc = self._proc
        return AgentDiedError(
            "agent is not running",
            returncode=proc.returncode if proc else None,
            stderr_tail="\n".join(self._stderr_tail),
        )

    def _send_nowait(self, frame: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        try:
            proc.stdin.write(json.dumps(frame, separators=(",", ":")).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass

    async def _send(self, frame: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None:
            raise RuntimeError("DeployerClient is not started: use 'async with' or await start()")
        if self._dead is not None or proc.stdin is None or proc.stdin.is_closing():
            raise self._died()
        try:
            proc.stdin.write(json.dumps(frame, separators=(",", ":"), default=_json_default).encode() + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._died() from exc

    # ------------------------------------------------------------------ generic calls

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        progress_for: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Sends one request and returns its ``result``.

        Args:
            method: the JSON-RPC method (``deploy.plan``, ``history.query``, ...).
            params: its params object.
            on_progress: receives ``deploy.progress`` notifications of ``progress_for`` while the call
                runs (of deployments no other call is watching, if ``progress_for`` is ``None``).
            progress_for: the deployment id whose progress ``on_progress`` receives.
            timeout: seconds to wait for the answer; on timeout (or task cancellation) the request is
                cancelled on the agent with ``$/cancelRequest`` and ``TimeoutError`` is raised.

        Raises:
            DeployerError: the agent answered with an error.
            AgentDiedError: the agent exited before answering.
        """
        if self._proc is None:
            raise RuntimeError("DeployerClient is not started: use 'async with' or await start()")
        if self._dead is not None:
            raise self._dead
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, method)
        frame: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = dict(params)
        unsubscribe = None
        if on_progress is not None:
            if progress_for is not None:
                unsubscribe = self.subscribe(on_progress, progress_for)
            else:
                self._orphan_listeners.append(on_progress)
                unsubscribe = lambda: self._orphan_listeners.remove(on_progress)  # noqa: E731
        try:
            await self._send(frame)
            if timeout is None:
                return await future
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            if self._pending.pop(request_id, None) is not None and self._dead is None:
                self._send_nowait({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": request_id}})
            raise
        finally:
            self._pending.pop(request_id, None)
            if unsubscribe is not None:
                try:
                    unsubscribe()
                except ValueError:
                    pass

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Sends a notification (no answer)."""
        frame: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            frame["params"] = dict(params)
        await self._send(frame)

    def subscribe(self, callback: ProgressCallback, deployment_id: str | None = None) -> Callable[[], None]:
        """Calls ``callback`` with every ``deploy.progress`` of ``deployment_id`` (of all, if ``None``).

        Returns a function that removes the subscription.
        """
        self._listeners.setdefault(deployment_id, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._listeners.get(deployment_id, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._listeners.pop(deployment_id, None)

        return unsubscribe

    def add_notification_handler(self, handler: NotificationHandler) -> Callable[[], None]:
        """Calls ``handler(method, params)`` for every notification; returns a function that removes it."""
        self._notification_handlers.append(handler)
        return lambda: self._notification_handlers.remove(handler)

    async def _tracked(
        self,
        method: str,
        params: dict[str, Any],
        *,
        deployment_id: str | None,
        on_progress: ProgressCallback | None,
        progress: ProgressMode | None,
        title: str,
    ) -> Any:
        display = make_display(progress or self.progress_mode, title)
        callbacks = [cb for cb in (on_progress, display.update if display else None) if cb is not None]
        combined: ProgressCallback | None = None
        if len(callbacks) == 1:
            combined = callbacks[0]
        elif callbacks:

            def combined(note: dict[str, Any]) -> Any:
                results = [cb(note) for cb in callbacks]
                awaitables = [r for r in results if inspect.isawaitable(r)]
                if awaitables:
                    return asyncio.gather(*awaitables)
                return None

        try:
            return await self.call(method, params, on_progress=combined, progress_for=deployment_id)
        finally:
            if display is not None:
                display.close()

    # ------------------------------------------------------------------ agent methods

    async def ping(self) -> dict[str, Any]:
        """``ping``: returns ``{}`` when the agent is alive."""
        return cast(dict[str, Any], await self.call("ping", {}))

    async def discover(self) -> dict[str, Any]:
        """``rpc.discover``: the agent's OpenRPC document."""
        return cast(dict[str, Any], await self.call("rpc.discover"))

    async def plan(
        self,
        model_name: str,
        model_version: str,
        environment: str,
        requested_by: str,
        *,
        bento: str | None = None,
        strategy: Literal["auto", "direct", "blue_green", "canary"] | None = None,
        smoke_tests: Sequence[Mapping[str, Any]] | None = None,
        requirements: Mapping[str, Any] | None = None,
        gates: Sequence[Literal["deploy", "promote"]] | None = None,
        idempotency_key: str | None = None,
        signer: "SSHSigner | None" = None,
        canary: CanarySettings | Mapping[str, Any] | None = None,
    ) -> PlanResult:
        """``deploy.plan``: plans a deployment of ``model_name:model_version`` (``"latest"`` allowed).

        ``strategy="canary"`` moves the endpoint's traffic to the new version in weight steps beside the live
        version, judging each analysis window of real traffic (needs a version live and a router with
        weights); ``canary`` (:class:`~model_deployer_client.types.CanarySettings`) overrides the
        environment policy's canary settings, e.g. ``{"steps": [5, 25, 50, 100], "pause_seconds": 30,
        "min_requests": 50, "step_gates": True, "analysis": {"interval_seconds": 10}}``; the plan's
        ``plan["config"]["canary"]`` echoes the resolved settings.

        With ``signer`` (:class:`~model_deployer_client.signing.SSHSigner`) the request is SSH-signed, as an
        environment that requires signatures demands.
        """
        params = _params(
            model_name=model_name,
            model_version=model_version,
            environment=environment,
            requested_by=requested_by,
            bento=bento,
            strategy=strategy,
            smoke_tests=[dict(t) for t in smoke_tests] if smoke_tests is not None else None,
            requirements=dict(requirements) if requirements is not None else None,
            gates=list(gates) if gates is not None else None,
            idempotency_key=idempotency_key,
            canary=_canary_params(canary) if canary is not None else None,
        )
        if signer is not None:
            params = signer.sign_plan(params)
        return cast(PlanResult, await self.call("deploy.plan", params))

    async def approve(
        self,
        deployment_id: str,
        approver: str,
        decision: Literal["approve", "reject"] = "approve",
        *,
        gate: Literal["deploy", "promote", "step"] | None = None,
        comment: str | None = None,
        on_progress: ProgressCallback | None = None,
        progress: ProgressMode | None = None,
        signer: "SSHSigner | None" = None,
        signature: str | None = None,
    ) -> ApproveResult:
        """``deploy.approve``: approves or rejects a gate.

        In an environment that requires signatures pass ``signer`` (the gate and plan_hash are read from
        ``deploy.status`` when ``gate`` is left out) or a ready-made ``signature``.

        Approving a promote gate, or a canary's ``step`` gate, resumes the rollout until the next gate or
        the end; its execute result is then in ``output`` (with ``deployment_timestamp`` parsed), and its
        progress (``canary_step`` and ``analysis`` notes with their ``data``) goes to ``on_progress``.
        Rejecting a step gate aborts the canary (status ``aborted``: candidate weight 0, stable untouched).
        """
        params = _params(deployment_id=deployment_id, approver=approver, decision=decision, gate=gate, comment=comment)
        if signer is not None and signature is None:
            signature = await _sign_approval(self, signer, deployment_id, decision, gate)
        if signature is not None:
            params["signature"] = signature
        result = await self._tracked(
            "deploy.approve",
            params,
            deployment_id=deployment_id,
            on_progress=on_progress,
            progress=progress if gate in ("promote", "step") and decision == "approve" else "off",
            title=f"{gate} {deployment_id[:12]}",
        )
        if isinstance(result, dict) and isinstance(result.get("output"), dict):
            result = {**result, "output": to_output(result["output"])}
        return cast(ApproveResult, result)

    async def execute(
        self,
        deployment_id: str,
        *,
        idempotency_key: str | None = None,
        on_progress: ProgressCallback | None = None,
        progress: ProgressMode | None = None,
    ) -> ExecuteResult:
        """``deploy.execute``: runs an approved deployment until it is live, failed, or at the promote gate.

        A failed deployment is returned (``status`` ``"failed"``/``"rolled_back"`` with ``error``), not
        raised. ``deployment_timestamp`` is a ``datetime``.
        """
        result = await self._tracked(
            "deploy.execute",
            _params(deployment_id=deployment_id, idempotency_key=idempotency_key),
            deployment_id=deployment_id,
            on_progress=on_progress,
            progress=progress,
            title=f"deploy {deployment_id[:12]}",
        )
        return cast(ExecuteResult, to_output(result))

    async def rollback(
        self,
        model_name: str,
        environment: str,
        requested_by: str,
        *,
        to_version: str | None = None,
        reason: str | None = None,
        on_progress: ProgressCallback | None = None,
        progress: ProgressMode | None = None,
    ) -> RollbackResult:
        """``deploy.rollback``: puts the previous (or ``to_version``) deployment back live.

        ``on_progress`` receives progress of deployments no other call is watching (the rollback's
        own id is only known from its result).
        """
        params = _params(
            model_name=model_name, environment=environment, to_version=to_version, reason=reason, requested_by=requested_by
        )
        return cast(
            RollbackResult,
            await self._tracked(
                "deploy.rollback",
                params,
                deployment_id=None,
                on_progress=on_progress,
                progress=progress,
                title=f"rollback {model_name}/{environment}",
            ),
        )

    async def abort(self, deployment_id: str, requested_by: str, reason: str | None = None) -> AbortResult:
        """``deploy.abort``: stops a canary, or a live deployment still in its bake, by hand.

        A canary (``canary`` or ``awaiting_step``) goes back to the stable version (candidate weight 0, its
        slot stopped) and ends ``aborted``; a deployment in its bake is rolled back to the warm previous
        version in one flip and ends ``rolled_back``; both with ``error.reason`` ``"aborted"``. A call that
        streams that rollout (execute, approve) ends with the aborted deployment.

        Raises:
            DeployerError: ``not_abortable`` for any other deployment (``data.status`` says where it is),
                ``deployment_not_found`` (-32001).
        """
        result = await self.call(
            "deploy.abort", _params(deployment_id=deployment_id, requested_by=requested_by, reason=reason)
        )
        if isinstance(result, dict) and isinstance(result.get("deployment"), dict):
            result = {**result, "deployment": with_int_error_code(result["deployment"])}
        return cast(AbortResult, result)

    async def status(self, deployment_id: str) -> StatusResult:
        """``deploy.status``: the deployment, its events, what is live, and whether its slot answers."""
        result = await self.call("deploy.status", {"deployment_id": deployment_id})
        if isinstance(result, dict) and isinstance(result.get("deployment"), dict):
            result = {**result, "deployment": with_int_error_code(result["deployment"])}
        return cast(StatusResult, result)

    async def follow(
        self,
        deployment_id: str,
        after_seq: int = 0,
        on_progress: ProgressCallback | None = None,
        *,
        timeout: float | None = None,
    ) -> FollowResult:
        """``deploy.follow``: waits until the deployment's rollout has ended, wherever it runs.

        Any agent process sharing this client's ledger may plan, approve, execute and bake the deployment;
        each of its ledger events after ``after_seq`` reaches ``on_progress`` (a ``deploy.progress``
        params dict, like :meth:`execute`'s) as it is recorded. Returns once the deployment is terminal
        (``failed``, ``rolled_back``, ``rejected``, ...) or live with its bake over; it keeps waiting while
        the deployment waits at a gate. A failed deployment is returned, not raised.

        Args:
            deployment_id: the deployment to follow.
            after_seq: skip events up to this sequence number (a previous result's ``last_seq`` resumes).
            on_progress: receives each event as progress; may be a coroutine function.
            timeout: give up after this many seconds: the request is cancelled on the agent
                (``$/cancelRequest``) and ``TimeoutError`` is raised. Cancelling the awaiting task does
                the same.

        Raises:
            DeployerError: ``deployment_not_found`` (-32001), ``invalid_params`` (-32602) or
                ``ledger_unavailable`` (-32007).
        """
        result = await self.call(
            "deploy.follow",
            {"deployment_id": deployment_id, "after_seq": after_seq},
            on_progress=on_progress,
            progress_for=deployment_id,
            timeout=timeout,
        )
        if isinstance(result, dict) and isinstance(result.get("deployment"), dict):
            result = {**result, "deployment": with_int_error_code(result["deployment"])}
        return cast(FollowResult, result)

    async def stop(
        self, model_name: str, environment: str, requested_by: str, *, reason: str | None = None
    ) -> StopResult:
        """``deploy.stop``: takes the model down in the environment (undeploy).

        The endpoint's route is removed (its port refuses connections), every slot of the model and
        environment is stopped, the live deployment becomes ``stopped`` (a ``stop`` event with
        ``requested_by`` and ``reason``) and nothing is live there any more: :meth:`live` no longer lists
        it and the next :meth:`plan` is a first deployment. Not an MCP tool: a person runs it.

        Raises:
            DeployerError: ``nothing_deployed`` (-32006) when nothing is live; ``rollout_in_progress``
                (-32002, ``data["deployment_id"]``) while a rollout of the pair runs or the live version
                is in its bake; ``runtime_unavailable`` (-32008) when the route or a slot could not be
                taken down (call again); ``ledger_unavailable`` (-32007); ``invalid_params`` (-32602).
        """
        params = _params(model_name=model_name, environment=environment, requested_by=requested_by, reason=reason)
        return cast(StopResult, await self.call("deploy.stop", params))

    async def live(self, model_name: str | None = None, environment: str | None = None) -> list[LiveRow]:
        """``deploy.list``: what is live now, one row per (model, environment), optionally filtered.

        Each row says whether the live slot runs (``slot_alive``) and whether the endpoint answers through
        the router (``endpoint_alive``) at the time of the call, the warm ``standby`` (with its own
        ``alive``) or ``None``, and the rollout ``in_flight`` or ``None``.
        """
        result = await self.call("deploy.list", _params(model_name=model_name, environment=environment))
        return cast(list[LiveRow], result["live"])

    async def history(
        self,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        environment: str | None = None,
        status: str | Iterable[str] | None = None,
        deployment_strategy: str | None = None,
        deployment_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        live_at: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        include_events: bool | None = None,
        traffic_at: datetime | str | None = None,
    ) -> HistoryResult:
        """``history.query``: one page of deployments, newest first; follow ``next_cursor`` for more.

        ``traffic_at`` (with ``model_name`` and ``environment``) adds ``traffic``: the share each version
        had of the endpoint's traffic at that instant (``[{"version", "deployment_id", "weight"}]``).
        """
        params = _params(
            model_name=model_name,
            model_version=model_version,
            environment=environment,
            status=status if status is None or isinstance(status, str) else list(status),
            deployment_strategy=deployment_strategy,
            deployment_id=deployment_id,
            since=format_timestamp(since) if since is not None else None,
            until=format_timestamp(until) if until is not None else None,
            live_at=format_timestamp(live_at) if live_at is not None else None,
            limit=limit,
            cursor=cursor,
            include_events=include_events,
            traffic_at=format_timestamp(traffic_at) if traffic_at is not None else None,
        )
        result = await self.call("history.query", params)
        if isinstance(result, dict) and isinstance(result.get("deployments"), list):
            result = {**result, "deployments": [with_int_error_code(d) for d in result["deployments"]]}
        return cast(HistoryResult, result)

    async def iter_history(self, **filters: Any) -> AsyncIterator[Deployment]:
        """Yields every deployment matching ``filters`` (see :meth:`history`), following cursors."""
        filters.pop("cursor", None)
        cursor: str | None = None
        while True:
            page = await self.history(cursor=cursor, **filters)
            for deployment in page["deployments"]:
                yield deployment
            cursor = page.get("next_cursor")
            if not cursor:
                return


_CANARY_KEYS = frozenset(
    {"steps", "pause_seconds", "min_requests", "max_inconclusive_seconds", "step_gates", "analysis"}
)


def _canary_params(canary: Mapping[str, Any]) -> dict[str, Any]:
    """``deploy.plan``'s ``canary`` object: a plain copy (steps as a list, ``None`` values left out).

    Unknown keys raise ``ValueError`` here, before anything is sent; the limits (1..10 steps, strictly
    increasing, the last 100, ...) are the agent's to check (``invalid_params`` with the field).
    """
    if not isinstance(canary, Mapping):
        raise TypeError(f"canary must be a mapping, got {type(canary).__name__}")
    unknown = sorted(set(canary) - _CANARY_KEYS)
    if unknown:
        raise ValueError(f"unknown canary setting(s): {', '.join(unknown)} (known: {', '.join(sorted(_CANARY_KEYS))})")
    out: dict[str, Any] = {}
    for key, value in canary.items():
        if value is None:
            continue
        if key == "steps" and not isinstance(value, (str, bytes)):
            value = list(value)  # a tuple or range is fine; the agent checks the numbers
        elif key == "analysis" and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if v is not None}
        out[key] = value
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def open_client(*args: Any, **kwargs: Any) -> DeployerClient:
    """Creates and starts a :class:`DeployerClient` (same arguments). Close it with ``await client.close()``."""
    return await DeployerClient(*args, **kwargs).start()


async def _sign_approval(client: DeployerClient, signer: "SSHSigner", deployment_id: str, decision: str, gate: str | None) -> str:
    """Signs an approval: the gate (when not given) and the plan_hash come from the deployment itself."""
    d = (await client.status(deployment_id))["deployment"]
    if gate is None:
        gate = {"awaiting_approval": "deploy", "awaiting_promotion": "promote", "awaiting_step": "step"}.get(
            d["status"], "deploy"
        )
    return signer.sign_approval(deployment_id, gate, decision, d["plan_hash"])


from .signing import SSHSigner  # noqa: E402  (type of the signer params above)
