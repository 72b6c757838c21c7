from __future__ import annotations

from datetime import date

from mailferry_api.imap import FolderMapping, FolderSelection, SyncOptions
from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import FolderInfo, MessageMeta
from mailferry_worker.plan import (
    appendable_flags,
    chunks,
    decide,
    flag_updates,
    folder_unchanged,
    needs_hash,
    plan_folders,
)


def F(name: str, delim: str = ".", *flags: str) -> FolderInfo:
    return FolderInfo(name, name, delim, set(flags))


def M(
    uid: int,
    mid: str | None = "<a@x>",
    size: int = 100,
    flags: tuple[str, ...] = (),
    date_: str = "01-Jan-2024 10:00:00 +0000",
) -> MessageMeta:
    return MessageMeta(uid, flags, date_, size, mid)


SRC = [
    F("INBOX"),
    F("INBOX.Sent Items"),  # courier-style prefix, no SPECIAL-USE
    F("INBOX.Projects"),
    F("INBOX.Projects.a/b"),
    F("INBOX.Junk E-mail"),
    F("INBOX.Parent", ".", "\\Noselect"),
    F("INBOX.Drafts", ".", "\\Drafts"),
]
DST = [F("INBOX", "/"), F("Gesendet", "/", "\\Sent"), F("Entwürfe", "/", "\\Drafts")]


def test_separator_prefix_and_special_use_translation() -> None:
    plans = plan_folders(
        SRC, DST, FolderSelection(), source_prefix="INBOX.", dest_prefix="", dest_delimiter="/"
    )
    got = {p.source: p.destination for p in plans}
    assert got == {
        "INBOX": "INBOX",
        "INBOX.Sent Items": "Gesendet",  # well-known name -> the destination's \Sent folder
        "INBOX.Projects": "Projects",
        "INBOX.Projects.a/b": "Projects/a_b",  # '/' inside a name is not a separator on the destination
        "INBOX.Junk E-mail": "Junk",  # no \Junk folder on the destination: canonical name
        "INBOX.Drafts": "Entwürfe",
    }
    assert plans[0].source == "INBOX"


def test_strategies_include_exclude_and_mappings() -> None:
    def names(sel: FolderSelection) -> dict[str, str]:
        return {
            p.source: p.destination
            for p in plan_folders(SRC, DST, sel, source_prefix="INBOX.", dest_delimiter="/")
        }

    assert set(names(FolderSelection(strategy="inboxOnly"))) == {"INBOX"}
    assert set(names(FolderSelection(strategy="standard"))) == {
        "INBOX",
        "INBOX.Sent Items",
        "INBOX.Junk E-mail",
        "INBOX.Drafts",
    }
    assert set(names(FolderSelection(include=["Projects*"]))) == {"INBOX.Projects", "INBOX.Projects.a/b"}
    assert "INBOX.Projects.a/b" not in names(FolderSelection(exclude=["Projects/*"]))
    mapped = names(
        FolderSelection(mappings=[FolderMapping.model_validate({"from": "^Projects", "to": "Archive/Old"})])
    )
    assert mapped["INBOX.Projects"] == "Archive/Old"
    assert mapped["INBOX.Projects.a/b"] == "Archive/Old/a_b"
    no_auto = names(FolderSelection(special_use_automap=False))
    assert no_auto["INBOX.Sent Items"] == "Sent Items"


def test_dest_prefix_and_separator() -> None:
    plans = plan_folders(
        [F("A/B", "/"), F("INBOX", "/")], [], FolderSelection(), dest_prefix="INBOX.", dest_delimiter="."
    )
    assert {p.source: p.destination for p in plans} == {"A/B": "INBOX.A.B", "INBOX": "INBOX"}


def test_unchanged_folder_needs_only_status() -> None:
    ck = FolderCheckpoint(
        name="INBOX",
        uid_validity=7,
        uid_next=100,
        highest_mod_seq=55,
        last_uid=99,
        last_sync_time="2026-01-01T00:00:00Z",
    )
    assert folder_unchanged(ck, {"UIDVALIDITY": 7, "UIDNEXT": 100, "HIGHESTMODSEQ": 55})
    assert not folder_unchanged(ck, {"UIDVALIDITY": 7, "UIDNEXT": 100, "HIGHESTMODSEQ": 56})
    assert not folder_unchanged(ck, {"UIDVALIDITY": 8, "UIDNEXT": 100, "HIGHESTMODSEQ": 55})
    assert not folder_unchanged(ck, {"UIDVALIDITY": 7, "UIDNEXT": 101})
    assert not folder_unchanged(None, {"UIDVALIDITY": 7, "UIDNEXT": 100})


def test_decide_pairs_as_multiset_and_skips() -> None:
    src = [
        M(1, "<d@x>"),
        M(2, "<d@x>"),
        M(3, "<n@x>"),
        M(4, None, 50),
        M(5, "<big@x>", 10_000),
        M(6, "<old@x>", date_="01-Jan-2001 00:00:00 +0000"),
    ]
    dst = [M(10, "<d@x>")]  # one of the two duplicates is already there (e.g. an APPEND before a crash)
    opts = SyncOptions(max_message_bytes=5000, import_since=date(2010, 1, 1))
    dec = decide(src, dst, opts)
    assert [m.uid for m in dec.copy] == [2, 3, 4]
    assert [(s.uid, d.uid) for s, d in dec.present] == [(1, 10)]
    assert {m.uid: r for m, r in dec.skipped} == {5: "MessageTooLarge", 6: "BeforeImportSince"}
    # without a destination lookup (clean delta) everything not skipped is copied
    assert [m.uid for m in decide(src, None, opts).copy] == [1, 2, 3, 4]


def test_skip_duplicates_and_content_hash_identity() -> None:
    src = [M(1, "<d@x>"), M(2, "<d@x>", 101), M(3, None, 70), M(4, None, 70)]
    dst = [M(8, None, 70)]
    s_need, d_need = needs_hash(src, dst)
    assert s_need == [3, 4] and d_need == [8]
    dec = decide(
        src, dst, SyncOptions(skip_duplicates=True), source_hashes={3: "h1", 4: "h2"}, dest_hashes={8: "h2"}
    )
    assert [m.uid for m in dec.copy] == [1, 3]
    assert {m.uid: r for m, r in dec.skipped} == {2: "Duplicate"}
    assert [(s.uid, d.uid) for s, d in dec.present] == [(4, 8)]


def test_chunks_bound_count_and_bytes() -> None:
    msgs = [M(i, size=400) for i in range(1, 11)] + [M(11, size=5000), M(12, size=10)]
    out = chunks(msgs, max_count=4, max_bytes=1000)
    assert [[m.uid for m in c] for c in out] == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11], [12]]
    assert [m.uid for c in chunks(msgs, 100, 1 << 30) for m in c] == list(range(1, 13))


def test_flags_the_destination_rejects_are_reported() -> None:
    keep, rejected = appendable_flags(["\\Seen", "\\Recent", "$Work", "\\Flagged"], {"\\Seen", "\\Flagged"})
    assert keep == ["\\Seen", "\\Flagged"] and rejected == ["$Work"]
    keep, rejected = appendable_flags(["\\Seen", "$Work"], {"\\Seen", "\\*"})
    assert keep == ["\\Seen", "$Work"] and rejected == []
    updates = flag_updates(
        [
            (M(1, flags=("\\Seen", "$A")), M(9, flags=("\\Recent",))),
            (M(2, flags=("\\Seen",)), M(10, flags=("\\SEEN",))),
        ],
        {"\\Seen", "\\*"},
    )
    assert updates == {("$A", "\\Seen"): [9]}
