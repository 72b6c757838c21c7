"""Deletions and moves mirrored from the source (pure): UID sets of our own copies, the safety cap,
orphans and the moves that pair them with new source messages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from mailferry_api.imap import DeletionSafety, SyncOptions
from mailferry_imap.client import MessageMeta

from .plan import decide

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
