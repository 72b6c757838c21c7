"""Carry deletions and moves on the source over to the destination (``deletions: mirror``), before a delta
round copies anything.

Per folder that may have lost messages since its checkpoint (QRESYNC ``VANISHED (EARLIER)`` in the SELECT
where the server has it; otherwise fewer source messages below ``lastUid`` than the round left; or removals
the safety cap held back):

1. find the *orphans*: mailferry's own copies (``owned`` destination UIDs) that no message still in the
   source folder pairs with (Message-ID + size, content hash without Message-ID: the identities the copy
   was matched by). Mail that arrived at the destination by itself is never owned, so never an orphan;
2. *moves*: a message new in any source folder of this round that is the same message as an orphan was
   moved there on the source: UID MOVE the copy on the destination (COPYUID tells its new UID) and set
   its flags, instead of appending a second copy. The folder's copy pass then counts it as present;
3. *deletions*: the remaining orphans are removed (``\\Deleted`` + UID EXPUNGE of exactly those UIDs),
   unless there are more than the safety cap allows for the folder: then none of them, the folder's
   ``deletionsHeld`` says how many, and the mailbox gets condition DeletionsHeld + an Event.

Crash safety: a MOVE or EXPUNGE the checkpoint has not recorded yet is found again by the next run (the
moved copy pairs with its source message in the re-match; a removed copy is simply no longer there), and
nothing is removed that the source still has: every removal is decided against the source as it is now.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailferry_api.mailboxsync import FolderCheckpoint, MailboxSyncSpec
from mailferry_imap.client import ImapClient, MessageMeta, SelectInfo, compress_uids
from mailferry_imap.errors import FolderVanished

from ..mirrorplan import UidRanges, orphans, pair_moves, removal_cap
from ..plan import (
    FolderPlan,
    appendable_flags,
    needs_hash,
    normal_flags,
)
from .meta import content_hashes, fetch_all_meta, hashes_for_pairing


@dataclass
class FolderOrphans:
    plan: FolderPlan
    ckpt: FolderCheckpoint
    owned: int  # mailferry's copies in the destination folder
    orphans: list[MessageMeta]
    hashes: dict[int, str]  # content hashes of orphans without Message-ID (to recognise them moved)


@dataclass
class MirrorResult:
    # Source folder -> {source UID: destination UID} of messages moved into it (its copy pass skips them).
    placed: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    deleted: int = 0
    moved: int = 0
    held: dict[str, tuple[int, int]] = field(default_factory=dict)  # folder -> (held back, cap)
    # Source folder -> its SELECT by this pass. The copy pass records the folder as of this look (not of
    # its own later SELECT), or an expunge between the two looks would never be detected again.
    looks: dict[str, SelectInfo] = field(default_factory=dict)


class Mirror:
    def __init__(
        self,
        src: ImapClient,
        dst: ImapClient,
        spec: MailboxSyncSpec,
        ckpts: dict[str, FolderCheckpoint],
        log: Callable[..., None],
        *,
        moves: bool = True,
    ) -> None:
        self.src, self.dst, self.spec, self.ckpts, self.log = src, dst, spec, ckpts, log
        self.moves = moves
        self.result = MirrorResult()

    async def run(self, plans: Sequence[FolderPlan]) -> MirrorResult:
        if not self.dst.has("UIDPLUS"):
            # Without UID EXPUNGE a removal could take the user's own \Deleted messages along.
            self.log("deletions_not_mirrored", "warning", reason="destination without UIDPLUS")
            return self.result
        await self.src.enable("QRESYNC")
        found: list[FolderOrphans] = []
        for p in plans:
            with contextlib.suppress(FolderVanished):  # the folder's own sync reports it
                f = await self._scan(p)
                if f is not None and f.orphans:
                    found.append(f)
        if found:
            if self.moves:
                await self._moves(plans, found)
            for f in found:
                await self._delete(f)
        return self.result

    async def _scan(self, p: FolderPlan) -> FolderOrphans | None:
        ck = self.ckpts.get(p.source)
        if (
            ck is None
            or ck.uid_validity is None
            or not ck.owned
            or ck.owned_uid_validity is None
            or ck.destination != p.destination
            or ck.last_uid == 0
        ):
            return None
        since = (ck.uid_validity, ck.highest_mod_seq) if ck.highest_mod_seq else None
        sel = await self.src.select(p.source, readonly=True, qresync=since)
        if sel.uidvalidity != ck.uid_validity:
            return None  # recreated: the folder's sync re-matches it
        self.result.looks[p.source] = sel
        if not ck.deletions_held and not await self._lost_any(ck, sel):
            return None
        # Every source message, also above lastUid: copies an interrupted run made of those are owned too.
        smeta = await fetch_all_meta(self.src, sel.exists, sel.uidnext)
        dsel = await self.dst.select(p.destination)
        if dsel.uidvalidity != ck.owned_uid_validity:
            return None
        owned = await self.dst.fetch_meta(ck.owned)
        s_hash, d_hash = await hashes_for_pairing(self.src, self.dst, smeta, owned)
        gone = orphans(smeta, owned, source_hashes=s_hash, dest_hashes=d_hash)
        no_id = [m.uid for m in gone if not m.message_id and m.uid not in d_hash]
        if no_id:
            d_hash.update(await content_hashes(self.dst, no_id))
        self.log("orphans_found", folder=p.source, owned=len(owned), orphans=len(gone), qresync=sel.qresync)
        return FolderOrphans(p, ck, len(owned), gone, {m.uid: d_hash[m.uid] for m in gone if m.uid in d_hash})

    async def _lost_any(self, ck: FolderCheckpoint, sel: SelectInfo) -> bool:
        """Whether the source folder may have lost a message at or below lastUid since the last round:
        QRESYNC's VANISHED says so in the SELECT; otherwise count them (ESEARCH COUNT: one number)."""
        if sel.qresync:
            return bool(sel.vanished)
        if ck.synced_messages is None:
            return True  # a checkpoint from before the count was kept: look once
        return await self.src.uid_count(f"1:{ck.last_uid}") < ck.synced_messages

    async def _moves(self, plans: Sequence[FolderPlan], found: list[FolderOrphans]) -> None:
        """Messages new on the source that are an orphan's message: move the copy there."""
        # Orphans of several folders in one pool: numbered apart (their UIDs may be equal).
        origin = [(f, m) for f in found for m in f.orphans]
        pool = [dataclasses.replace(m, uid=i) for i, (_, m) in enumerate(origin)]
        pool_hashes = {i: f.hashes[m.uid] for i, (f, m) in enumerate(origin) if m.uid in f.hashes}
        moves: dict[tuple[int, str], list[tuple[MessageMeta, MessageMeta]]] = defaultdict(list)
        targets = {p.source: p for p in plans}
        for p in plans:
            ck = self.ckpts.get(p.source)
            if ck is None or ck.uid_validity is None or not pool:
                continue
            sel = await self.src.select(p.source, readonly=True)
            if sel.uidvalidity != ck.uid_validity or not sel.exists:
                continue
            low = ck.last_uid + 1
            arrived = [m for m in await self.src.fetch_meta(f"{low}:*") if m.uid >= low]
            if not arrived:
                continue
            s_need, _ = needs_hash(arrived, pool)
            s_hash = await content_hashes(self.src, s_need) if s_need else {}
            pairs = pair_moves(arrived, pool, source_hashes=s_hash, dest_hashes=pool_hashes)
            for s, d in pairs:
                f, m = origin[d.uid]
                moves[(id(f), p.source)].append((s, m))
            taken = {d.uid for _, d in pairs}
            pool = [m for m in pool if m.uid not in taken]
        by_id = {id(f): f for f in found}
        for (fid, target), pairs in moves.items():
            await self._move(by_id[fid], targets[target], pairs)

    async def _move(
        self, origin: FolderOrphans, target: FolderPlan, pairs: list[tuple[MessageMeta, MessageMeta]]
    ) -> None:
        tck = self.ckpts[target.source]
        if tck.owned_uid_validity is None or tck.destination != target.destination:
            return  # the target's copies are not tracked: delete + copy instead
        await self.dst.select(origin.plan.destination)
        new = await self.dst.uid_move([d.uid for _, d in pairs], target.destination)
        if not new:
            # No COPYUID: the messages moved but their new UIDs are unknown. The target's copy pass
            # re-matches (its checkpoint loses the floor), so they are paired, not copied again.
            tck.floor_uid = tck.dest_uid_next = tck.dest_uid_validity = None
        moved = {d.uid for _, d in pairs}
        origin.orphans = [m for m in origin.orphans if m.uid not in moved]
        _forget(origin.ckpt, moved)
        origin.ckpt.copied = max(0, origin.ckpt.copied - len(moved))
        if new:
            owned = UidRanges(tck.owned)
            owned.add(new.values())
            tck.owned = str(owned)
            tsel = await self.dst.select(target.destination)
            for s, d in pairs:
                if d.uid in new:
                    self.result.placed[target.source][s.uid] = new[d.uid]
                    if normal_flags(s.flags) != normal_flags(d.flags):
                        keep, _ = appendable_flags(s.flags, tsel.permanentflags)
                        await self.dst.store_flags([new[d.uid]], keep)
        tck.moved += len(moved)
        self.result.moved += len(moved)
        self.log("copies_moved", folder=origin.plan.source, to=target.source, count=len(moved))

    async def _delete(self, f: FolderOrphans) -> None:
        uids = [m.uid for m in f.orphans]
        if not uids:
            f.ckpt.deletions_held = 0
            return
        cap = removal_cap(f.owned, self.spec.deletion_safety)
        if len(uids) > cap:
            f.ckpt.deletions_held = len(uids)
            self.result.held[f.plan.source] = (len(uids), cap)
            self.log("deletions_held", "warning", folder=f.plan.source, orphans=len(uids), cap=cap)
            return
        await self.dst.select(f.plan.destination)
        for i in range(0, len(uids), 500):
            part = uids[i : i + 500]
            await self.dst.store_flags(part, ["\\Deleted"], mode="+FLAGS")
            await self.dst.uid_expunge(part)
        _forget(f.ckpt, set(uids))
        f.ckpt.copied = max(0, f.ckpt.copied - len(uids))
        f.ckpt.deleted += len(uids)
        f.ckpt.deletions_held = 0
        self.result.deleted += len(uids)
        self.log("copies_deleted", folder=f.plan.source, count=len(uids), uids=compress_uids(uids)[:200])


def _forget(ck: FolderCheckpoint, uids: set[int]) -> None:
    owned = UidRanges(ck.owned)
    owned.remove(uids)
    ck.owned = str(owned) or None
