"""A blocking wrapper of :class:`DeployerClient` for scripts and synchronous LangGraph graphs."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Coroutine, TypeVar

from .client import DeployerClient

T = TypeVar("T")


class SyncDeployerClient:
    """Blocking client: the same methods as :class:`DeployerClient`, without ``await``.

    It runs a :class:`DeployerClient` on an event loop in a daemon thread, so it can be used from any
    thread (also from inside a running event loop, e.g. a notebook). Progress callbacks run on that
    loop thread. Use it as a context manager, or call :meth:`close`::

        with SyncDeployerClient(home="/tmp/md") as client:
            client.ping()

    Takes the same arguments as :class:`DeployerClient`; the agent starts in the constructor.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="model-deployer-client", daemon=True)
        self._thread.start()
        self._closed = False
        try:
            self.aio: DeployerClient = self._run(self._make(args, kwargs))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _make(args: tuple[Any, ...], kwargs: dict[str, Any]) -> DeployerClient:
        return await DeployerClient(*args, **kwargs).start()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("SyncDeployerClient is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except KeyboardInterrupt:
            future.cancel()
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "SyncDeployerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The agent's process id."""
        return self.aio.pid

    @property
    def returncode(self) -> int | None:
        """The agent's exit status once it has exited."""
        return self.aio.returncode

    @property
    def is_alive(self) -> bool:
        """Whether the agent is running."""
        return self.aio.is_alive

    def close(self, timeout: float = 5.0) -> int | None:
        """Shuts the agent down (see :meth:`DeployerClient.close`) and stops the loop thread."""
        if self._closed:
            return self.aio.returncode
        try:
            return self._run(self.aio.close(timeout))
        finally:
            self._closed = True
            self._stop_loop()

    def call(self, method: str, params: Any = None, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.call`."""
        return self._run(self.aio.call(method, params, **kwargs))

    def notify(self, method: str, params: Any = None) -> None:
        """See :meth:`DeployerClient.notify`."""
        return self._run(self.aio.notify(method, params))

    def subscribe(self, callback: Any, deployment_id: str | None = None) -> Any:
        """See :meth:`DeployerClient.subscribe` (the callback runs on the client's loop thread)."""

        async def register() -> Any:
            return self.aio.subscribe(callback, deployment_id)

        unsubscribe = self._run(register())
        return lambda: self._loop.call_soon_threadsafe(unsubscribe)

    def ping(self) -> dict[str, Any]:
        """See :meth:`DeployerClient.ping`."""
        return self._run(self.aio.ping())

    def discover(self) -> dict[str, Any]:
        """See :meth:`DeployerClient.discover`."""
        return self._run(self.aio.discover())

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.plan`."""
        return self._run(self.aio.plan(*args, **kwargs))

    def approve(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.approve`."""
        return self._run(self.aio.approve(*args, **kwargs))

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.execute`."""
        return self._run(self.aio.execute(*args, **kwargs))

    def rollback(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.rollback`."""
        return self._run(self.aio.rollback(*args, **kwargs))

    def abort(self, deployment_id: str, requested_by: str, reason: str | None = None) -> Any:
        """See :meth:`DeployerClient.abort`."""
        return self._run(self.aio.abort(deployment_id, requested_by, reason))

    def status(self, deployment_id: str) -> Any:
        """See :meth:`DeployerClient.status`."""
        return self._run(self.aio.status(deployment_id))

    def follow(self, deployment_id: str, after_seq: int = 0, on_progress: Any = None, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.follow` (``on_progress`` runs on the client's loop thread). Blocks until
        the rollout has ended; Ctrl-C cancels the follow on the agent."""
        return self._run(self.aio.follow(deployment_id, after_seq, on_progress, **kwargs))

    def stop(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`DeployerClient.stop`."""
        return self._run(self.aio.stop(*args, **kwargs))

    def live(self, model_name: str | None = None, environment: str | None = None) -> Any:
        """See :meth:`DeployerClient.live`."""
        return self._run(self.aio.live(model_name, environment))

    def history(self, **filters: Any) -> Any:
        """See :meth:`DeployerClient.history`."""
        return self._run(self.aio.history(**filters))

    def iter_history(self, **filters: Any) -> Any:
        """Yields every deployment matching ``filters``, following cursors."""
        filters.pop("cursor", None)
        cursor = None
        while True:
            page = self.history(cursor=cursor, **filters)
            yield from page["deployments"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
