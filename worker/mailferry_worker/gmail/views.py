"""Gmail as a source, the pure part: which folders the engine sees, and which messages each one holds.

Gmail stores a message once (`[Gmail]/All Mail`, \\All) and shows it again in every label folder, each
time under another UID. Copying the label folders copies a message once per label; copying them with a
filter ("only where its home is this folder") duplicates a message whose labels change between rounds
(it reappears under a new UID in its new home) and loses one whose home moves to a folder already past
it. So mailferry copies from All Mail only, where a message keeps one UID for life, and shows the engine
one *view* per home folder: ``INBOX``, each user label, ``Sent`` (\\Sent), ``Drafts`` (\\Drafts) and
``Archive`` (\\Archive, All Mail only), each holding the All Mail UIDs whose home (place.py) it is.

Every view shares All Mail's UIDVALIDITY and UIDs, and every checkpoint is an All Mail UID. A message is
copied when the view of its home passes its UID. A later label change can put it in another view at a
UID that view has passed (nothing copied) or not yet seen; so after a clean finish no view copies a
message at or below the *floor* (``placed_floor``: the lowest view checkpoint; every view of that finish
had passed it, so every message below was placed): it stays where it was placed. After an interruption
there is no floor (a view that had not started would hold messages never copied): the engine's re-match
pairs what is on the destination and copies the rest. Within one run the homes come from one snapshot of
X-GM-LABELS, so every view sees the same decision. Left open (docs/providers.md): labels changed between
an interruption and the next run may place a message a second time (in its new home), or in no view
when its new home had passed it before the interruption (`mailferry verify` reports it missing).

Spam, Trash and other `[Gmail]/…` folders that are not views of All Mail stay real folders (the gmail
preset excludes them by default).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap import utf7
from mailferry_imap.client import FolderInfo

from .place import Placement, keyword, place

INBOX, SENT, DRAFTS, ARCHIVE = "INBOX", "Sent", "Drafts", "Archive"
# Gmail system folders that are views of All Mail (labels or flags), replaced by mailferry's own views.
_COVERED = {"\\all", "\\sent", "\\drafts", "\\flagged", "\\important"}


@dataclass(frozen=True)
class GmailLayout:
    all_mail: str
    delimiter: str
    labels: tuple[str, ...]  # user label folders (each also a view)
    kept: tuple[FolderInfo, ...]  # real folders passed through as they are (Spam, Trash, Chats)

    def view_names(self) -> set[str]:
        return {INBOX, SENT, DRAFTS, ARCHIVE, *self.labels}


def layout(folders: Sequence[FolderInfo]) -> GmailLayout | None:
    """The Gmail layout of a LIST; None when there is no \\All folder (then folders are copied as such)."""
    all_mail = next((f for f in folders if "\\all" in {x.lower() for x in f.flags}), None)
    if all_mail is None:
        return None
    delim = all_mail.delimiter or "/"
    parent = all_mail.name.rsplit(delim, 1)[0] if delim in all_mail.name else None
    labels: list[str] = []
    kept: list[FolderInfo] = []
    for f in folders:
        attrs = {x.lower() for x in f.flags}
        if f.name.upper() == INBOX:
            continue
        if parent is not None and (f.name == parent or f.name.startswith(parent + delim)):
            if not attrs & _COVERED:
                kept.append(f)
        elif f.selectable:
            labels.append(f.name)
    return GmailLayout(all_mail.name, delim, tuple(sorted(labels)), tuple(kept))


def view_folders(lay: GmailLayout) -> list[FolderInfo]:
    """What the engine lists: the views (with the special-use attribute that maps them) and kept folders."""

    def view(name: str, *attrs: str) -> FolderInfo:
        return FolderInfo(name, utf7.encode(name), lay.delimiter, {"\\HasNoChildren", *attrs})

    out = [view(INBOX)]
    out += [view(lb) for lb in lay.labels if lb not in (SENT, DRAFTS, ARCHIVE)]
    out += [view(SENT, "\\Sent"), view(DRAFTS, "\\Drafts"), view(ARCHIVE, "\\Archive")]
    return out + list(lay.kept)


def view_of(p: Placement) -> str | None:
    """The view (folder the engine sees) a message belongs to; None: not copied (Spam/Trash labels)."""
    if p.home is None or p.home in ("spam", "trash"):
        return None
    return {"inbox": INBOX, "sent": SENT, "drafts": DRAFTS, "archive": ARCHIVE}.get(p.home) or p.label


@dataclass
class Snapshot:
    """All Mail at one moment: each UID's view and the flags its labels add. Memory: a few ints per
    message (tuples of extra flags are shared between messages with the same labels)."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int | None
    visible: frozenset[str] | None = None  # the user labels LIST shows (None: all)
    _view: dict[int, int] = field(default_factory=dict)  # UID -> index in _names
    _names: list[str] = field(default_factory=list)
    _extra: dict[int, tuple[str, ...]] = field(default_factory=dict)
    _shared: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, uid: int, labels: Iterable[str]) -> None:
        hidden: list[str] = []
        if self.visible is not None:  # a label hidden from IMAP has no folder: a keyword, never a home
            shown = [lb for lb in labels if lb.startswith("\\") or lb in self.visible]
            hidden = [keyword(lb) for lb in labels if lb not in shown]
            labels = shown
        p = place(labels)
        name = view_of(p)
        if name is None:
            self.skipped[p.skip_reason or "GmailSkipped"] += 1
            return
        if name not in self._names:
            self._names.append(name)
        self._view[uid] = self._names.index(name)
        self.counts[name] += 1
        extra = p.flags + p.keywords + tuple(k for k in hidden if k not in p.keywords)
        if extra:
            self._extra[uid] = self._shared.setdefault(extra, extra)

    def holds(self, view: str, uid: int) -> bool:
        i = self._view.get(uid)
        return i is not None and self._names[i] == view and uid < self.uidnext

    def extra_flags(self, uid: int) -> tuple[str, ...]:
        return self._extra.get(uid, ())

    def count(self, view: str, uid_set: str) -> int:
        ranges = parse_uid_set(uid_set, self.uidnext - 1)
        return sum(1 for uid in self._uids(view) if any(lo <= uid <= hi for lo, hi in ranges))

    def _uids(self, view: str) -> Iterable[int]:
        if view not in self._names:
            return ()
        i = self._names.index(view)
        return (u for u, j in self._view.items() if j == i)


def placed_floor(checkpoints: Mapping[str, FolderCheckpoint], lay: GmailLayout, uidvalidity: int) -> int:
    """The highest All Mail UID below which every message was placed by an earlier run, from the
    checkpoints of a clean finish: the lowest of the views' (a view that finished covers everything below
    the UIDNEXT it recorded, one without it its lastUid). 0 before the first run or after a UIDVALIDITY
    change. A view without a checkpoint is new since that finish (its label is): it does not count."""
    views = lay.view_names()
    marks = [
        (ck.uid_next - 1) if ck.uid_next else ck.last_uid
        for name, ck in checkpoints.items()
        if name in views and ck.uid_validity == uidvalidity
    ]
    return min(marks) if marks else 0


def with_extra(flags: Sequence[str], extra: Sequence[str]) -> tuple[str, ...]:
    """A message's flags plus those its labels add (no duplicates, case-insensitive, order kept)."""
    seen = {f.lower() for f in flags}
    return (*flags, *(e for e in extra if e.lower() not in seen))


def parse_uid_set(uid_set: str, top: int) -> list[tuple[int, int]]:
    """``1:5,7,9:*`` -> [(1, 5), (7, 7), (9, top)] (``*`` is the highest UID; reversed ranges turned)."""
    out: list[tuple[int, int]] = []
    for part in uid_set.split(","):
        lo_s, _, hi_s = part.partition(":")
        lo = top if lo_s == "*" else int(lo_s)
        hi = lo if not hi_s else (top if hi_s == "*" else int(hi_s))
        out.append((min(lo, hi), max(lo, hi)))
    return out


__all__ = [
    "ARCHIVE",
    "DRAFTS",
    "INBOX",
    "SENT",
    "GmailLayout",
    "Snapshot",
    "layout",
    "parse_uid_set",
    "placed_floor",
    "view_folders",
    "view_of",
    "with_extra",
]
