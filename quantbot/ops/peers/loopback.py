"""An aiohttp server on loopback, on an asyncio loop in a thread of its own: the frame of the feed peers.

```
with SomePeer(...) as peer:      # starts the loop thread, binds 127.0.0.1:<free port>
    peer.url                     # http://127.0.0.1:<port>
    peer.call(peer.something())  # run a coroutine on the server's loop, from the test's thread
```

A subclass builds its `aiohttp.web.Application` in `_app()` and may run background tasks (tickers) by
overriding `_started()`. Everything it scripts (drops, silence, 429s, malformed messages) lives in plain
attributes read by its handlers; setting them from the test's thread is a single assignment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
"""Binding a loopback port takes milliseconds; this long means something is wrong."""
STOP_TIMEOUT_S = 5.0
SHUTDOWN_GRACE_S = 0.5
"""Handlers (streams, websockets) still running at stop are given this long, then cancelled."""

T = TypeVar("T")


class LoopbackServer:
    """An aiohttp application served on a free loopback port from a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.closing = False
        """Set when the server stops: long-running handlers (streams, websockets) end on it."""

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{HOST}:{self.port}"

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def _started(self) -> None:
        """Called on the loop once the server listens: start background tasks here (`self._spawn`)."""

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(self._loop.create_task(coroutine))

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            self._app(), handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        server = site._server  # the only way aiohttp tells the port it bound
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        await self._started()

    async def _stop(self) -> None:
        self.closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the server's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=START_TIMEOUT_S)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()
        self.call(self._start())

    def stop(self) -> None:
        """Stop serving and end the thread."""
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=STOP_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
