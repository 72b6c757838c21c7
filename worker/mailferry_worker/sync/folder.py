"""Copy one source folder to its destination folder: bulk, then delta, crash-safe, with checkpoints.

The run decides how to match (the whole folder, or UID windows above the checkpoint) and drives the
steps: flags.py (flags and keywords), latecopies.py (a lost connection's late APPENDs), bulkcopy.py
(the copy loop), on the state and checkpoint rules of folderstate.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from mailferry_imap.client import MessageMeta, SelectInfo

from ..mirrorplan import UidRanges
from ..plan import (
    Decision,
    Rematch,
    decide,
    floor_after_match,
    floor_at_end,
    folder_unchanged,
    needs_hash,
    rematch_scope,
)
from .bulkcopy import BulkCopy
from .flags import FlagSync
from .folderstate import FolderStats, MailboxCounters
from .latecopies import LateCopies
from .meta import content_hashes, fetch_all_meta

WINDOW_FIRST = 500  # above the checkpoint: the first window of source UIDs matched and copied ...
WINDOW_MAX = 8000  # ... doubling up to this


class FolderSync(FlagSync, LateCopies, BulkCopy):
    """One folder's run: match, carry flags, copy what is missing, checkpoint."""

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

    async def _decide(
        self, smeta: list[MessageMeta], dmeta: list[MessageMeta], d_hash: dict[int, str]
    ) -> Decision:
        s_need, d_need = needs_hash(smeta, dmeta)
        s_hash = await content_hashes(self.src, s_need) if s_need else {}
        d_need = [u for u in d_need if u not in d_hash]
        if d_need:
            d_hash.update(await content_hashes(self.dst, d_need))
        return decide(smeta, dmeta, self.options, source_hashes=s_hash, dest_hashes=d_hash)

    def _with_placed(self, dec: Decision) -> Decision:
        """Messages the mirror pass moved here (the source moved them) are present, not to copy."""
        if not self.placed:
            return dec
        moved = [m for m in dec.copy if m.uid in self.placed]
        dec.copy = [m for m in dec.copy if m.uid not in self.placed]
        dec.present += [(m, dataclasses.replace(m, uid=self.placed[m.uid])) for m in moved]
        return dec

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


__all__ = ["FolderStats", "FolderSync", "MailboxCounters"]
