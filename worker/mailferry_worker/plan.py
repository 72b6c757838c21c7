"""Pure planning logic of a sync (no I/O): folder mapping, what to copy, chunks, identities, flags."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date

from mailferry_api.folder_regex import map_folder
from mailferry_api.imap import DeletionSafety, FolderSelection, SyncOptions
from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import FolderInfo, MessageMeta, parse_internaldate

SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
CANONICAL = {
    "\\Sent": "Sent",
    "\\Drafts": "Drafts",
    "\\Trash": "Trash",
    "\\Junk": "Junk",
    "\\Archive": "Archive",
}
# Well-known names per special use (lower case, last component or full path) for servers without RFC 6154.
WELL_KNOWN = {
    "\\Sent": {
        "sent",
        "sent items",
        "sent messages",
        "sent mail",
        "[gmail]/sent mail",
        "gesendet",
        "gesendete objekte",
        "gesendete elemente",
        "envoyés",
        "éléments envoyés",
        "enviados",
        "inviata",
    },
    "\\Drafts": {"drafts", "draft", "[gmail]/drafts", "entwürfe", "brouillons", "borradores", "bozze"},
    "\\Trash": {
        "trash",
        "deleted items",
        "deleted messages",
        "bin",
        "[gmail]/trash",
        "[gmail]/bin",
        "papierkorb",
        "gelöschte elemente",
        "gelöschte objekte",
        "corbeille",
        "papelera",
        "cestino",
    },
    "\\Junk": {
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "bulk mail",
        "[gmail]/spam",
        "spam-verdacht",
        "junk-e-mail",
        "courrier indésirable",
        "indésirables",
    },
    "\\Archive": {"archive", "archives", "archiv", "[gmail]/all mail"},
}
SKIP_TOO_LARGE = "MessageTooLarge"
SKIP_BEFORE_IMPORT_SINCE = "BeforeImportSince"
SKIP_DUPLICATE = "Duplicate"
NEVER_APPEND = {"\\recent"}

# ----------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class FolderPlan:
    source: str  # decoded source name, as the server lists it
    destination: str  # decoded destination name
    special_use: str | None = None


def detect_special_use(folder: FolderInfo, prefix: str = "") -> str | None:
    su = folder.special_use
    if su in SPECIAL_USES:
        return su
    logical = _strip_prefix(folder.name, prefix).lower()
    last = logical.rsplit(folder.delimiter, 1)[-1] if folder.delimiter else logical
    normalised = logical.replace(folder.delimiter, "/") if folder.delimiter else logical
    for use, names in WELL_KNOWN.items():
        if normalised in names or (last in names and "/" not in normalised):
            return use
    return None


def _strip_prefix(name: str, prefix: str) -> str:
    if prefix and name.startswith(prefix) and name.upper() != "INBOX":
        return name[len(prefix) :]
    return name


def logical_parts(name: str, delimiter: str | None, prefix: str = "") -> list[str]:
    """Source name -> path components without the namespace prefix (INBOX normalised to upper case)."""
    rest = _strip_prefix(name, prefix)
    parts = rest.split(delimiter) if delimiter else [rest]
    parts = [p for p in parts if p != ""] or [rest]
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return parts


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or (path == "INBOX" and p.upper() == "INBOX") for p in patterns)


def select_folder(path: str, special_use: str | None, selection: FolderSelection) -> bool:
    """Whether a folder (logical path joined with '/') is copied at all."""
    if selection.strategy == "inboxOnly" and path != "INBOX":
        return False
    if selection.strategy == "standard" and path != "INBOX" and special_use not in SPECIAL_USES:
        return False
    if selection.include and not _matches(path, selection.include):
        return False
    return not (selection.exclude and _matches(path, selection.exclude))


def destination_name(parts: Sequence[str], delimiter: str, prefix: str) -> str:
    """Logical components -> destination name with its separator and namespace prefix."""
    if list(parts) == ["INBOX"]:
        return "INBOX"
    safe = [p.replace(delimiter, "_") if delimiter else p for p in parts]
    return prefix + delimiter.join(safe)


def plan_folders(
    source: Sequence[FolderInfo],
    destination: Sequence[FolderInfo],
    selection: FolderSelection,
    *,
    source_prefix: str = "",
    dest_prefix: str = "",
    dest_delimiter: str | None = None,
) -> list[FolderPlan]:
    """Which source folders to copy, and the destination name of each."""
    ddelim = dest_delimiter or next((f.delimiter for f in destination if f.delimiter), None) or "/"
    dest_special: dict[str, str] = {}
    for f in destination:
        su = f.special_use
        if su in SPECIAL_USES and su not in dest_special:
            dest_special[su] = f.name
    plans: list[FolderPlan] = []
    for f in source:
        if not f.selectable:
            continue
        su = detect_special_use(f, source_prefix)
        parts = [c.replace("/", "_") for c in logical_parts(f.name, f.delimiter, source_prefix)]
        path = "/".join(parts)  # logical path: '/' separates components whatever the server uses
        if not select_folder(path, su, selection):
            continue
        mapped: str | None = None
        for m in selection.mappings:
            mapped = map_folder(m.from_, m.to, path)  # RE2: linear in the name, whatever the pattern
            if mapped is not None:
                break
        if mapped is not None:
            dest = destination_name(logical_parts(mapped, "/"), ddelim, dest_prefix)
        elif selection.special_use_automap and su in SPECIAL_USES and len(parts) == 1:
            dest = dest_special.get(su) or destination_name([CANONICAL[su]], ddelim, dest_prefix)
        else:
            dest = destination_name(parts, ddelim, dest_prefix)
        plans.append(FolderPlan(f.name, dest, su))
    plans.sort(key=lambda p: (p.source.upper() != "INBOX", p.source))
    return plans


# ------------------------------------------------------------------------ per folder


def folder_unchanged(ckpt: FolderCheckpoint | None, status: dict[str, int], *, mirror: bool = False) -> bool:
    """True when STATUS proves nothing changed since the checkpoint (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ).

    ``mirror`` (deletions are carried over): also MESSAGES, the only sign of an expunge on a server
    without CONDSTORE, and no removals held back by the safety cap."""
    if ckpt is None or ckpt.uid_validity is None or ckpt.uid_next is None or ckpt.last_sync_time is None:
        return False
    if status.get("UIDVALIDITY") != ckpt.uid_validity or status.get("UIDNEXT") != ckpt.uid_next:
        return False
    if mirror and (
        ckpt.deletions_held
        or (
            ckpt.synced_messages is not None
            and status.get("MESSAGES", ckpt.synced_messages) != ckpt.synced_messages
        )
    ):
        return False
    hms = status.get("HIGHESTMODSEQ")
    return hms is None or hms == ckpt.highest_mod_seq


@dataclass(frozen=True)
class Rematch:
    """What an unclean restart of a folder compares before copying: source UIDs >= ``source_low`` against
    destination UIDs >= ``dest_low`` (partial), or both whole folders (not partial)."""

    partial: bool
    source_low: int = 1
    dest_low: int = 1


def rematch_scope(
    ckpt: FolderCheckpoint,
    *,
    destination: str,
    source_uidvalidity: int,
    dest_uidvalidity: int,
    skip_duplicates: bool,
) -> Rematch:
    """Partial when the checkpoint records a destination floor: (``floorUid``, ``destUidNext``).

    The floor divides the destination: copies of source messages above ``floorUid`` are at or above
    ``destUidNext``, copies of those at or below it are below it. Matching source UIDs above
    ``floorUid`` against destination UIDs from ``destUidNext`` up then pairs exactly what a whole-folder
    match would. A different UIDVALIDITY on either side, a different destination folder, a status
    without the fields (older worker), a floor above ``lastUid`` or ``skipDuplicates`` (which needs
    every destination Message-ID) mean a full re-match.
    """
    if (
        ckpt.uid_validity is None
        or ckpt.uid_validity != source_uidvalidity
        or skip_duplicates
        or ckpt.dest_uid_validity is None
        or ckpt.dest_uid_next is None
        or ckpt.floor_uid is None
        or ckpt.floor_uid > ckpt.last_uid
        or ckpt.dest_uid_validity != dest_uidvalidity
        or ckpt.destination != destination
    ):
        return Rematch(False)
    return Rematch(True, ckpt.floor_uid + 1, ckpt.dest_uid_next)


@dataclass(frozen=True)
class DestFloor:
    """Copies of source UIDs above ``source_uid`` are at/above destination UID ``uidnext``, copies of those
    at/below it are below it (in the destination folder with ``uidvalidity``)."""

    uidvalidity: int
    uidnext: int
    source_uid: int


def floor_after_match(
    first_copy: int | None,
    last_matched: int,
    present_max: int,
    dest_uidvalidity: int,
    dest_uidnext: int | None,
) -> DestFloor | None:
    """The floor a match gives before this run appends anything: at the destination's UIDNEXT, just below
    the first message to copy (or at the last one matched when nothing is to be copied).

    None when a message found on the destination lies above that point (its copy is below UIDNEXT: no
    division fits) or the server gave no UIDNEXT.
    """
    if not dest_uidnext:
        return None
    at = first_copy - 1 if first_copy is not None else last_matched
    if present_max > at:
        return None
    return DestFloor(dest_uidvalidity, dest_uidnext, at)


def floor_after_append(
    appended: Sequence[int] | None, chunk_end: int, present_max: int, dest_uidvalidity: int
) -> DestFloor | None:
    """The floor after a chunk the destination confirmed with APPENDUID (UIDPLUS), ending at source UID
    ``chunk_end``.

    Only for a run that knows every destination copy below its own appends (a whole match, or a partial
    one with every destination message from the old floor paired) and whose chunks landed in source
    order: copies of later source messages then come after ``max(appended)``.
    """
    if not appended or present_max > chunk_end:
        return None
    return DestFloor(dest_uidvalidity, max(appended) + 1, chunk_end)


def floor_at_end(
    end: int, dest_uidvalidity: int, dest_uidnext: int | None, dest_top: int, appended: bool, in_order: bool
) -> DestFloor | None:
    """The floor once every source UID up to ``end`` (the source's UIDNEXT - 1 at SELECT) is done.

    Nothing above ``end`` has a copy yet, and every copy is below the destination's UIDNEXT at SELECT or
    among this run's appends (highest known destination UID ``dest_top``, when every APPEND returned
    APPENDUID in order). Unpaired destination messages do not matter any more.
    """
    if not dest_uidnext or (appended and not in_order):
        return None
    return DestFloor(dest_uidvalidity, max(dest_uidnext, dest_top + 1), end)


Identity = tuple[str, ...]


def identity(meta: MessageMeta, hashes: dict[int, str] | None = None) -> Identity:
    """Dedup identity: Message-ID + size, or a content hash for messages without Message-ID."""
    if meta.message_id:
        return ("m", meta.message_id.strip(), str(meta.size))
    if hashes and meta.uid in hashes:
        return ("h", hashes[meta.uid])
    return ("u", str(meta.size), meta.internaldate)


def needs_hash(source: Sequence[MessageMeta], dest: Sequence[MessageMeta]) -> tuple[list[int], list[int]]:
    """UIDs (source, destination) of Message-ID-less messages whose size also occurs on the other side."""
    s_sizes = {m.size for m in source if not m.message_id}
    d_sizes = {m.size for m in dest if not m.message_id}
    both = s_sizes & d_sizes
    return (
        [m.uid for m in source if not m.message_id and m.size in both],
        [m.uid for m in dest if not m.message_id and m.size in both],
    )


@dataclass
class Decision:
    copy: list[MessageMeta] = field(default_factory=list)
    present: list[tuple[MessageMeta, MessageMeta]] = field(default_factory=list)  # (source, destination)
    skipped: list[tuple[MessageMeta, str]] = field(default_factory=list)


def skip_reason(meta: MessageMeta, options: SyncOptions) -> str | None:
    if options.max_message_bytes is not None and meta.size > options.max_message_bytes:
        return SKIP_TOO_LARGE
    if options.import_since is not None and meta.internaldate:
        try:
            if parse_internaldate(meta.internaldate).date() < options.import_since:
                return SKIP_BEFORE_IMPORT_SINCE
        except ValueError:
            pass
    return None


def decide(
    source: Sequence[MessageMeta],
    dest: Sequence[MessageMeta] | None,
    options: SyncOptions,
    *,
    source_hashes: dict[int, str] | None = None,
    dest_hashes: dict[int, str] | None = None,
) -> Decision:
    """What to do with each source message (in UID order).

    ``dest`` None: no destination lookup (clean delta above the checkpoint): all not skipped is copied.
    Otherwise messages are paired with destination messages of the same identity as a multiset, so a source
    folder holding the same message twice ends with it twice on the destination, and a message an interrupted
    run already appended is not appended again.
    """
    out = Decision()
    pool: dict[Identity, list[MessageMeta]] = defaultdict(list)
    by_msgid: dict[str, list[MessageMeta]] = defaultdict(list)
    if dest is not None:
        for d in sorted(dest, key=lambda m: m.uid, reverse=True):
            pool[identity(d, dest_hashes)].append(d)
            if d.message_id:
                by_msgid[d.message_id.strip()].append(d)
    seen_ids: set[str] = set()
    for m in sorted(source, key=lambda m: m.uid):
        reason = skip_reason(m, options)
        if reason:
            out.skipped.append((m, reason))
            continue
        key = identity(m, source_hashes)
        if pool.get(key):
            match = pool[key].pop()
            out.present.append((m, match))
            if m.message_id:
                seen_ids.add(m.message_id.strip())
            continue
        if options.skip_duplicates and m.message_id:
            mid = m.message_id.strip()
            if mid in seen_ids:
                out.skipped.append((m, SKIP_DUPLICATE))
                continue
            if by_msgid.get(mid):
                out.present.append((m, by_msgid[mid][-1]))
                seen_ids.add(mid)
                continue
            seen_ids.add(mid)
        out.copy.append(m)
    return out


def chunks(
    messages: Sequence[MessageMeta], max_count: int = 100, max_bytes: int = 16 << 20
) -> list[list[MessageMeta]]:
    """Consecutive batches (UID order kept) bounded by count and bytes; an oversized message goes alone."""
    out: list[list[MessageMeta]] = []
    cur: list[MessageMeta] = []
    size = 0
    for m in messages:
        if cur and (len(cur) >= max_count or size + m.size > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(m)
        size += m.size
    if cur:
        out.append(cur)
    return out


def appendable_flags(flags: Iterable[str], permanent: set[str]) -> tuple[list[str], list[str]]:
    """(flags the destination keeps, flags it rejects). Empty ``permanent`` means "unknown: try all"."""
    keep: list[str] = []
    rejected: list[str] = []
    perm_low = {p.lower() for p in permanent}
    any_keyword = "\\*" in permanent
    for f in flags:
        low = f.lower()
        if low in NEVER_APPEND:
            continue
        if not permanent or low in perm_low or (any_keyword and not f.startswith("\\")):
            keep.append(f)
        else:
            rejected.append(f)
    return keep, rejected


def normal_flags(flags: Iterable[str]) -> frozenset[str]:
    """Flags as compared between servers: without \\Recent, system flags case-folded."""
    return frozenset(f.lower() if f.startswith("\\") else f for f in flags if f.lower() not in NEVER_APPEND)


def flag_updates(
    pairs: Iterable[tuple[MessageMeta, MessageMeta]], permanent: set[str]
) -> dict[tuple[str, ...], list[int]]:
    """Destination UIDs to set (replace) per flag set, where source flags differ from the destination's."""
    out: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for src, dst in pairs:
        if normal_flags(src.flags) != normal_flags(dst.flags):
            keep, _ = appendable_flags(src.flags, permanent)
            if normal_flags(keep) != normal_flags(dst.flags):
                out[tuple(sorted(keep))].append(dst.uid)
    return dict(out)


def since_date(d: date | None) -> str | None:
    return d.strftime("%d-%b-%Y") if d else None


# ------------------------------------------------------------------ deletions and moves


class UidRanges:
    """A set of UIDs kept as sorted, merged ranges (the IMAP sequence set of ``FolderCheckpoint.owned``).

    Adding UIDs above the highest one (every APPENDUID) extends or appends a range in O(1)."""

    def __init__(self, text: str | None = None) -> None:
        self.ranges: list[list[int]] = []
        if text:
            self.add(expand_uid_set(text))

    def add(self, uids: Iterable[int]) -> None:
        slow: list[int] = []
        for u in sorted(uids):
            last = self.ranges[-1] if self.ranges else None
            if last is None or u > last[1] + 1:
                self.ranges.append([u, u])
            elif u == last[1] + 1:
                last[1] = u
            elif u < last[0]:
                slow.append(u)
        if slow:
            self._rebuild(set(self) | set(slow))

    def remove(self, uids: Iterable[int]) -> None:
        gone = set(uids)
        if gone & set(self):
            self._rebuild(set(self) - gone)

    def _rebuild(self, uids: set[int]) -> None:
        self.ranges = []
        self.add(uids)

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(f"{lo}:{hi}" if hi > lo else str(lo) for lo, hi in self.ranges)


def expand_uid_set(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = sorted(int(x) for x in part.split(":"))
            out += range(a, b + 1)
        elif part:
            out.append(int(part))
    return out


def removal_cap(owned: int, safety: DeletionSafety) -> int:
    """How many copies one round may remove from a folder holding ``owned`` of mailferry's copies."""
    return max(safety.always_allowed, owned * safety.max_percent // 100)


def orphans(
    source: Sequence[MessageMeta],
    owned: Sequence[MessageMeta],
    *,
    source_hashes: dict[int, str] | None = None,
    dest_hashes: dict[int, str] | None = None,
) -> list[MessageMeta]:
    """mailferry's copies (``owned``, destination metadata) whose source message is gone: those no message
    still in the source folder pairs with (identity as a multiset, as the copy itself was matched)."""
    dec = decide(source, owned, SyncOptions(), source_hashes=source_hashes, dest_hashes=dest_hashes)
    paired = {id(d) for _, d in dec.present}
    return [m for m in owned if id(m) not in paired]


def pair_moves(
    arrived: Sequence[MessageMeta],
    pool: Sequence[MessageMeta],
    *,
    source_hashes: dict[int, str] | None = None,
    dest_hashes: dict[int, str] | None = None,
) -> list[tuple[MessageMeta, MessageMeta]]:
    """(new source message, orphaned copy) pairs of the same message: the source moved it, so the copy is
    moved on the destination instead of a second copy being appended. ``pool`` objects are compared by
    identity (``id``), so copies from several folders with equal UIDs stay apart."""
    return decide(arrived, pool, SyncOptions(), source_hashes=source_hashes, dest_hashes=dest_hashes).present
