"""Pure parts of one writer per mailbox and of mirrored deletions: Lease, owned UIDs, orphans, moves, cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailferry_api.imap import DeletionSafety
from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import MessageMeta
from mailferry_worker.lease import decide, lease_name, micro_time
from mailferry_worker.mirrorplan import UidRanges, orphans, pair_moves, removal_cap
from mailferry_worker.plan import folder_unchanged

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def meta(uid: int, mid: str | None, size: int = 100, flags: tuple[str, ...] = ()) -> MessageMeta:
    return MessageMeta(uid, flags, "03-Dec-2026 10:00:00 +0000", size, mid)


def test_lease_free_ours_or_expired_is_taken_otherwise_busy_until_it_expires() -> None:
    held = {"holderIdentity": "pod-a/1/x", "leaseDurationSeconds": 30, "renewTime": micro_time(NOW)}
    assert decide({}, "me", NOW) == ("take", None)
    assert decide({**held, "holderIdentity": None}, "me", NOW) == ("take", None)
    assert decide(held, "pod-a/1/x", NOW) == ("take", None)
    assert decide(held, "me", NOW + timedelta(seconds=10)) == ("busy", NOW + timedelta(seconds=30))
    assert decide(held, "me", NOW + timedelta(seconds=30)) == ("take", None)
    no_renew = {"holderIdentity": "pod-a", "leaseDurationSeconds": 30, "acquireTime": micro_time(NOW)}
    assert decide(no_renew, "me", NOW)[0] == "busy"


def test_lease_names_stay_valid_object_names() -> None:
    assert lease_name("alice") == "mailboxsync.alice"
    long = lease_name("a" * 253)
    assert len(long) == 253 and long != lease_name("a" * 252 + "b")


def test_owned_uid_ranges_append_fast_and_round_trip() -> None:
    owned = UidRanges("1:3,7")
    owned.add([8, 9, 12])
    assert str(owned) == "1:3,7:9,12" and len(owned) == 7
    owned.add([5])  # below the highest: rebuilt
    owned.remove([2, 12, 99])
    assert str(owned) == "1,3,5,7:9"
    assert str(UidRanges(None)) == "" and list(UidRanges("4:6")) == [4, 5, 6]


def test_orphans_are_owned_copies_no_source_message_pairs_with() -> None:
    source = [meta(1, "<a>"), meta(3, "<c>"), meta(4, None, size=70)]
    owned = [meta(10, "<a>"), meta(11, "<b>"), meta(12, "<c>"), meta(13, "<c>"), meta(14, None, size=70)]
    gone = orphans(source, owned, source_hashes={4: "h1"}, dest_hashes={14: "h1"})
    # <b> was expunged; <c> is on the source once but was copied twice: one copy is an orphan.
    assert sorted(m.uid for m in gone) == [11, 13]
    # Without a Message-ID the content decides: a different body is an orphan even with the same size.
    assert [m.uid for m in orphans(source, owned[-1:], source_hashes={4: "h1"}, dest_hashes={14: "h2"})] == [
        14
    ]


def test_moves_pair_new_source_messages_with_orphans_of_any_folder() -> None:
    arrived = [meta(50, "<b>"), meta(51, "<new>"), meta(52, None, size=70)]
    pool = [meta(0, "<b>"), meta(1, None, size=70), meta(2, "<x>")]
    pairs = pair_moves(arrived, pool, source_hashes={52: "h"}, dest_hashes={1: "h"})
    assert [(s.uid, d.uid) for s, d in pairs] == [(50, 0), (52, 1)]


def test_safety_cap_share_of_owned_copies_with_a_floor() -> None:
    safety = DeletionSafety(max_percent=25, always_allowed=10)
    assert removal_cap(1000, safety) == 250
    assert removal_cap(8, safety) == 10  # a small folder may lose a few at once
    assert removal_cap(0, DeletionSafety(max_percent=100, always_allowed=0)) == 0


def test_unchanged_folder_needs_the_same_message_count_when_deletions_are_mirrored() -> None:
    ck = FolderCheckpoint(
        name="INBOX", uid_validity=7, uid_next=101, synced_messages=100, last_sync_time=NOW, last_uid=100
    )
    same = {"UIDVALIDITY": 7, "UIDNEXT": 101, "MESSAGES": 100}
    fewer = {**same, "MESSAGES": 97}  # expunged on a server without CONDSTORE: only MESSAGES tells
    assert folder_unchanged(ck, same, mirror=True)
    assert not folder_unchanged(ck, fewer, mirror=True)
    assert folder_unchanged(ck, fewer, mirror=False)
    held = ck.model_copy(update={"deletions_held": 4})
    assert not folder_unchanged(held, same, mirror=True)
