"""One folder run's inputs and what it has done so far, and the rules by which its checkpoint moves:
counters that change only together with lastUid, the destination floor, mailferry's own copies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mailferry_api.imap import SyncOptions
from mailferry_api.mailboxsync import MAX_OWNED_CHARS, MAX_REFUSED_KEYWORDS, FolderCheckpoint
from mailferry_imap.client import AppendItem, ImapClient, MessageMeta, SelectInfo

from ..mirrorplan import UidRanges
from ..plan import Decision, DestFloor, FolderPlan, floor_after_append
from .pacing import Pacer


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


class FolderState:
    """The state that the steps of one folder's run share (folder.py drives them; bulkcopy.py,
    latecopies.py and flags.py add theirs as mixins)."""

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

    def _capped(self, modseq: int | None) -> int | None:
        cap = self.mirror_look.highestmodseq if self.mirror_look is not None else None
        return modseq if modseq is None or cap is None else min(modseq, cap)

    def _count_arrived(self, smeta: Sequence[MessageMeta]) -> None:
        if self.mirror_look is not None and self.mirror_look.uidnext:
            self._arrived += sum(1 for m in smeta if m.uid >= self.mirror_look.uidnext)

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
