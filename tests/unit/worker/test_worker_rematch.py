"""The bounded re-match after an interruption: what the checkpoint's destination floor allows.

A new process (kill -9, Job retry) re-matches only source UIDs above ``lastUid`` against destination UIDs
at or above ``destUidNext``; anything doubtful falls back to a full re-match. The simulation at the end
plays the worker's rules (plan.rematch_scope / floor_after_match / floor_after_append / decide) against a
model destination with kills at random moments, stale checkpoint writes and foreign appends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from mailferry_api.imap import SyncOptions
from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import MessageMeta
from mailferry_worker.plan import (
    DestFloor,
    Rematch,
    chunks,
    decide,
    floor_after_append,
    floor_after_match,
    floor_at_end,
    rematch_scope,
)


def ck(**kw: object) -> FolderCheckpoint:
    base: dict[str, object] = {
        "name": "INBOX",
        "destination": "INBOX",
        "uid_validity": 7,
        "last_uid": 120,
        "floor_uid": 110,
        "dest_uid_validity": 99,
        "dest_uid_next": 340,
    }
    base.update(kw)
    return FolderCheckpoint.model_validate(base)


def scope(c: FolderCheckpoint, **kw: object) -> Rematch:
    args: dict[str, object] = {
        "destination": "INBOX",
        "source_uidvalidity": 7,
        "dest_uidvalidity": 99,
        "skip_duplicates": False,
    }
    args.update(kw)
    return rematch_scope(c, **args)  # type: ignore[arg-type]


def test_partial_rematch_starts_above_the_floor_on_both_sides() -> None:
    assert scope(ck()) == Rematch(True, 111, 340)
    assert scope(ck(floor_uid=120)) == Rematch(True, 121, 340)


@pytest.mark.parametrize(
    ("checkpoint", "kw", "why"),
    [
        (ck(dest_uid_validity=None, dest_uid_next=None, floor_uid=None), {}, "status of an older worker"),
        (ck(dest_uid_next=None), {}, "half a floor"),
        (ck(floor_uid=None), {}, "half a floor"),
        (ck(floor_uid=121), {}, "floor above lastUid: (lastUid, floorUid] would be missed"),
        (ck(), {"dest_uidvalidity": 100}, "destination folder recreated"),
        (ck(), {"source_uidvalidity": 8}, "source folder recreated: the UIDs mean nothing"),
        (ck(uid_validity=None), {}, "first run"),
        (ck(), {"destination": "Archive"}, "mapping changed: another destination folder"),
        (ck(), {"skip_duplicates": True}, "skipDuplicates needs every destination Message-ID"),
    ],
)
def test_anything_doubtful_means_a_full_rematch(
    checkpoint: FolderCheckpoint, kw: dict[str, object], why: str
) -> None:
    assert scope(checkpoint, **kw) == Rematch(False), why


def test_floor_after_a_match_sits_just_below_the_first_message_to_copy() -> None:
    assert floor_after_match(131, 500, 0, 99, 700) == DestFloor(99, 700, 130)
    assert floor_after_match(None, 500, 420, 99, 700) == DestFloor(99, 700, 500)  # nothing to copy
    # Found on the destination above the first message to copy: its copy is below UIDNEXT, the
    # copies still to come above it: no single destination UID divides them.
    assert floor_after_match(131, 500, 140, 99, 700) is None
    assert floor_after_match(131, 500, 0, 99, None) is None  # no UIDNEXT from the server


def test_floor_after_appenduid_and_at_the_end() -> None:
    assert floor_after_append([700, 701, 702], 150, 140, 99) == DestFloor(99, 703, 150)
    assert floor_after_append(None, 150, 0, 99) is None  # no UIDPLUS
    assert floor_after_append([700], 150, 160, 99) is None  # a message found above this chunk
    assert floor_at_end(500, 99, 700, 0, appended=False, in_order=True) == DestFloor(99, 700, 500)
    assert floor_at_end(500, 99, 700, 811, appended=True, in_order=True) == DestFloor(99, 812, 500)
    assert floor_at_end(500, 99, 700, 811, appended=True, in_order=False) is None


# ------------------------------------------------------------------------------------ simulation
@dataclass
class Dest:
    uidvalidity: int = 99
    uidnext: int = 1
    msgs: dict[int, MessageMeta] = field(default_factory=dict)

    def append(self, m: MessageMeta) -> int:
        uid = self.uidnext
        self.uidnext += 1
        self.msgs[uid] = MessageMeta(uid, (), m.internaldate, m.size, m.message_id)
        return uid


class Killed(Exception):
    pass


class Process:
    """One worker process on one folder, with the rules of FolderSync (whole match, or windows above the
    floor with the destination matched from the floor up; pipelined chunks; paced checkpoints)."""

    def __init__(
        self, src: list[MessageMeta], dest: Dest, stored: FolderCheckpoint, rng: random.Random
    ) -> None:
        self.src, self.dest, self.rng = src, dest, rng
        self.c = stored.model_copy(deep=True)
        self.persisted = stored
        self.floor: DestFloor | None = None
        self.uncertain: set[int] = set()
        self.present_max = 0
        self.appended = False
        self.dest_top = 0
        self.fetched = 0
        self.foreign_p = 0.0

    def advance(self, to: int) -> None:
        c, f = self.c, self.floor
        c.last_uid = max(c.last_uid, to)
        if f is not None and c.last_uid >= f.source_uid:
            c.dest_uid_validity, c.dest_uid_next, c.floor_uid = f.uidvalidity, f.uidnext, f.source_uid
        if self.rng.random() < 0.5:  # checkpoint writes are paced: the stored one lags
            self.persisted = c.model_copy(deep=True)

    def kill_maybe(self, p: float) -> None:
        if self.rng.random() < p:
            raise Killed

    def copy_window(self, copy: list[MessageMeta], end: int, kill_p: float) -> None:
        self.advance(copy[0].uid - 1 if copy else end)
        self.appended = self.appended or bool(copy)
        batches = chunks(copy, 3, 1 << 30)
        landed: list[list[int]] = []
        # Pipelined like the worker: chunk i+1 lands before chunk i's result is taken and checkpointed.
        for i in range(len(batches) + 1):
            if i < len(batches):
                if (
                    self.rng.random() < self.foreign_p
                ):  # someone else delivers to the destination folder meanwhile
                    self.dest.append(MessageMeta(0, (), "", 1, f"<foreign-{self.rng.random()}>"))
                self.kill_maybe(kill_p)  # before this chunk (MULTIAPPEND is atomic)
                landed.append([self.dest.append(m) for m in batches[i]])
            if i == 0:
                continue
            self.kill_maybe(kill_p)  # a chunk landed, its checkpoint did not
            self.dest_top = max(self.dest_top, *landed[i - 1])
            if not self.uncertain:
                self.floor = (
                    floor_after_append(landed[i - 1], batches[i - 1][-1].uid, self.present_max, 99)
                    or self.floor
                )
            self.advance(batches[i][0].uid - 1 if i < len(batches) else end)
        self.advance(end)

    def note(self, present: list[tuple[MessageMeta, MessageMeta]]) -> None:
        self.present_max = max([self.present_max, *(s.uid for s, _ in present)])

    def run(self, kill_p: float, window: int) -> None:
        c, dest, src = self.c, self.dest, self.src
        sc = rematch_scope(
            c,
            destination="INBOX",
            source_uidvalidity=1,
            dest_uidvalidity=dest.uidvalidity,
            skip_duplicates=False,
        )
        base = 0 if c.uid_validity is None else c.last_uid
        if not sc.partial:
            c.dest_uid_validity = c.dest_uid_next = c.floor_uid = None
        c.uid_validity, c.destination = 1, "INBOX"
        top, dtop = max(m.uid for m in src), dest.uidnext  # UIDNEXT - 1 / UIDNEXT at SELECT
        if not sc.partial:
            dmeta = list(dest.msgs.values())
            self.fetched = len(dmeta)
            dec = decide(src, dmeta, SyncOptions())
            self.note(dec.present)
            first = dec.copy[0].uid if dec.copy else None
            self.floor = floor_after_match(first, top, self.present_max, 99, dtop)
            self.copy_window(dec.copy, top, kill_p)
        else:
            pool = [m for u, m in dest.msgs.items() if u >= sc.dest_low]
            self.fetched = len(pool)
            self.uncertain = {m.uid for m in pool}
            lo = sc.source_low
            while lo <= top:
                hi = min(lo + window - 1, top)
                dec = decide([m for m in src if lo <= m.uid <= hi], pool, SyncOptions())
                paired = {d.uid for _, d in dec.present}
                pool = [d for d in pool if d.uid not in paired]
                self.uncertain -= paired
                self.note(dec.present)
                copy = [m for m in dec.copy if m.uid > base]
                if not self.uncertain and not self.appended:
                    first = copy[0].uid if copy else None
                    self.floor = floor_after_match(first, hi, self.present_max, 99, dtop)
                self.copy_window(copy, max(hi, base), kill_p)
                lo = hi + 1
        self.floor = floor_at_end(top, 99, dtop, self.dest_top, self.appended, True) or self.floor
        self.advance(top)


def run_once(
    src: list[MessageMeta],
    dest: Dest,
    stored: FolderCheckpoint,
    rng: random.Random,
    kill_p: float,
    foreign_p: float,
) -> tuple[FolderCheckpoint, int, bool]:
    """(checkpoint persisted, destination metadata fetched, finished)"""
    p = Process(src, dest, stored, rng)
    p.foreign_p = foreign_p
    try:
        p.run(kill_p, window=rng.choice([4, 10, 1000]))
        return p.c.model_copy(deep=True), p.fetched, True
    except Killed:
        return p.persisted, p.fetched, False


SIZES: list[int] = []


def simulate(seed: int, foreign_p: float) -> tuple[list[str], list[str], list[int]]:
    """Kill -9 at random until a run finishes: (source Message-IDs, ours on the destination, destination
    metadata each run fetched)."""
    rng = random.Random(seed)
    n = rng.randint(20, 120)
    ids = [f"<m{rng.randint(0, n)}@x>" for _ in range(n)]  # some Message-IDs twice: a multiset
    src = [MessageMeta(uid, (), "", 100, mid) for uid, mid in enumerate(ids, start=1)]
    dest = Dest()
    stored = FolderCheckpoint(name="INBOX")
    fetched: list[int] = []
    for _ in range(500):
        size = len(dest.msgs)
        stored, got, done = run_once(src, dest, stored, rng, 0.15, foreign_p)
        fetched.append(got)
        SIZES.append(size)
        if done:
            break
    assert done
    have = [m.message_id or "" for m in dest.msgs.values() if "foreign" not in (m.message_id or "")]
    return sorted(ids), sorted(have), fetched


@pytest.mark.parametrize("seed", range(60))
def test_random_kills_with_mail_arriving_on_the_destination_lose_and_duplicate_nothing(seed: int) -> None:
    want, have, _ = simulate(seed, foreign_p=0.1)
    assert have == want


def test_random_kills_rerun_rematches_only_the_tail() -> None:
    fetched_total = full_total = 0
    for seed in range(40):
        SIZES.clear()
        want, have, fetched = simulate(seed, foreign_p=0.0)
        assert have == want
        # A rerun reads the destination from the stored floor (what landed since the last stored
        # checkpoint; it lags by pipelining and paced writes); a full re-match would read all of it.
        fetched_total += sum(fetched[1:])
        full_total += sum(SIZES[1:])
    print(f"destination metadata read by reruns: {fetched_total}, by full re-matches: {full_total}")
    assert fetched_total * 3 < full_total


def test_a_late_copy_is_recognised_and_other_mail_is_not() -> None:
    from mailferry_worker.sync.latecopies import _loose_identity

    to_copy = MessageMeta(7, (), "24-Nov-2026 10:00:00 +0000", 2500, None)  # fetched without Message-ID
    late = MessageMeta(901, ("\\Seen",), "24-Nov-2026 11:00:00 +0100", 2500, "<x@y>")  # same instant
    other = MessageMeta(902, (), "24-Nov-2026 10:00:01 +0000", 2500, "<z@y>")
    assert _loose_identity(to_copy) & _loose_identity(late)
    assert not _loose_identity(to_copy) & _loose_identity(other)
    with_id = MessageMeta(8, (), "01-Jan-2020 00:00:00 +0000", 10, "<z@y>")
    assert not _loose_identity(with_id) & _loose_identity(other)  # same Message-ID, other size
    assert _loose_identity(MessageMeta(9, (), "x", 2500, "<z@y>")) & _loose_identity(other)
