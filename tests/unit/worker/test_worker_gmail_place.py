"""Gmail labels -> one home folder (documented priority) and the other labels as keywords."""

from __future__ import annotations

import pytest

from mailferry_worker.gmail import Placement, keyword, place


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # three labels: one copy, in the Inbox, the two user labels as keywords
        (["\\Inbox", "Work", "Travel"], Placement("inbox", None, ("Travel", "Work"))),
        # no Inbox: the first user label (case-insensitive) is the home, the rest ride along
        (["work", "Archive 2020", "Travel"], Placement("label", "Archive 2020", ("Travel", "work"))),
        (["\\Sent", "Clients"], Placement("label", "Clients", ("$GmailSent",))),
        (["\\Sent"], Placement("sent")),
        (["\\Draft"], Placement("drafts")),
        (["\\Sent", "\\Draft"], Placement("sent", None, ("$GmailDrafts",))),
        ([], Placement("archive")),  # in All Mail only
        (["\\Starred", "\\Important"], Placement("archive", None, ("$Important",), ("\\Flagged",))),
        (["\\Inbox", "\\Starred"], Placement("inbox", None, (), ("\\Flagged",))),
        (["\\Spam", "\\Inbox"], Placement(None, skip_reason="GmailSpam")),
        (["\\Trash", "Work"], Placement(None, skip_reason="GmailTrash")),
        (["\\INBOX", "Work"], Placement("inbox", None, ("Work",))),  # system labels case-insensitive
        (["\\Inbox", "Work", "Work"], Placement("inbox", None, ("Work",))),
    ],
)
def test_home_by_priority_and_labels_as_keywords(labels: list[str], expected: Placement) -> None:
    assert place(labels) == expected


def test_spam_and_trash_copied_when_asked() -> None:
    assert place(["\\Spam", "Work"], include_spam=True) == Placement("spam", None, ("Work",))
    assert place(["\\Trash"], include_trash=True) == Placement("trash")
    assert place(["\\Trash", "\\Spam"], include_spam=True).skip_reason == "GmailTrash"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Work", "Work"),
        ("Archive 2020", "Archive_2020"),
        ("a(b)c", "a_b_c"),
        ('say "hi"', "say__hi_"),
        ("Parent/Child", "Parent/Child"),
        ("%*]\\", "____"),
        ("Ärger", "&AMQ-rger"),  # non-ASCII: modified UTF-7 as in its folder name (8-bit is no atom)
        ("R&D", "R&-D"),
    ],
)
def test_keyword_is_an_imap_atom(label: str, expected: str) -> None:
    assert keyword(label) == expected
