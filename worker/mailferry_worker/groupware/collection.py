"""One round of one address book or calendar: observe the source (sync token or ETag listing), plan
(plan.py), apply (multiget from the source, PUT/DELETE on the destination), checkpoint after each chunk.

The sync token is committed only after everything it covers is on the destination, so a worker killed
anywhere re-does at most the chunk it was in (an idempotent PUT to the same name: nothing duplicated,
nothing lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailferry_api.groupware import CollectionCheckpoint, Groupware, ItemError

from . import items as it
from .cloud import Destination, Source
from .dav import Collection, DavClient, DavError, Item, SyncTokenInvalid
from .plan import (
    Plan,
    destination_name,
    etag_digest,
    plan_by_content,
    plan_delta,
    plan_first_copy,
    token_unchanged,
)
from .protocol import SUFFIX

CHUNK = 50
PUT_CONCURRENCY = 4
PERMANENT_ITEM_REASONS = {"UidConflict", "ItemTooLarge", "DavRequestRejected", "ComponentNotSupported"}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class CollectionSync:
    src: Source
    dst: Destination
    source: Collection
    dest: Collection
    ckpt: CollectionCheckpoint
    options: Groupware
    save: Callable[[], Awaitable[None]]
    force_etag: bool = False
    errors: list[ItemError] = field(default_factory=list)
    noop: bool = False

    @property
    def kind(self) -> it.CollectionKind:
        return self.source.kind

    def dest_url(self, source_name: str) -> str:
        return self.dst.member_url(self.dest.url, destination_name(source_name, SUFFIX[self.kind]))

    async def run(self) -> None:
        self.ckpt.last_error = None
        if isinstance(self.src, DavClient) and (self.force_etag or not self.source.supports_sync):
            self.ckpt.mode = "etag"
            await self._by_etag(self.src)
        else:
            self.ckpt.mode = "syncToken"
            await self._by_token()

    # ------------------------------------------------------------------ sync-token mode

    async def _by_token(self) -> None:
        c = self.ckpt
        if token_unchanged(c, self.source.sync_token, self.force_etag):
            self.noop = True  # the collection's DAV:sync-token (from the home listing) did not move
            return
        plan: Plan
        if c.sync_token:
            try:
                plan = plan_delta(
                    await self.src.changes(self.source.url, c.sync_token), self.options.max_deletes_per_round
                )
            except SyncTokenInvalid:
                c.sync_token = None  # the server forgot it: list everything again (PUTs are idempotent)
                return await self._by_token()
        else:
            members = await self.src.changes(self.source.url, None)
            since = None
            if c.pending_token and c.resume_after is not None:
                try:
                    since = await self.src.changes(self.source.url, c.pending_token)
                except SyncTokenInvalid:
                    c.resume_after = None
            plan = plan_first_copy(members, c, since)
            c.items = len(members.changed)
            c.pending_token = plan.commit_token
        if plan.over_delete_cap:
            c.last_error = (
                f"{len(plan.delete)} deletions exceed "
                f"maxDeletesPerRound={self.options.max_deletes_per_round}; "
                "nothing deleted, raise the cap to carry them"
            )
            raise DavError(c.last_error, "TooManyDeletions")
        c.pending = len(plan.copy) + len(plan.delete)
        await self._copy(plan.copy, track_resume=plan.first_copy)
        await self._delete(plan.delete)
        c.sync_token, c.pending_token, c.resume_after = plan.commit_token, None, None
        c.pending, c.last_sync_time = 0, now()

    # ------------------------------------------------------------------ ETag mode

    async def _by_etag(self, src: DavClient) -> None:
        c = self.ckpt
        listing = await src.listing(self.source.url)
        digest = etag_digest(listing)
        if c.etag_digest == digest:
            self.noop = True
            return
        src_fp = await self._fingerprints(src, self.source.url, list(listing))
        dst_fp = (  # a cloud destination re-writes every item of a changed listing (found by name: no double)
            await self._fingerprints(
                self.dst, self.dest.url, [destination_name(n, SUFFIX[self.kind]) for n in listing]
            )
            if isinstance(self.dst, DavClient)
            else {}
        )
        by_dest = {n: dst_fp.get(destination_name(n, SUFFIX[self.kind])) for n in listing}
        todo = plan_by_content(
            {n: fp for n, fp in src_fp.items()}, {n: fp for n, fp in by_dest.items() if fp}
        )
        c.items, c.pending = len(listing), len(todo)
        await self._copy(todo, track_resume=False)
        c.etag_digest, c.pending, c.last_sync_time = digest, 0, now()

    async def _fingerprints(self, client: DavClient, url: str, names: list[str]) -> dict[str, str]:
        out = {}
        for name, item in (await client.fetch(self.kind, url, names)).items():
            try:
                out[name] = it.facts(self.kind, item.data).fingerprint
            except it.BadItem:
                out[name] = "unparsable:" + (item.etag or "")
        return out

    # ------------------------------------------------------------------ apply

    async def _copy(self, names: list[str], track_resume: bool) -> None:
        chunks = [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
        # The next chunk is read from the source while this one is written to the destination (two
        # servers: the reads cost no wall time); the checkpoint still moves one whole chunk at a time.
        ahead: asyncio.Task[dict[str, Item]] | None = None
        try:
            for n, chunk in enumerate(chunks):
                fetched = await (ahead or self.src.fetch(self.kind, self.source.url, chunk))
                ahead = (
                    asyncio.create_task(self.src.fetch(self.kind, self.source.url, chunks[n + 1]))
                    if n + 1 < len(chunks)
                    else None
                )
                await self._put_chunk(chunk, fetched)
                if track_resume:
                    self.ckpt.resume_after = chunk[-1]
                self.ckpt.pending = max(0, self.ckpt.pending - len(chunk))
                await self.save()
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead

    async def _put_chunk(self, chunk: list[str], fetched: dict[str, Item]) -> None:
        # Items missing from `fetched` were deleted on the source since the listing: the next round's
        # token says so. PUTs overlap (parsing here, storing there); a chunk ends whole.
        lanes = asyncio.Semaphore(PUT_CONCURRENCY)
        try:
            async with asyncio.TaskGroup() as tg:
                for name in chunk:
                    if name in fetched:
                        tg.create_task(self._put_in(lanes, name, fetched[name].data))
        except ExceptionGroup as group:  # a failed write: the runner wants the problem, not the group
            raise group.exceptions[0] from None

    async def _put_in(self, lanes: asyncio.Semaphore, name: str, data: str) -> None:
        async with lanes:
            await self._put(name, data)

    async def _put(self, name: str, data: str) -> None:
        c = self.ckpt
        try:
            facts = it.shape(self.kind, data)  # the copy needs UID and components, not a full parse
        except it.BadItem as exc:
            return self._item_error(name, None, "BadItem", str(exc))
        why = it.unsupported(
            self.kind, facts, len(data.encode()), self.dest.components, self.options.max_item_bytes
        )
        if why:
            c.unsupported += 1
            return self._item_error(name, facts.uid, why, f"the destination cannot hold this item ({why})")
        url = self.dest_url(name)
        try:
            created = await self.dst.put(self.kind, url, data)
        except DavError as exc:
            if exc.transient and self._unparsable(name, facts.uid, data):
                return  # a server that answers 5xx to content it cannot read: the item, not the server
            if exc.transient or exc.reason not in PERMANENT_ITEM_REASONS:
                raise
            if exc.reason == "ComponentNotSupported":
                c.unsupported += 1
            else:
                c.failed += 1
            return self._item_error(name, facts.uid, exc.reason, exc.message)
        except ValueError as exc:  # a cloud side's mapping could not read what items.shape accepted
            c.failed += 1
            return self._item_error(name, facts.uid, "BadItem", f"{type(exc).__name__}: {str(exc)[:300]}")
        c.copied += 1
        lost = self.dst.take_lost(url) if hasattr(self.dst, "take_lost") else []
        if lost:  # copied, but not whole: say what the destination could not hold, per item
            self._item_error(
                name, facts.uid, "PartiallyCopied", "not held by the destination: " + "; ".join(lost)
            )
        if created and c.mode == "syncToken" and c.sync_token:
            c.items += 1  # a delta's new item (a first copy and ETag mode count the listing)

    def _unparsable(self, name: str, uid: str | None, data: str) -> bool:
        """The full parse, only after a failed write (the copy path scans, items.shape): True, with the
        per-item error, when the item itself is broken."""
        try:
            it.facts(self.kind, data)
        except it.BadItem as exc:
            self.ckpt.failed += 1
            self._item_error(name, uid, "BadItem", str(exc))
            return True
        return False

    async def _delete(self, names: list[str]) -> None:
        for name in names:
            if await self.dst.delete(self.dest_url(name)):
                self.ckpt.deleted += 1
                self.ckpt.items = max(0, self.ckpt.items - 1)
        if names:
            await self.save()

    def _item_error(self, name: str, uid: str | None, reason: str, message: str) -> None:
        self.errors.append(
            ItemError(
                collection=self.ckpt.name, item=(uid or name)[:512], reason=reason, message=message[:1024]
            )
        )
