"""An asyncio event loop in a daemon thread, so sync tests and subprocesses can use asyncio servers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the loop thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):  # best effort at teardown
            self.run(_cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


class LoopbackServer:
    """An asyncio TCP server on 127.0.0.1 run on its own LoopThread, usable from sync code and as a
    context manager. Subclasses give ``_handle`` (one connection), may set ``listen_port`` (0: any free
    one) and extend ``_on_start``/``_on_stop`` (on the loop)."""

    listen_port = 0
    port = 0

    def __init__(self) -> None:
        self._lt: LoopThread | None = None
        self._server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _on_start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def start(self) -> Self:
        self._lt = LoopThread(f"{type(self).__name__}-{self.listen_port}")
        self._lt.run(self._on_start())
        return self

    def stop(self) -> None:
        if self._lt is None:
            return
        with contextlib.suppress(Exception):  # best effort at teardown
            self._lt.run(self._on_stop())
        self._lt.stop()
        self._lt = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
