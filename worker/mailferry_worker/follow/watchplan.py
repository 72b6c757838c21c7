"""How a follower waits for changes and when it runs a mailbox's delta (pure: no I/O, no clock reads).

- ``choose_mode``: NOTIFY where the source announces it (RFC 5465: one connection, every folder),
  else IDLE (RFC 2177) on INBOX with a STATUS sweep of the other folders, else ``poll`` (a delta every
  poll interval: rounds, without the Job).
- ``is_change``: whether an unsolicited response means the mailbox changed (new mail, expunge, flags,
  a folder created/renamed/deleted, a STATUS that differs from the last one seen); ``is_hierarchy_change``
  and ``hierarchy_changed``: whether the folders themselves changed (the kept listings are stale).
- ``MailboxClock``: the per-mailbox state machine (dirty since, running, heartbeat) that decides when
  a delta runs and when the follower may confirm the mailbox caught up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Mode = Literal["notify", "idle", "poll"]

# NOTIFY (RFC 5465 section 5): every personal mailbox; new mail, expunges and flag changes (the latter
# reported as STATUS HIGHESTMODSEQ for unselected mailboxes, hence CONDSTORE enabled first), and folder
# creations/renames/deletions (a new folder has to be planned by the delta).
NOTIFY_SET = b"NOTIFY SET (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))"

# Untagged responses that are no change: the server's chatter, greetings, keep-alives.
_QUIET = ("OK", "NO", "BAD", "CAPABILITY", "ENABLED", "FLAGS", "BYE", "PREAUTH")


def choose_mode(capabilities: Iterable[str], allowed: Iterable[Mode] = ("notify", "idle", "poll")) -> Mode:
    """The best way to wait that both the server announces and the operator allows."""
    caps = {c.upper() for c in capabilities}
    allow = set(allowed)
    if "notify" in allow and "NOTIFY" in caps:
        return "notify"
    if "idle" in allow and "IDLE" in caps:
        return "idle"
    return "poll"


def response_kind(line: bytes) -> str:
    """The keyword of an untagged response: ``* 3 EXISTS`` -> EXISTS, ``* STATUS x (...)`` -> STATUS."""
    words = line.split(b" ", 3)
    if len(words) < 2 or words[0] != b"*":
        return ""
    if words[1][:1].isdigit():
        return words[2].decode("ascii", "replace").upper() if len(words) > 2 else ""
    return words[1].decode("ascii", "replace").upper()


def is_change(line: bytes) -> bool:
    """An unsolicited response that means the mailbox changed (RECENT comes with EXISTS; keep quiet)."""
    kind = response_kind(line)
    if not kind or kind in _QUIET or kind == "RECENT":
        return False
    return kind in ("EXISTS", "EXPUNGE", "FETCH", "VANISHED", "STATUS", "LIST")


def is_hierarchy_change(line: bytes) -> bool:
    """A NOTIFY MailboxName event (RFC 5465 section 5.4): a folder created, renamed or deleted (an
    untagged LIST); the kept folder listings are stale then."""
    return response_kind(line) == "LIST"


def hierarchy_changed(before: Mapping[str, object], after: Mapping[str, object]) -> bool:
    """Two STATUS sweeps name different folders (one created, renamed or deleted). The first sweep
    (``before`` empty) is a baseline."""
    return bool(before) and set(before) != set(after)


def sweep_changes(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Folders whose STATUS differs between two sweeps (new, gone, or any of UIDNEXT, UIDVALIDITY,
    MESSAGES, HIGHESTMODSEQ changed). The first sweep (``before`` empty) is a baseline: no change."""
    if not before:
        return []
    names = set(before) | set(after)
    return sorted(n for n in names if dict(before.get(n) or {}) != dict(after.get(n) or {}))


@dataclass
class MailboxClock:
    """When a followed mailbox runs its delta. Times are the caller's clock (seconds, wall time).

    ``dirty_since``: the first change not yet handed to a delta (the arrival time lag counts from);
    ``running_since``: the change the running delta serves; ``watching``: the change feed is live (a
    mailbox is confirmed caught up only while it is: a broken feed may be missing changes)."""

    poll_seconds: float
    heartbeat_seconds: float
    dirty_since: float | None = None
    running_since: float | None = None
    last_run_end: float | None = None
    last_confirmed: float | None = None
    watching: bool = False

    def changed(self, at: float) -> None:
        if self.dirty_since is None:
            self.dirty_since = at

    def due(self, now: float, mode: Mode) -> bool:
        """A delta should start now: a change is waiting (and none is running), or none ran yet, or,
        polling or with the feed down (a change may go unseen), the poll interval passed since the last."""
        if self.running_since is not None:
            return False
        if self.dirty_since is not None or self.last_run_end is None:
            return True  # a change waits, or the first delta (what came before the feed)
        if mode == "poll" or not self.watching:
            return now - self.last_run_end >= self.poll_seconds
        return False

    def start(self, now: float) -> float:
        """A delta starts; returns the arrival time its copies are measured from."""
        arrival = self.dirty_since if self.dirty_since is not None else now
        self.running_since = arrival
        self.dirty_since = None
        return arrival

    def finished(self, now: float, ok: bool) -> None:
        if not ok and self.running_since is not None:
            self.changed(self.running_since)  # retried with the same arrival time
        self.running_since = None
        self.last_run_end = now
        if ok and self.dirty_since is None:  # it just ran: current as of now
            self.last_confirmed = now

    def confirm_due(self, now: float, mode: Mode) -> bool:
        """A heartbeat may say "caught up" now: idle, the feed live (or polling on time), and the last
        confirmation a heartbeat interval old."""
        if self.running_since is not None or self.dirty_since is not None:
            return False
        if mode != "poll" and not self.watching:
            return False
        if mode == "poll" and (self.last_run_end is None or now - self.last_run_end > self.poll_seconds):
            return False
        return self.last_confirmed is None or now - self.last_confirmed >= self.heartbeat_seconds

    def confirmed(self, now: float) -> None:
        self.last_confirmed = now
