"""A mailbox's two sides' clients, opened and closed together (the IMAP sync and its verify, the
contacts/calendars runner and its verify): both logins at once, and never one side left open because
the other failed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import Protocol, TypeVar


class Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=Closable)
D = TypeVar("D", bound=Closable)


async def open_both(source: Awaitable[S], destination: Awaitable[D]) -> tuple[S, D]:
    """Await both openings concurrently (the two logins' round trips overlap). If either fails, close
    the one that opened and raise the error, the source's first when both failed."""
    src, dst = await asyncio.gather(source, destination, return_exceptions=True)
    if isinstance(src, BaseException) or isinstance(dst, BaseException):
        await close_all(c for c in (src, dst) if not isinstance(c, BaseException))
        raise src if isinstance(src, BaseException) else dst  # type: ignore[misc]
    return src, dst


async def close_all(clients: Iterable[Closable | None], *, quiet: bool = False) -> None:
    """Close every client given (None: a side not open). ``quiet``: after a lost connection, where a
    failing close must not replace the error being handled."""
    for client in clients:
        if client is None:
            continue
        if quiet:
            with contextlib.suppress(Exception):
                await client.close()
        else:
            await client.close()
