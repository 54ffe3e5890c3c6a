"""A DNS server (or any asyncio server) on a private event loop in a thread, for synchronous code.

The benchmarks and the tests that serve another network namespace's DNS are synchronous: they
start the server, change records from their own thread and stop it. The record methods of both
DNS servers here (the demo's and the tests' fault-injecting one) are thread-safe, so the thread
only has to own the loop.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Generic, Protocol, TypeVar


class AsyncServer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=AsyncServer)


class ServerThread(Generic[S]):
    """Runs ``server`` on its own event loop in a daemon thread; ``with`` yields the server."""

    def __init__(self, server: S, *, start_timeout: float = 10.0) -> None:
        self.server = server
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> S:
        """Start the thread and the server; raises what starting the server raised."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="dns-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        started: Future[None] = asyncio.run_coroutine_threadsafe(self.server.start(), loop)
        try:
            started.result(self._start_timeout)
        except BaseException:
            self._shutdown_loop()
            raise
        return self.server

    def stop(self) -> None:
        """Stop the server, then the loop and the thread."""
        if self._loop is None:
            return
        stopped = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
        try:
            stopped.result(self._start_timeout)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self._start_timeout)
        loop.close()

    def __enter__(self) -> S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
