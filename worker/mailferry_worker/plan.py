"""Pure planning logic of a sync (no I/O): folder mapping, what to copy, chunks, identities, flags."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from mailferry_api.imap import SyncOptions
from mailferry_imap.client import MessageMeta, parse_internaldate

from .folderplan import (
    CANONICAL,
    SPECIAL_USES,
    WELL_KNOWN,
    FolderPlan,
    destination_name,
    detect_special_use,
    folder_unchanged,
    logical_parts,
    plan_folders,
    select_folder,
)
from .recovery import (
    DestFloor,
    Rematch,
    floor_after_append,
    floor_after_match,
    floor_at_end,
    rematch_scope,
)

SKIP_TOO_LARGE = "MessageTooLarge"
SKIP_BEFORE_IMPORT_SINCE = "BeforeImportSince"
SKIP_DUPLICATE = "Duplicate"
NEVER_APPEND = {"\\recent"}


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


__all__ = [
    "CANONICAL",
    "NEVER_APPEND",
    "SKIP_BEFORE_IMPORT_SINCE",
    "SKIP_DUPLICATE",
    "SKIP_TOO_LARGE",
    "SPECIAL_USES",
    "WELL_KNOWN",
    "Decision",
    "DestFloor",
    "FolderPlan",
    "Identity",
    "Rematch",
    "appendable_flags",
    "chunks",
    "decide",
    "destination_name",
    "detect_special_use",
    "flag_updates",
    "floor_after_append",
    "floor_after_match",
    "floor_at_end",
    "folder_unchanged",
    "identity",
    "logical_parts",
    "needs_hash",
    "normal_flags",
    "plan_folders",
    "rematch_scope",
    "select_folder",
    "since_date",
    "skip_reason",
]
