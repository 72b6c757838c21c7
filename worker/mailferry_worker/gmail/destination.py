"""Gmail as a destination: folders become labels, and a message is uploaded once.

On Gmail a folder is a label, so the engine's per-folder copy already labels each upload with its
folder. What it would not do alone: a message present in several source folders (the same Message-ID
and size, e.g. filed in two folders or copied from a Gmail-like source) would be uploaded once per
folder, and Gmail would store it several times. ``GmailDestination`` looks every message up in All
Mail before its APPEND (on a connection of its own, All Mail selected there, so the engine's folder
stays selected): when the same message is there already, a UID COPY from All Mail into the folder adds
the label (Gmail's COPY semantics) instead of a second upload.

Concurrency and crashes: one lock per Message-ID across the run's connections, so two folders holding
the same message cannot both miss the lookup and upload it; a crash between the upload and the
checkpoint is the engine's usual case (its re-match finds the message in the folder, labelled or
uploaded). Costs one lookup (NOOP + SEARCH, + FETCH of sizes when found) per message uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from mailferry_imap.client import AppendItem, AppendPipeline, ImapClient, compress_uids
from mailferry_imap.credentials import Connector
from mailferry_imap.parser import Spool
from mailferry_imap.wire import mailbox_arg, parse_message_id

HEAD_BYTES = 65536  # the Message-ID is looked for in the message's first 64 KiB (its header)


def message_id_of(data: bytes | Spool) -> str | None:
    """The Message-ID of a message to upload (header only; None without one)."""
    if isinstance(data, Spool):
        data.file.seek(0)
        head = data.file.read(HEAD_BYTES)
        data.file.seek(0)
    else:
        head = data[:HEAD_BYTES]
    end = head.find(b"\r\n\r\n")
    return parse_message_id(head[: end + 2] if end >= 0 else head)


@dataclass
class GmailDestState:
    """Shared by the destination connections of one run: the lookup connection and the locks."""

    connector: Connector
    all_mail: str | None = None
    labeled: int = 0  # messages labelled instead of uploaded again (this run)
    _labeler: ImapClient | None = None
    _users: int = 0
    _open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _waiting: dict[str, int] = field(default_factory=dict)

    async def labeler(self) -> ImapClient:
        async with self._open_lock:
            if self._labeler is None or self._labeler.closed:
                c = await Connector.open(self.connector)
                if self.all_mail is None:
                    found = [f for f in await c.list_folders() if "\\all" in {x.lower() for x in f.flags}]
                    self.all_mail = found[0].name if found else None
                if self.all_mail is not None:
                    await c.select(self.all_mail, readonly=True)
                self._labeler = c
            return self._labeler

    async def once(
        self, mailbox: str, item: AppendItem, upload: Callable[[], Awaitable[list[int] | None]]
    ) -> list[int] | None:
        """Upload ``item`` into ``mailbox`` unless All Mail has it: then label it (None: UID unknown)."""
        mid = message_id_of(item.data)
        if mid is None:
            return await upload()
        lock = self._locks.setdefault(mid, asyncio.Lock())
        self._waiting[mid] = self._waiting.get(mid, 0) + 1
        try:
            async with lock:
                c = await self.labeler()
                uid = await self._find(c, mid, len(item.data)) if self.all_mail is not None else None
                if uid is None:
                    return await upload()
                await c.execute(b"UID COPY", str(uid).encode(), mailbox_arg(mailbox))
                self.labeled += 1
                return None
        finally:
            self._waiting[mid] -= 1
            if not self._waiting[mid]:  # nobody else waits for this Message-ID: forget its lock
                del self._waiting[mid], self._locks[mid]

    async def _find(self, c: ImapClient, mid: str, size: int) -> int | None:
        await c.noop()  # the session sees what other connections stored since its SELECT
        uids = await c.search_message_id(mid)
        if not uids:
            return None
        same = [
            m.uid for m in await c.fetch_meta(compress_uids(uids), with_message_id=False) if m.size == size
        ]
        return min(same) if same else None

    def enter(self) -> None:
        self._users += 1

    async def leave(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._labeler is not None:
            labeler, self._labeler = self._labeler, None
            await labeler.close()


class _LabelingPipe(AppendPipeline):
    """An AppendPipeline whose appends go through ``GmailDestState.once`` (Gmail has no MULTIAPPEND,
    so the engine only ever calls ``append_now``)."""

    def __init__(self, pipe: AppendPipeline, state: GmailDestState) -> None:
        super().__init__(pipe.client, pipe.mailbox)
        self._pipe = pipe
        self._state = state

    async def append_now(self, items: Sequence[AppendItem]) -> list[int] | None:
        uids: list[int] = []
        known = True
        for it in items:
            got = await self._state.once(self.mailbox, it, lambda it=it: self._pipe.append_now([it]))  # type: ignore[misc]
            if got is None:
                known = False
            else:
                uids += got
        return uids if known else None


class GmailDestination:
    """An ImapClient to a Gmail destination that uploads each message once (see the module doc)."""

    def __init__(self, inner: ImapClient, state: GmailDestState) -> None:
        self.inner = inner
        self.state = state
        state.enter()
        self._left = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextlib.asynccontextmanager
    async def append_pipeline(self, mailbox: str) -> AsyncIterator[AppendPipeline]:
        async with self.inner.append_pipeline(mailbox) as pipe:
            yield _LabelingPipe(pipe, self.state)

    async def append(self, mailbox: str, items: Sequence[AppendItem]) -> list[int] | None:
        async with self.append_pipeline(mailbox) as pipe:
            return await pipe.append_now(items)

    async def close(self) -> None:
        await self.logout()

    async def logout(self) -> None:
        await self.inner.logout()
        if not self._left:
            self._left = True
            await self.state.leave()


@dataclass
class GmailDestConnector(Connector):
    """A destination Connector whose connections upload each message once (when the server is Gmail)."""

    shared: GmailDestState | None = None

    async def open(self) -> ImapClient:
        client = await super().open()
        if self.endpoint.provider == "gmail" and client.has("X-GM-EXT-1"):
            if self.shared is None:
                self.shared = GmailDestState(self)
            return cast(ImapClient, GmailDestination(client, self.shared))
        return client


def gmail_dest_connector(c: Connector) -> Connector:
    """The destination connector of one run, Gmail-aware (``c`` itself for other providers)."""
    if c.endpoint.provider != "gmail":
        return c
    return GmailDestConnector(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)})


__all__ = [
    "GmailDestConnector",
    "GmailDestState",
    "GmailDestination",
    "gmail_dest_connector",
    "message_id_of",
]
