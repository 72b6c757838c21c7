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

from array import array
from bisect import bisect_left
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
    """All Mail at one moment: each UID's view and the flags its labels add. Memory: 8 bytes per message
    (UID, view, extra-flags index in arrays) plus one entry per distinct label set, which is placed once."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int | None
    visible: frozenset[str] | None = None  # the user labels LIST shows (None: all)
    counts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    _uids: array[int] = field(default_factory=lambda: array("L"))
    _views: array[int] = field(default_factory=lambda: array("H"))  # index in _names
    _extras: array[int] = field(default_factory=lambda: array("H"))  # index in _extra_sets
    _names: list[str] = field(default_factory=list)
    _extra_sets: list[tuple[str, ...]] = field(default_factory=lambda: [()])
    _placed: dict[frozenset[str], tuple[int, int] | str] = field(default_factory=dict)
    _sorted: bool = True

    def add(self, uid: int, labels: Iterable[str]) -> None:
        key = frozenset(labels)
        placed = self._placed.get(key)
        if placed is None:
            placed = self._placed[key] = self._place(key)
        if isinstance(placed, str):  # not copied: the skip reason
            self.skipped[placed] += 1
            return
        view, extra = placed
        if self._uids and uid <= self._uids[-1]:
            self._sorted = False
        self._uids.append(uid)
        self._views.append(view)
        self._extras.append(extra)
        self.counts[self._names[view]] += 1

    def _place(self, labels: frozenset[str]) -> tuple[int, int] | str:
        hidden: list[str] = []
        shown = sorted(labels)
        if self.visible is not None:  # a label hidden from IMAP has no folder: a keyword, never a home
            shown = [lb for lb in shown if lb.startswith("\\") or lb in self.visible]
            hidden = [keyword(lb) for lb in sorted(labels) if lb not in shown]
        p = place(shown)
        name = view_of(p)
        if name is None:
            return p.skip_reason or "GmailSkipped"
        if name not in self._names:
            self._names.append(name)
        extra = p.flags + p.keywords + tuple(k for k in hidden if k not in p.keywords)
        if extra not in self._extra_sets:
            self._extra_sets.append(extra)
        return self._names.index(name), self._extra_sets.index(extra)

    def _at(self, uid: int) -> int | None:
        if not self._sorted:  # FETCH answers in UID order as a rule; sort once if one did not
            order = sorted(range(len(self._uids)), key=self._uids.__getitem__)
            self._uids = array("L", (self._uids[i] for i in order))
            self._views = array("H", (self._views[i] for i in order))
            self._extras = array("H", (self._extras[i] for i in order))
            self._sorted = True
        i = bisect_left(self._uids, uid)
        return i if i < len(self._uids) and self._uids[i] == uid else None

    def holds(self, view: str, uid: int) -> bool:
        i = self._at(uid)
        return i is not None and self._names[self._views[i]] == view and uid < self.uidnext

    def extra_flags(self, uid: int) -> tuple[str, ...]:
        i = self._at(uid)
        return self._extra_sets[self._extras[i]] if i is not None else ()

    def count(self, view: str, uid_set: str) -> int:
        if view not in self._names:
            return 0
        want = self._names.index(view)
        ranges = parse_uid_set(uid_set, self.uidnext - 1)
        return sum(
            1
            for uid, v in zip(self._uids, self._views, strict=True)
            if v == want and any(lo <= uid <= hi for lo, hi in ranges)
        )


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
