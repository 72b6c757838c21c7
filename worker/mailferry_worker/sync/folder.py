"""Copy one source folder to its destination folder: bulk, then delta, crash-safe, with checkpoints."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailferry_api.imap import SyncOptions
from mailferry_api.mailboxsync import MAX_OWNED_CHARS, MAX_REFUSED_KEYWORDS, FolderCheckpoint
from mailferry_imap.client import (
    AppendItem,
    AppendPipeline,
    ImapClient,
    MessageMeta,
    SelectInfo,
    compress_uids,
    parse_internaldate,
)
from mailferry_imap.errors import CommandFailed, ConnectionLost, DestinationChanged, FolderVanished
from mailferry_imap.parser import Literal, Spool

from ..mirrorplan import UidRanges
from ..plan import (
    Decision,
    DestFloor,
    FolderPlan,
    Rematch,
    appendable_flags,
    chunks,
    decide,
    flag_updates,
    floor_after_append,
    floor_after_match,
    floor_at_end,
    folder_unchanged,
    needs_hash,
    rematch_scope,
)
from .pacing import Pacer

CHUNK_MESSAGES = 100
CHUNK_BYTES = 4 << 20
PIPELINE_DEPTH = 1  # MULTIAPPENDs outstanding while the next one streams
META_RANGE = 20000  # metadata is fetched in UID windows of this many UIDs
WINDOW_FIRST = 500  # above the checkpoint: the first window of source UIDs matched and copied ...
WINDOW_MAX = 8000  # ... doubling up to this


@dataclass
class MailboxCounters:
    """Mailbox-wide counters that status carries (skipReasons, flagErrors), shared by the folders."""

    skips: Counter[str] = field(default_factory=Counter)
    flag_errors: int = 0


@dataclass
class FolderStats:
    """What happened to one folder in this run (the checkpoint keeps the cumulative numbers)."""

    copied: int = 0
    bytes: int = 0
    present: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    flag_errors: int = 0
    refused_keywords: set[str] = field(default_factory=set)
    flags_updated: int = 0
    unchanged: bool = False
    full_match: bool = False


def _hash_literal(lit: Literal) -> str:
    h = hashlib.sha256()
    if isinstance(lit, Spool):
        lit.file.seek(0)
        while chunk := lit.file.read(1 << 20):
            h.update(chunk)
    else:
        h.update(lit)
    return h.hexdigest()


async def content_hashes(client: ImapClient, uids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for i in range(0, len(uids), 50):
        bodies = await client.fetch_bodies(uids[i : i + 50])
        for uid, lit in bodies.items():
            out[uid] = _hash_literal(lit)
            if isinstance(lit, Spool):
                lit.close()
    return out


async def hashes_for_pairing(
    src: ImapClient, dst: ImapClient, smeta: Sequence[MessageMeta], dmeta: Sequence[MessageMeta]
) -> tuple[dict[int, str], dict[int, str]]:
    """Content hashes (source, destination) of the messages without Message-ID that identity needs to
    tell apart (a size on both sides); each client has its folder selected."""
    s_need, d_need = needs_hash(smeta, dmeta)
    s_hash = await content_hashes(src, s_need) if s_need else {}
    d_hash = await content_hashes(dst, d_need) if d_need else {}
    return s_hash, d_hash


async def fetch_all_meta(
    client: ImapClient, exists: int, uidnext: int | None, low: int = 1, *, message_id: bool = True
) -> list[MessageMeta]:
    """Metadata of every message with UID >= low, in UID windows (bounded response sizes).

    ``message_id`` False: without the Message-ID header (nothing to match against: cheaper for both)."""
    if exists == 0:
        return []
    top = uidnext - 1 if uidnext else None
    if top is None:
        return [m for m in await client.fetch_meta(f"{low}:*", with_message_id=message_id) if m.uid >= low]
    out: list[MessageMeta] = []
    start = low
    while start <= top:
        end = start + META_RANGE - 1
        rng = f"{start}:{end}" if end < top else f"{start}:*"
        out += [m for m in await client.fetch_meta(rng, with_message_id=message_id) if m.uid >= start]
        if end >= top:
            break
        start = end + 1
    return out


class FolderSync:
    def __init__(
        self,
        src: ImapClient,
        dst: ImapClient,
        plan: FolderPlan,
        ckpt: FolderCheckpoint,
        options: SyncOptions,
        *,
        full_match: bool,
        checkpoint: Callable[[], Awaitable[None]],
        dest_exists: Callable[[str], bool],
        dest_created: Callable[[str], None],
        log: Callable[..., None],
        counters: MailboxCounters | None = None,
        placed: dict[int, int] | None = None,
        mirror_look: SelectInfo | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.pacer = pacer  # the mailbox's budgets (bytes/day, messages/s), shared by its connections
        # The mirror pass's SELECT of the source folder: the checkpoint's HIGHESTMODSEQ and message count
        # are taken as of that look, so whatever changed after it (expunges included) is looked at again.
        self.mirror_look = mirror_look
        self._arrived = 0  # source messages this run saw with UIDs from the look's UIDNEXT up
        # {source UID: destination UID} of messages the mirror pass moved into this folder this run.
        self.placed = placed or {}
        # The newest destination floor this run knows; the checkpoint takes it (floorUid, destUidNext,
        # destUidValidity) once lastUid reaches floorUid. A floor stays true for good (it describes the
        # destination, and every later message there gets a higher UID): the checkpoint keeps the one
        # it has until then.
        self._floor: DestFloor | None = None
        # Destination UIDs from the old floor up not paired with a source message yet (an interrupted
        # run's appends, or mail delivered there): while any is left no new floor can be set.
        self._uncertain: set[int] = set()
        self._present_max = 0  # highest source UID found on the destination by this run's match
        self._appended = False  # this run sent an APPEND (a floor from the match would be too late)
        self._in_order = True  # chunks landed in send order (APPENDUID can raise the floor)
        self._dest_uv = 0
        self._dest_exists = 0
        self._dest_uidnext: int | None = None
        # The destination UID this run's next APPEND should get, and UID ranges that others took in
        # between (messages that became visible only after this run looked: checked after the copy).
        self._expect_next: int | None = None
        self._gaps: list[tuple[int, int, list[int]]] = []
        self._dest_top = 0  # highest destination UID this run's APPENDs got (APPENDUID)
        # mailferry's own copies in the destination folder (ckpt.owned): what deletions may ever remove.
        self._owned = UidRanges()
        self._adopt = False  # matched pairs are earlier runs' copies (not the folder's first sync)
        self.counters = counters or MailboxCounters()
        self._present: dict[int, int] = {}
        self._skipped: dict[int, str] = {}
        self._pending = FolderStats()
        self.src = src
        self.dst = dst
        self.plan = plan
        self.ckpt = ckpt
        self.options = options
        self.full_match = full_match
        self.checkpoint = checkpoint
        self.dest_exists = dest_exists
        self.dest_created = dest_created
        self.log = log
        self.stats = FolderStats()

    async def run(self) -> FolderStats:
        ck = self.ckpt
        st = await self.src.status(self.plan.source)
        if not self.full_match and folder_unchanged(ck, st):
            self.stats.unchanged = True
            ck.pending = 0
            return self.stats
        sel = await self.src.select(self.plan.source, readonly=True)
        ck.messages = sel.exists  # totals.messages: the MailMigration's expectedMessages and progress
        await self._ensure_destination()
        dsel = await self.dst.select(self.plan.destination)
        uv_changed = ck.uid_validity is not None and ck.uid_validity != sel.uidvalidity
        first = ck.uid_validity is None
        if ck.owned_uid_validity != dsel.uidvalidity or ck.destination != self.plan.destination:
            ck.owned, ck.owned_uid_validity = None, dsel.uidvalidity  # earlier copies: unknown, kept
        self._owned = UidRanges(ck.owned)
        # On a folder's first sync, what matches was on the destination before mailferry: not its copy.
        self._adopt = not first
        full = self.full_match or first or uv_changed or self.options.skip_duplicates
        self.stats.full_match = full
        scope = rematch_scope(
            ck,
            destination=self.plan.destination,
            source_uidvalidity=sel.uidvalidity,
            dest_uidvalidity=dsel.uidvalidity,
            skip_duplicates=self.options.skip_duplicates,
        )
        partial = full and scope.partial
        base = 0 if (first or uv_changed) else ck.last_uid
        # From here until the run ends the folder is unfinished: no STATUS can call it unchanged.
        ck.uid_next = None
        if uv_changed:
            self.log("uidvalidity_changed", folder=self.plan.source, old=ck.uid_validity, new=sel.uidvalidity)
            ck.copied = ck.skipped = ck.failed = ck.bytes = 0
        if first or uv_changed:
            ck.last_uid = 0
            ck.highest_mod_seq = None
        if full and not partial:
            # The recorded floor may belong to another destination folder / UIDVALIDITY or an older
            # lastUid: forget it until this match sets a new one (a full re-match after a restart).
            ck.dest_uid_validity = ck.dest_uid_next = ck.floor_uid = None
        ck.destination = self.plan.destination
        self._dest_uv = dsel.uidvalidity
        self._dest_exists = dsel.exists
        self._dest_uidnext = dsel.uidnext
        self._expect_next = dsel.uidnext

        if full and not partial:
            max_uid = await self._match_whole(sel, dsel, base)
        else:
            max_uid = await self._windows(sel, dsel, base, scope if partial else None)
        self._floor = (
            floor_at_end(
                max_uid, dsel.uidvalidity, dsel.uidnext, self._dest_top, self._appended, self._in_order
            )
            or self._floor
        )
        self._advance(max_uid)
        ck.uid_next = sel.uidnext
        look = self.mirror_look
        ck.synced_messages = look.exists + self._arrived if look is not None and look.uidnext else sel.exists
        if not full:  # a clean delta compared the flags changed since the last modseq
            ck.highest_mod_seq = self._capped(sel.highestmodseq)
        ck.pending = 0
        ck.last_sync_time = datetime.now(UTC).replace(microsecond=0)
        await self.checkpoint()
        return self.stats

    async def _match_whole(self, sel: SelectInfo, dsel: SelectInfo, base: int) -> int:
        """Match the whole source folder against the whole destination folder, then copy what is missing.

        The first run, a recreated folder, a status without a destination floor, skipDuplicates."""
        ck = self.ckpt
        # An empty destination folder: nothing to pair, no Message-ID needed (unless skipDuplicates
        # compares the source's own Message-IDs).
        need_ids = dsel.exists > 0 or self.options.skip_duplicates
        smeta = await fetch_all_meta(self.src, sel.exists, sel.uidnext, message_id=need_ids)
        self._count_arrived(smeta)
        dmeta = await fetch_all_meta(self.dst, dsel.exists, dsel.uidnext)
        if self.full_match:
            self.log(
                "rematch",
                folder=self.plan.source,
                partial=False,
                source_from=1,
                dest_from=1,
                source_meta=len(smeta),
                dest_meta=len(dmeta),
            )
        dec = await self._decide(smeta, dmeta, {})
        await self._apply_flags(dec.present, dsel.permanentflags)
        # Every destination flag is now the source's as of this SELECT: a later delta looks at changes
        # since then.
        ck.highest_mod_seq = self._capped(sel.highestmodseq)
        self._note(dec, base)
        ck.uid_validity = sel.uidvalidity
        max_uid = max([base, *(m.uid for m in smeta)])
        first_copy = dec.copy[0].uid if dec.copy else None
        self._floor = floor_after_match(
            first_copy, max_uid, self._present_max, dsel.uidvalidity, dsel.uidnext
        )
        await self._copy_window(dec.copy, dsel.permanentflags, max_uid, 0)
        return max_uid

    async def _windows(self, sel: SelectInfo, dsel: SelectInfo, base: int, scope: Rematch | None) -> int:
        """Go through the source above the checkpoint in UID windows: metadata, match, copy, checkpoint.

        ``scope`` set (an interrupted run): source UIDs above the floor are matched, window by window,
        against the destination from the floor up; only those above ``lastUid`` are copied. None (a
        clean delta): nothing above the checkpoint is on the destination yet. The work of a restart is
        proportional to what is near the checkpoint, not to the folder.
        """
        ck = self.ckpt
        ck.uid_validity = sel.uidvalidity
        pool: list[MessageMeta] | None = None
        d_hash: dict[int, str] = {}
        if scope is not None:
            pool = await fetch_all_meta(self.dst, dsel.exists, dsel.uidnext, low=scope.dest_low)
            self._uncertain = {m.uid for m in pool}
            self.log(
                "rematch",
                folder=self.plan.source,
                partial=True,
                source_from=scope.source_low,
                dest_from=scope.dest_low,
                dest_meta=len(pool),
            )
        else:
            self._floor = floor_after_match(None, base, 0, dsel.uidvalidity, dsel.uidnext)
            await self._delta_flags(sel.highestmodseq, base, dsel.permanentflags, dsel.exists, dsel.uidnext)
        top = sel.uidnext - 1 if sel.uidnext else None
        lo = scope.source_low if scope is not None else base + 1
        width, seen, end = WINDOW_FIRST, 0, max(base, top or 0)
        while sel.exists and (top is None or lo <= top):
            hi = min(lo + width - 1, top) if top is not None else None
            rng = f"{lo}:{hi}" if hi is not None else f"{lo}:*"
            got = await self.src.fetch_meta(rng, with_message_id=bool(pool))
            smeta = [m for m in got if m.uid >= lo and (hi is None or m.uid <= hi)]
            end = hi if hi is not None else max([lo - 1, *(m.uid for m in smeta)])
            seen += len(smeta)
            self._count_arrived(smeta)
            if pool is not None:
                dec = await self._decide(smeta, pool, d_hash)
                paired = {d.uid for _, d in dec.present}
                pool = [d for d in pool if d.uid not in paired]
                self._uncertain -= paired
                await self._apply_flags(dec.present, dsel.permanentflags)
            else:
                dec = self._with_placed(decide(smeta, None, self.options))
            self._note(dec, base)
            # At or below lastUid everything is done: the match only pairs them (so that a message
            # twice in the folder is not paired with the copy of its twin).
            copy = [m for m in dec.copy if m.uid > base]
            if pool is not None and not self._uncertain and not self._appended:
                first_copy = copy[0].uid if copy else None
                self._floor = floor_after_match(
                    first_copy, end, self._present_max, dsel.uidvalidity, dsel.uidnext
                )
            later = max(0, min((top or end) - end, sel.exists - seen))
            await self._copy_window(copy, dsel.permanentflags, max(end, base), later)
            if top is None:
                break
            lo, width = end + 1, min(width * 2, WINDOW_MAX)
        return max(end, base)

    async def _check_unchanged(self, copy: Sequence[MessageMeta]) -> None:
        """After an interruption: nothing about to be copied may have reached the destination since this
        match's SELECT.

        A server may commit an APPEND of the lost connection late, after this run looked; copying then
        would duplicate it. Messages that arrived meanwhile and look like one to copy (same Message-ID
        and size, or same size and INTERNALDATE) mean: match again (DestinationChanged). Mail delivered
        to the destination folder meanwhile does not stop the copy.
        """
        now = await self.dst.exists_now()
        if now is None or now == self._dest_exists:
            return
        low = self._dest_uidnext or 1
        arrived = [m for m in await self.dst.fetch_meta(f"{low}:*") if m.uid >= low]
        seen: set[tuple[str, ...]] = set().union(*(_loose_identity(m) for m in arrived))
        if any(_loose_identity(m) & seen for m in copy):
            raise DestinationChanged(
                f"destination folder {self.plan.destination} got {len(arrived)} message(s) during the "
                "re-match, some like those to copy"
            )

    async def _remove_late_twins(self) -> None:
        """Messages that took destination UIDs between this run's look and its APPENDs (an interrupted
        run's APPEND the server showed late): where one is the same message as one this run just
        appended (Message-ID and size, or the same content), remove this run's copy (UID EXPUNGE of
        exactly that UID), so the destination holds it once."""
        gaps, self._gaps = self._gaps, []
        if not self.dst.has("UIDPLUS"):
            self.log("late_twins_unchecked", level="warning", folder=self.plan.source, ranges=len(gaps))
            return
        remove: list[int] = []
        for lo, hi, ours in gaps:
            others = [m for m in await self.dst.fetch_meta(f"{lo}:{hi}") if lo <= m.uid <= hi]
            if not others:
                continue
            mine = await self.dst.fetch_meta(compress_uids(ours))
            o_need, m_need = needs_hash(others, mine)
            hashes = await content_hashes(self.dst, o_need + m_need) if o_need or m_need else {}
            dec = decide(mine, others, SyncOptions(), source_hashes=hashes, dest_hashes=hashes)
            remove += [m.uid for m, _ in dec.present]
        if remove:
            await self.dst.store_flags(remove, ["\\Deleted"], mode="+FLAGS")
            await self.dst.uid_expunge(remove)
            self._owned.remove(remove)
            self._store_owned()
            self.log("late_twins_removed", level="warning", folder=self.plan.source, count=len(remove))

    async def _decide(
        self, smeta: list[MessageMeta], dmeta: list[MessageMeta], d_hash: dict[int, str]
    ) -> Decision:
        s_need, d_need = needs_hash(smeta, dmeta)
        s_hash = await content_hashes(self.src, s_need) if s_need else {}
        d_need = [u for u in d_need if u not in d_hash]
        if d_need:
            d_hash.update(await content_hashes(self.dst, d_need))
        return decide(smeta, dmeta, self.options, source_hashes=s_hash, dest_hashes=d_hash)

    def _capped(self, modseq: int | None) -> int | None:
        cap = self.mirror_look.highestmodseq if self.mirror_look is not None else None
        return modseq if modseq is None or cap is None else min(modseq, cap)

    def _count_arrived(self, smeta: Sequence[MessageMeta]) -> None:
        if self.mirror_look is not None and self.mirror_look.uidnext:
            self._arrived += sum(1 for m in smeta if m.uid >= self.mirror_look.uidnext)

    def _with_placed(self, dec: Decision) -> Decision:
        """Messages the mirror pass moved here (the source moved them) are present, not to copy."""
        if not self.placed:
            return dec
        moved = [m for m in dec.copy if m.uid in self.placed]
        dec.copy = [m for m in dec.copy if m.uid not in self.placed]
        dec.present += [(m, dataclasses.replace(m, uid=self.placed[m.uid])) for m in moved]
        return dec

    def _note(self, dec: Decision, base: int) -> None:
        """Remember what the checkpoint counts when it passes them (messages an interrupted run appended
        count as copied)."""
        self._present_max = max([self._present_max, *(s.uid for s, _ in dec.present)])
        if self._adopt:
            self.own([d.uid for _, d in dec.present])
        present = {s.uid: s.size for s, _ in dec.present if s.uid > base}
        self._present.update(present)
        self.stats.present += len(present)
        self._skipped.update({m.uid: reason for m, reason in dec.skipped if m.uid > base})

    async def _copy_window(self, copy: list[MessageMeta], permanent: set[str], end: int, later: int) -> None:
        """Copy ``copy`` (source UIDs up to ``end``) and move the checkpoint to ``end``."""
        ck = self.ckpt
        ck.pending = len(copy) + later
        # Everything below the first message to copy is on the destination or skipped.
        self._advance(copy[0].uid - 1 if copy else end)
        if copy:
            if self.full_match and not self._appended:
                await self._check_unchanged(copy)
            self._appended = True
            await self._copy(copy, permanent, end)
            if self._gaps:
                await self._remove_late_twins()
        self._advance(end)

    async def _ensure_destination(self) -> None:
        name = self.plan.destination
        if name.upper() == "INBOX" or self.dest_exists(name):
            return
        await self.dst.create(name)
        await self.dst.subscribe(name)
        self.dest_created(name)

    async def _apply_flags(
        self, pairs: Sequence[tuple[MessageMeta, MessageMeta]], permanent: set[str]
    ) -> None:
        for flags, uids in flag_updates(pairs, permanent).items():
            for i in range(0, len(uids), 500):
                try:
                    await self.dst.store_flags(uids[i : i + 500], flags)
                    self.stats.flags_updated += len(uids[i : i + 500])
                except CommandFailed:
                    self.stats.flag_errors += len(uids[i : i + 500])
                    self.counters.flag_errors += len(uids[i : i + 500])

    async def _delta_flags(
        self, modseq: int | None, base: int, permanent: set[str], dexists: int, duidnext: int | None
    ) -> None:
        """Propagate flag changes of messages already copied (UID <= base)."""
        ck = self.ckpt
        if base == 0:
            return
        if modseq is not None and ck.highest_mod_seq is not None:
            if modseq == ck.highest_mod_seq:
                return
            changed = [
                m
                for m in await self.src.fetch_meta(f"1:{base}", changedsince=ck.highest_mod_seq)
                if m.uid <= base
            ]
        else:
            changed = [m for m in await self.src.fetch_meta(f"1:{base}") if m.uid <= base]
        if not changed:
            return
        dmeta = await fetch_all_meta(self.dst, dexists, duidnext)
        s_hash, d_hash = await hashes_for_pairing(self.src, self.dst, changed, dmeta)
        dec = decide(changed, dmeta, SyncOptions(), source_hashes=s_hash, dest_hashes=d_hash)
        await self._apply_flags(dec.present, permanent)

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

    def _raise_floor(
        self, got: Sequence[int] | None, items: Sequence[tuple[MessageMeta, AppendItem]], chunk_end: int
    ) -> None:
        """A chunk confirmed with APPENDUID for every message, all chunks so far in order: later copies
        are above its destination UIDs."""
        if got and self._expect_next is not None and self.full_match and self._in_order:
            if min(got) > self._expect_next:
                self._gaps.append((self._expect_next, min(got) - 1, list(got)))
            self._expect_next = max(self._expect_next, max(got) + 1)
        if not (self._in_order and got is not None and len(got) == len(items)):
            self._in_order = False  # without the UIDs of this chunk, a later floor could skip it
            return
        self._dest_top = max(self._dest_top, *got)
        if not self._uncertain:
            new = floor_after_append(got, chunk_end, self._present_max, self._dest_uv)
            if new is not None:
                self._floor = new

    def _take_floor(self) -> None:
        """Record the destination floor with lastUid once lastUid has passed what it needs."""
        f, ck = self._floor, self.ckpt
        if f is not None and ck.last_uid >= f.source_uid:
            ck.dest_uid_validity, ck.dest_uid_next, ck.floor_uid = f.uidvalidity, f.uidnext, f.source_uid

    def own(self, uids: Sequence[int]) -> None:
        """Record destination UIDs as mailferry's copies (APPENDUID, COPYUID, matched earlier copies)."""
        if uids:
            self._owned.add(uids)
            self._store_owned()

    def _store_owned(self) -> None:
        text = str(self._owned)
        if len(text) > MAX_OWNED_CHARS:  # too fragmented to keep in status: stop mirroring this folder
            self.log("owned_untracked", folder=self.plan.source, ranges=len(self._owned.ranges))
            self.ckpt.owned = self.ckpt.owned_uid_validity = None
            return
        self.ckpt.owned = text or None

    def _count(
        self, items: Sequence[tuple[MessageMeta, AppendItem]], got: Sequence[int] | None = None
    ) -> None:
        if got and len(got) == len(items):
            self.own(got)
        n = len(items)
        size = sum(m.size for m, _ in items)
        self.stats.copied += n
        self.stats.bytes += size
        self._pending.copied += n
        self._pending.bytes += size

    def _advance(self, to: int) -> None:
        """Move the checkpoint to source UID ``to`` and, in the same step, count what it passed.

        Counters only change together with ``lastUid`` (no await in between), so a status write at
        any moment is consistent and a rerun never counts a message twice.
        """
        ck, p = self.ckpt, self._pending
        lo = ck.last_uid
        for uid in [u for u in self._present if lo < u <= to]:
            ck.copied += 1
            ck.bytes += self._present.pop(uid)
        for uid in [u for u in self._skipped if lo < u <= to]:
            reason = self._skipped.pop(uid)
            ck.skipped += 1
            self.counters.skips[reason] += 1
            self.stats.skipped[reason] += 1
        ck.copied += p.copied
        ck.bytes += p.bytes
        ck.failed += p.failed
        self.counters.skips.update(p.skipped)
        self.stats.skipped.update(p.skipped)
        self.counters.flag_errors += p.flag_errors
        if p.refused_keywords - set(ck.refused_keywords or ()):
            refused = sorted(set(ck.refused_keywords or ()) | p.refused_keywords)
            ck.refused_keywords = refused[:MAX_REFUSED_KEYWORDS]
        self._pending = FolderStats()
        ck.last_uid = max(lo, to)
        self._take_floor()


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


def _loose_identity(m: MessageMeta) -> frozenset[tuple[str, ...]]:
    """What a copy of ``m`` would share with it, as a set to intersect: (Message-ID, size) when known,
    and (size, INTERNALDATE) always (an APPEND keeps both; a source fetched without Message-IDs)."""
    try:
        when = str(parse_internaldate(m.internaldate).timestamp())  # servers may show other zones
    except ValueError:
        when = m.internaldate
    out = {("d", str(m.size), when)}
    if m.message_id:
        out.add(("m", m.message_id.strip(), str(m.size)))
    return frozenset(out)


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


def vanished(exc: BaseException) -> bool:
    return isinstance(exc, FolderVanished)


__all__ = ["FolderStats", "FolderSync", "compress_uids", "content_hashes", "fetch_all_meta", "vanished"]
