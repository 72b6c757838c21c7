"""How a sync resumes after an interruption (pure): which source UIDs to re-match on the destination,
and the destination floor below which nothing of ours can hide."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailferry_api.mailboxsync import FolderCheckpoint


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
