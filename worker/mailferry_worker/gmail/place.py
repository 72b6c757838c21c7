"""Gmail labels -> one home folder and keywords (pure): the decision the Gmail source views (views.py,
source.py) take per X-GM-MSGID from its X-GM-LABELS.

A Gmail message has one X-GM-MSGID and any number of labels; IMAP shows it once per label folder and once
more in `[Gmail]/All Mail`. mailferry copies it once, into its home folder, chosen by this priority:

    1. Inbox                       (label \\Inbox)
    2. a user label                (the first in case-insensitive order, so the choice is stable)
    3. Sent                        (\\Sent)
    4. Drafts                      (\\Draft)
    5. Archive                     (in All Mail only: no label at all)

Every other label rides along as a keyword (an IMAP atom: modified UTF-7, atom-specials as '_');
Starred becomes \\Flagged and Important the keyword $Important, Sent/Drafts when not the home the
keywords $GmailSent/$GmailDrafts.
A message labelled Spam or Trash is skipped (GmailSpam / GmailTrash)
unless asked for, and then Spam/Trash is its home.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mailferry_imap import utf7

HomeKind = Literal["inbox", "label", "sent", "drafts", "spam", "trash", "archive"]
IMPORTANT_KEYWORD = "$Important"
_SYSTEM = {
    "\\inbox": "inbox",
    "\\sent": "sent",
    "\\draft": "drafts",
    "\\spam": "spam",
    "\\trash": "trash",
    "\\starred": "starred",
    "\\important": "important",
}
# Characters that cannot stand in an IMAP atom (RFC 9051 atom-specials, resp-specials) or a flag.
_NOT_ATOM = re.compile(r'[\s(){%*"\\\]\x00-\x1f\x7f]')


@dataclass(frozen=True)
class Placement:
    home: HomeKind | None  # None: not copied (see skip_reason)
    label: str | None = None  # the user label when home == "label"
    keywords: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # system flags implied by labels (\Flagged for Starred)
    skip_reason: str | None = None


def keyword(label: str) -> str:
    """A label as an IMAP keyword: non-ASCII in modified UTF-7 (as in its folder name; an atom is ASCII,
    8-bit data in one is a BAD command), then characters an atom cannot hold become '_'."""
    return _NOT_ATOM.sub("_", utf7.encode(label)) or "_"


def place(labels: Iterable[str], include_spam: bool = False, include_trash: bool = False) -> Placement:
    system: set[str] = set()
    user: list[str] = []
    for raw in labels:
        kind = _SYSTEM.get(raw.lower())
        if kind is not None:
            system.add(kind)
        elif raw:
            user.append(raw)
    user = sorted(set(user), key=lambda s: (s.casefold(), s))
    flags = ("\\Flagged",) if "starred" in system else ()
    extra = [IMPORTANT_KEYWORD] if "important" in system else []
    label: str | None = None
    home: HomeKind
    if "trash" in system or "spam" in system:
        home = "trash" if "trash" in system else "spam"
        if not (include_trash if home == "trash" else include_spam):
            return Placement(None, skip_reason="GmailTrash" if home == "trash" else "GmailSpam")
    elif "inbox" in system:
        home = "inbox"
    elif user:
        home, label, user = "label", user[0], user[1:]
    elif "sent" in system:
        home = "sent"
    elif "drafts" in system:
        home = "drafts"
    else:
        home = "archive"
    riding = [k for k in ("sent", "drafts") if k in system and k != home]
    keywords = [keyword(u) for u in user] + [f"$Gmail{k.capitalize()}" for k in riding] + extra
    return Placement(home, label, tuple(keywords), flags)


__all__ = ["IMPORTANT_KEYWORD", "HomeKind", "Placement", "keyword", "place"]
