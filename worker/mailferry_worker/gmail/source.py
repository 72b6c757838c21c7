"""Gmail as a source, the I/O part: a source connection that shows the engine the views of views.py.

``gmail_connector(connector)`` wraps the source Connector of one run; every connection it opens to a
server announcing X-GM-EXT-1 (with ``provider: gmail``) is a ``GmailSource``. All of them share one
``Snapshot`` of All Mail's X-GM-LABELS, taken once per run, so every view (and every connection) sees
the same home per message. The sync engine, its checkpoints and its crash-safety re-match run unchanged
on top: a view's UIDs are All Mail's, a view's folder checkpoint an All Mail UID.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap import utf7
from mailferry_imap.client import FolderInfo, ImapClient, MessageMeta, SelectInfo
from mailferry_imap.credentials import Connector
from mailferry_imap.errors import FolderVanished, ImapError
from mailferry_imap.parser import Literal, Response, as_str, pairs, tokenize

from .views import GmailLayout, Snapshot, layout, placed_floor, view_folders, with_extra

LABELS_WINDOW = 20000  # X-GM-LABELS are read in UID windows of this many UIDs (bounded responses)


@dataclass
class GmailState:
    """Shared by the connections of one run. ``checkpoints``: the MailboxSync's folder checkpoints as the
    run started (the views' are All Mail UIDs), from which ``floor`` is set with the snapshot."""

    checkpoints: Mapping[str, FolderCheckpoint] = field(default_factory=dict)
    layout: GmailLayout | None = None
    snapshot: Snapshot | None = None
    floor: int = 0  # All Mail UIDs up to here were placed by an earlier run: never copied again
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def read_labels(client: ImapClient, lay: GmailLayout) -> Snapshot:
    """Select All Mail and read every message's X-GM-LABELS into a Snapshot."""
    sel = await client.select(lay.all_mail, readonly=True)
    snap = Snapshot(sel.uidvalidity, sel.uidnext or 1, sel.highestmodseq, frozenset(lay.labels))
    top = (sel.uidnext or 0) - 1

    def handle(resp: Response) -> bool:
        if b" FETCH " not in resp.line[:40].upper():
            return False
        toks = tokenize(resp.rest_after(3), resp.literals)
        if not toks or not isinstance(toks[0], list):
            return False
        attrs = pairs(toks[0])
        uid, labels = attrs.get("UID"), attrs.get("X-GM-LABELS")
        if uid is not None:
            got = labels if isinstance(labels, list) else []
            snap.add(int(as_str(uid)), [utf7.decode(as_str(x)) for x in got])
            snap.uidnext = max(snap.uidnext, int(as_str(uid)) + 1)
        return True

    if sel.exists:
        lo = 1
        while True:
            hi = lo + LABELS_WINDOW - 1
            rng = f"{lo}:{hi}" if sel.uidnext and hi < top else f"{lo}:*"
            await client.execute(b"UID FETCH", rng.encode(), b"(UID X-GM-LABELS)", on_untagged=handle)
            if not sel.uidnext or hi >= top:
                break
            lo = hi + 1
    return snap


class GmailSource:
    """An ImapClient as the engine sees a Gmail source: views over All Mail, other folders as they are.
    What it does not override goes to the real connection."""

    def __init__(self, inner: ImapClient, state: GmailState) -> None:
        self.inner = inner
        self.state = state
        self._view: str | None = None  # the view selected on this connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ---------------------------------------------------------------- folders
    async def list_folders(self, pattern: str = "*") -> list[FolderInfo]:
        real = await self.inner.list_folders(pattern)
        lay = layout(real)
        if lay is None:  # no \All folder: nothing to show as views
            return real
        self.state.layout = lay
        return view_folders(lay)

    async def _layout(self) -> GmailLayout | None:
        if self.state.layout is None:
            await self.list_folders()
        return self.state.layout

    async def _is_view(self, mailbox: str) -> bool:
        lay = await self._layout()
        return lay is not None and mailbox in lay.view_names()

    async def snapshot(self) -> Snapshot:
        async with self.state.lock:
            if self.state.snapshot is None:
                lay = await self._layout()
                assert lay is not None
                snap = await read_labels(self.inner, lay)
                self.state.floor = placed_floor(self.state.checkpoints, lay, snap.uidvalidity)
                self.state.snapshot = snap
                self._view = None
            return self.state.snapshot

    def _status_of(self, view: str, snap: Snapshot) -> dict[str, int]:
        st = {"MESSAGES": snap.counts[view], "UIDNEXT": snap.uidnext, "UIDVALIDITY": snap.uidvalidity}
        if snap.highestmodseq is not None and self.inner.has("CONDSTORE"):
            st["HIGHESTMODSEQ"] = snap.highestmodseq
        return st

    async def status(self, mailbox: str) -> dict[str, int]:
        if not await self._is_view(mailbox):
            return await self.inner.status(mailbox)
        return self._status_of(mailbox, await self.snapshot())

    async def status_many(
        self, mailboxes: Sequence[str], items: Sequence[str] | None = None
    ) -> dict[str, dict[str, int] | ImapError]:
        views = [m for m in mailboxes if await self._is_view(m)]
        others = [m for m in mailboxes if m not in views]
        out = await self.inner.status_many(others, items) if others else {}
        if views:
            snap = await self.snapshot()
            out.update({v: self._status_of(v, snap) for v in views})
        return out

    async def select(
        self, mailbox: str, readonly: bool = False, qresync: tuple[int, int] | None = None
    ) -> SelectInfo:
        if not await self._is_view(mailbox):
            self._view = None
            return await self.inner.select(mailbox, readonly, qresync)
        snap = await self.snapshot()
        lay = self.state.layout
        assert lay is not None
        sel = await self.inner.select(lay.all_mail, readonly=True)
        if sel.uidvalidity != snap.uidvalidity:
            raise FolderVanished(f"{lay.all_mail} changed UIDVALIDITY during the run")
        self._view = mailbox
        # The snapshot's state, not the live one: a message that arrived since is the next run's.
        return dataclasses.replace(
            sel, exists=snap.counts[mailbox], uidnext=snap.uidnext, highestmodseq=snap.highestmodseq
        )

    # --------------------------------------------------------------- messages
    def _keep(self, m: MessageMeta) -> MessageMeta | None:
        snap = self.state.snapshot
        if self._view is None or snap is None:
            return m
        if not snap.holds(self._view, m.uid):
            return None
        return dataclasses.replace(m, flags=with_extra(m.flags, snap.extra_flags(m.uid)))

    async def fetch_meta(
        self,
        uid_set: str,
        *,
        changedsince: int | None = None,
        with_message_id: bool = True,
        on_meta: Callable[[MessageMeta], None] | None = None,
    ) -> list[MessageMeta]:
        out: list[MessageMeta] = []

        def each(m: MessageMeta) -> None:
            kept = self._keep(m)
            if kept is not None:
                (on_meta or out.append)(kept)

        await self.inner.fetch_meta(
            uid_set, changedsince=changedsince, with_message_id=with_message_id, on_meta=each
        )
        return out

    async def fetch_bodies(self, uids: Sequence[int]) -> dict[int, Literal]:
        """Bodies to copy; in a view, none at or below the floor: such a message was placed by an earlier
        run, and is in this view now only because its labels changed since (the engine skips a message
        whose body does not come, as one expunged meanwhile)."""
        if self._view is not None:
            uids = [u for u in uids if u > self.state.floor]
        return await self.inner.fetch_bodies(uids)

    async def uid_count(self, uid_set: str) -> int:
        snap = self.state.snapshot
        if self._view is None or snap is None:
            return await self.inner.uid_count(uid_set)
        return snap.count(self._view, uid_set)

    async def search_message_id(self, message_id: str) -> list[int]:
        uids = await self.inner.search_message_id(message_id)
        snap = self.state.snapshot
        if self._view is None or snap is None:
            return uids
        return [u for u in uids if snap.holds(self._view, u)]


@dataclass
class GmailConnector(Connector):
    """A source Connector whose connections show Gmail's views (when the server is Gmail)."""

    state: GmailState = field(default_factory=GmailState)

    async def open(self) -> ImapClient:
        client = await super().open()
        if self.endpoint.provider == "gmail" and client.has("X-GM-EXT-1"):
            return cast(ImapClient, GmailSource(client, self.state))
        return client


def gmail_connector(c: Connector, checkpoints: Mapping[str, FolderCheckpoint] | None = None) -> Connector:
    """The source connector of one run, Gmail-aware (``c`` itself for other providers). ``checkpoints``:
    the MailboxSync's after a clean finish, by folder name (none after an interruption, and for verify)."""
    if c.endpoint.provider != "gmail":
        return c
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    return GmailConnector(**fields, state=GmailState(checkpoints=dict(checkpoints or {})))


def is_gmail_views(client: ImapClient) -> bool:
    """Whether the engine sees Gmail views on this source connection (not real folders)."""
    return isinstance(client, GmailSource) and client.state.layout is not None


__all__ = ["GmailConnector", "GmailSource", "GmailState", "gmail_connector", "is_gmail_views", "read_labels"]
