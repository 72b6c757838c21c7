"""The bulk copy loop of one folder: fetch chunk k+1 from the source while chunk k is appended
(MULTIAPPEND pipelined where the destination allows it), isolate what the destination refuses, and
move the checkpoint past each chunk the destination confirmed."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from mailferry_imap.client import AppendItem, AppendPipeline, MessageMeta
from mailferry_imap.errors import CommandFailed, ConnectionLost
from mailferry_imap.parser import Literal, Spool

from ..plan import appendable_flags, chunks
from .folderstate import FolderState

CHUNK_MESSAGES = 100
CHUNK_BYTES = 4 << 20
PIPELINE_DEPTH = 1  # MULTIAPPENDs outstanding while the next one streams


class BulkCopy(FolderState):
    """The copy loop: chunks streamed from the source into (MULTI)APPENDs, checkpointed in order."""

    async def _copy(self, copy: list[MessageMeta], permanent: set[str], max_uid: int) -> None:
        """Fetch chunk k+1 from the source while chunk k is appended; checkpoint after each chunk."""
        batches = chunks(copy, CHUNK_MESSAGES, CHUNK_BYTES)
        queue: asyncio.Queue[tuple[list[MessageMeta], dict[int, Literal]] | None] = asyncio.Queue(maxsize=1)
        stop = asyncio.Event()

        async def produce() -> None:
            for batch in batches:
                if stop.is_set():
                    return
                if self.pacer is not None:
                    await self.pacer.admit(sum(m.size for m in batch), len(batch))
                bodies = await self.src.fetch_bodies([m.uid for m in batch])
                if stop.is_set():
                    _close_bodies(bodies)
                    return
                await queue.put((batch, bodies))
            if not stop.is_set():
                await queue.put(None)

        producer = asyncio.create_task(produce())
        try:
            idx = 0
            # Chunks sent, oldest first; results are taken in that order, so the checkpoint only ever
            # passes chunks the destination confirmed (a contiguous prefix of the copy).
            inflight: deque[_InFlight] = deque()

            async def settle_oldest(pipe: AppendPipeline) -> None:
                nonlocal idx
                entry = inflight.popleft()
                try:
                    await self._settle(pipe, entry, inflight)
                finally:
                    _close_bodies(entry.bodies)
                idx += 1
                nxt = batches[idx][0].uid - 1 if idx < len(batches) else max_uid
                self._advance(nxt)
                self.ckpt.pending = max(0, self.ckpt.pending - len(entry.batch))
                await self.checkpoint()

            async with self.dst.append_pipeline(self.plan.destination) as pipe:
                try:
                    while True:
                        item = await _next_item(queue, producer)
                        if item is None:
                            break
                        batch, bodies = item
                        entry = _InFlight(batch, bodies, self._append_items(batch, bodies, permanent))
                        inflight.append(entry)
                        if entry.items and self.dst.can_pipeline_append([it for _, it in entry.items]):
                            # The next chunk's literals stream while the previous chunk is outstanding.
                            entry.tag = await pipe.send([it for _, it in entry.items])
                            while len(inflight) > PIPELINE_DEPTH:
                                await settle_oldest(pipe)
                        else:
                            while inflight:
                                await settle_oldest(pipe)
                    while inflight:
                        await settle_oldest(pipe)
                finally:
                    for left in inflight:
                        _close_bodies(left.bodies)
        finally:
            # Stop the producer for sure: a cancel can be lost (it may be blocked in queue.put on a
            # full queue nobody drains), so drain and re-cancel until it is done.
            stop.set()
            for _ in range(120):
                if producer.done():
                    break
                producer.cancel()
                _drain(queue)
                await asyncio.wait({producer}, timeout=0.5)
            _drain(queue)
            if producer.done() and not producer.cancelled():
                producer.exception()  # retrieved: no "exception never retrieved" warning

    def _append_items(
        self, batch: list[MessageMeta], bodies: dict[int, Literal], permanent: set[str]
    ) -> list[tuple[MessageMeta, AppendItem]]:
        items: list[tuple[MessageMeta, AppendItem]] = []
        for m in batch:
            body = bodies.get(m.uid)
            if body is None:  # expunged on the source since the metadata fetch
                continue
            keep, rejected = appendable_flags(m.flags, permanent)
            self.stats.flag_errors += len(rejected)
            self._pending.flag_errors += len(rejected)
            self._pending.refused_keywords.update(f for f in rejected if not f.startswith("\\"))
            items.append((m, AppendItem(body, keep, m.internaldate or None)))
        return items

    async def _settle(self, pipe: AppendPipeline, entry: _InFlight, later: deque[_InFlight]) -> None:
        """Take the outcome of ``entry`` (sent, or appended now when it could not be pipelined)."""
        items = entry.items
        if not items:
            return
        if entry.done:  # taken early, when an earlier chunk failed
            self._count(items, entry.got)
            return
        if entry.tag is None and len(items) > 1 and not self.dst.has("MULTIAPPEND"):
            # One APPEND per message: a refusal in the middle leaves the earlier ones stored.
            landed: list[int] = []
            for pair in items:
                try:
                    got = await pipe.append_now([pair[1]])
                    self._count([pair], got)
                    landed += got or []
                except CommandFailed as exc:
                    self._in_order = False
                    await self._append_one_fallback(pipe, pair, exc)
            self._raise_floor(landed, items, entry.batch[-1].uid)
            return
        try:
            if entry.failed is not None:
                raise entry.failed
            if entry.tag is not None:
                got = await pipe.result(entry.tag)
            else:
                got = await pipe.append_now([it for _, it in items])
            self._count(items, got)
            self._raise_floor(got, items, entry.batch[-1].uid)
            return
        except CommandFailed as exc:
            self._in_order = False  # what lands from here on may land out of source order
            # The later chunks are on the wire already: read their outcomes before appending again.
            for e in later:
                if e.tag is not None and e.failed is None:
                    try:
                        e.got = await pipe.result(e.tag)
                    except CommandFailed as exc2:
                        e.failed = exc2
                    e.tag = None
                    e.done = e.failed is None
            if len(items) == 1:
                await self._append_one_fallback(pipe, items[0], exc)
                return
            self.log("multiappend_rejected", folder=self.plan.source, error=exc.message[:200])
        # MULTIAPPEND is atomic: nothing was stored. Isolate the message the server refuses.
        for pair in items:
            try:
                self._count([pair], await pipe.append_now([pair[1]]))
            except CommandFailed as exc:
                await self._append_one_fallback(pipe, pair, exc)

    async def _append_one_fallback(
        self, pipe: AppendPipeline, pair: tuple[MessageMeta, AppendItem], exc: CommandFailed
    ) -> None:
        m, item = pair
        if item.flags:
            try:  # the server may refuse a flag/keyword: store the message without them
                got = await pipe.append_now([AppendItem(item.data, (), item.internaldate)])
                self.stats.flag_errors += len(item.flags)
                self._pending.flag_errors += len(item.flags)
                self._count([pair], got)
                return
            except CommandFailed as exc2:
                exc = exc2
        self.stats.failed += 1
        self._pending.failed += 1
        self._pending.skipped["AppendRejected"] += 1
        self.log("append_rejected", folder=self.plan.source, uid=m.uid, size=m.size, error=exc.message[:200])


@dataclass
class _InFlight:
    """One chunk on its way to the destination."""

    batch: list[MessageMeta]
    bodies: dict[int, Literal]
    items: list[tuple[MessageMeta, AppendItem]]
    tag: bytes | None = None  # its pipelined command, until its result is taken
    failed: CommandFailed | None = None  # its result, when taken early (an earlier chunk failed)
    done: bool = False  # its result, when taken early: it succeeded
    got: list[int] | None = None  # its APPENDUID, when taken early


def _close_bodies(bodies: dict[int, Literal]) -> None:
    for lit in bodies.values():
        if isinstance(lit, Spool):
            lit.close()


def _drain(queue: asyncio.Queue[tuple[list[MessageMeta], dict[int, Literal]] | None]) -> None:
    while not queue.empty():
        leftover = queue.get_nowait()
        if leftover:
            _close_bodies(leftover[1])


async def _next_item(
    queue: asyncio.Queue[tuple[list[MessageMeta], dict[int, Literal]] | None], producer: asyncio.Task[None]
) -> tuple[list[MessageMeta], dict[int, Literal]] | None:
    """The next queued chunk, or the producer's error if it failed before queueing one."""
    get: asyncio.Task[tuple[list[MessageMeta], dict[int, Literal]] | None] = asyncio.create_task(queue.get())
    try:
        await asyncio.wait({get, producer}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        get.cancel()
        raise
    if not get.done():
        get.cancel()
        try:
            return await get  # it may have taken an item just before the cancel
        except asyncio.CancelledError:
            pass
        if not queue.empty():
            return queue.get_nowait()
        producer.result()  # raises the producer's error
        # Never treat this as the end: advancing the checkpoint past chunks not appended would lose them.
        raise ConnectionLost("source fetch ended without its end marker")
    return get.result()
