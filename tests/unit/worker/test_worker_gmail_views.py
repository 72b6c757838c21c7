"""A Gmail source as the engine sees it: one view per home folder over All Mail (pure parts)."""

from __future__ import annotations

import pytest

from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import FolderInfo
from mailferry_worker.gmail.views import (
    Snapshot,
    layout,
    parse_uid_set,
    placed_floor,
    view_folders,
    with_extra,
)


def _f(name: str, *attrs: str) -> FolderInfo:
    return FolderInfo(name, name, "/", set(attrs))


GMAIL_LIST = [
    _f("INBOX"),
    _f("Work"),
    _f("Projects", "\\HasChildren"),
    _f("Projects/Alpha"),
    _f("Old", "\\Noselect"),
    _f("[Gmail]", "\\Noselect", "\\HasChildren"),
    _f("[Gmail]/All Mail", "\\All"),
    _f("[Gmail]/Sent Mail", "\\Sent"),
    _f("[Gmail]/Drafts", "\\Drafts"),
    _f("[Gmail]/Starred", "\\Flagged"),
    _f("[Gmail]/Important", "\\Important"),
    _f("[Gmail]/Spam", "\\Junk"),
    _f("[Gmail]/Trash", "\\Trash"),
    _f("[Gmail]/Chats"),
]


def test_views_replace_label_and_system_folders() -> None:
    lay = layout(GMAIL_LIST)
    assert lay is not None
    assert lay.all_mail == "[Gmail]/All Mail"
    assert lay.labels == ("Projects", "Projects/Alpha", "Work")  # \Noselect "Old" is no label
    listed = {f.name: f.special_use for f in view_folders(lay)}
    assert listed == {
        "INBOX": None,
        "Projects": None,
        "Projects/Alpha": None,
        "Work": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Archive": "\\Archive",
        # not views of All Mail: passed through (the gmail preset excludes them by default)
        "[Gmail]": None,
        "[Gmail]/Spam": "\\Junk",
        "[Gmail]/Trash": "\\Trash",
        "[Gmail]/Chats": None,
    }


def test_localised_system_parent_and_no_all_mail() -> None:
    lay = layout(
        [_f("INBOX"), _f("[Google Mail]/Alle Nachrichten", "\\All"), _f("[Google Mail]/Gesendet", "\\Sent")]
    )
    assert lay is not None and lay.labels == () and lay.kept == ()
    assert layout([_f("INBOX"), _f("Sent", "\\Sent")]) is None  # not Gmail: folders copied as they are


def test_snapshot_places_each_message_in_one_view() -> None:
    snap = Snapshot(uidvalidity=7, uidnext=10, highestmodseq=3)
    snap.add(1, ["\\Inbox", "Work", "Travel"])
    snap.add(2, [])
    snap.add(3, ["Work", "\\Starred", "\\Important"])
    snap.add(4, ["\\Sent"])
    snap.add(5, ["\\Draft", "\\Sent"])
    snap.add(6, ["\\Spam"])  # not in All Mail on Gmail; skipped if it ever is
    homes = {
        uid: v
        for uid in range(1, 8)
        for v in ("INBOX", "Work", "Archive", "Sent", "Drafts")
        if snap.holds(v, uid)
    }
    assert homes == {1: "INBOX", 2: "Archive", 3: "Work", 4: "Sent", 5: "Sent"}
    assert snap.counts == {"INBOX": 1, "Archive": 1, "Work": 1, "Sent": 2}
    assert snap.skipped == {"GmailSpam": 1}
    assert snap.extra_flags(1) == ("Travel", "Work")
    assert snap.extra_flags(3) == ("\\Flagged", "$Important")
    assert snap.extra_flags(5) == ("$GmailDrafts",)
    assert snap.count("INBOX", "1:*") == 1 and snap.count("Sent", "5") == 1 and snap.count("Sent", "1:4") == 1


def test_snapshot_ignores_uids_that_arrived_after_it() -> None:
    snap = Snapshot(uidvalidity=7, uidnext=3, highestmodseq=None)
    snap.add(1, ["\\Inbox"])
    assert snap.holds("INBOX", 1)
    assert not snap.holds("INBOX", 5)  # arrived later: the next run's


@pytest.mark.parametrize(
    ("flags", "extra", "expected"),
    [
        (("\\Seen",), ("Work",), ("\\Seen", "Work")),
        (("\\Flagged", "work"), ("\\Flagged", "Work"), ("\\Flagged", "work")),
        ((), (), ()),
    ],
)
def test_extra_flags_added_once(
    flags: tuple[str, ...], extra: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert with_extra(flags, extra) == expected


def test_uid_sets() -> None:
    assert parse_uid_set("1:5,7,9:*", 20) == [(1, 5), (7, 7), (9, 20)]
    assert parse_uid_set("*:4", 9) == [(4, 9)]


def test_a_label_hidden_from_imap_is_a_keyword_never_a_home() -> None:
    """Gmail's "Show in IMAP" off: the label is in X-GM-LABELS but has no folder to be copied from."""
    snap = Snapshot(uidvalidity=1, uidnext=5, highestmodseq=None, visible=frozenset({"Work"}))
    snap.add(1, ["Hidden"])
    snap.add(2, ["Hidden", "Work"])
    assert snap.holds("Archive", 1) and snap.extra_flags(1) == ("Hidden",)
    assert snap.holds("Work", 2) and snap.extra_flags(2) == ("Hidden",)


def test_floor_from_the_views_checkpoints() -> None:
    lay = layout(GMAIL_LIST)
    assert lay is not None
    done = FolderCheckpoint(name="INBOX", uid_validity=7, last_uid=3, uid_next=41)
    cut = FolderCheckpoint(name="Work", uid_validity=7, last_uid=17)  # interrupted: no uidNext
    other = FolderCheckpoint(name="[Gmail]/Spam", uid_validity=9, last_uid=1, uid_next=2)
    assert placed_floor({"INBOX": done}, lay, 7) == 40  # a finished view covers below its UIDNEXT
    assert placed_floor({"INBOX": done, "Work": cut, "[Gmail]/Spam": other}, lay, 7) == 17
    assert placed_floor({"INBOX": done}, lay, 8) == 0  # All Mail's UIDVALIDITY changed
    assert placed_floor({}, lay, 7) == 0


def test_snapshot_answers_uids_added_out_of_order() -> None:
    snap = Snapshot(uidvalidity=1, uidnext=100, highestmodseq=None)
    for uid in (50, 3, 70, 10):
        snap.add(uid, ["\\Inbox"] if uid % 2 else ["Work", "Travel"])
    assert snap.holds("INBOX", 3) and snap.holds("Travel", 50) and snap.extra_flags(70) == ("Work",)
    assert not snap.holds("INBOX", 4) and snap.extra_flags(4) == ()
    assert snap.count("Travel", "1:60") == 2 and snap.count("Nowhere", "1:*") == 0
