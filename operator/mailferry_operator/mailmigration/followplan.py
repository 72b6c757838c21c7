"""Live follow mode (spec.deltaMode: follow), the operator's side, pure.

After the bulk copy the migration runs a round of kind ``follow``: one long-running follower Job per
batch (`mailferry-worker follow`), made and retried by the round machinery like any batch Job. It never
ends by itself; when its Jobs end (a follower stopped by SIGTERM exits 0), the next follow round starts
at once. The lag of a followed mailbox is what its follower measured (status.follow), while it keeps
confirming the mailbox current; a follower that stopped confirming counts from its last confirmation.

The final sync: with ``complete: true`` and every referencing DnsCutover drained, the migration
completes once every live mailbox's follower confirmed it current after the drain (the follower was
watching throughout, so this is a delta that post-dates the switch) and within the last two heartbeats;
then the follower Jobs are deleted (their pods get SIGTERM and give the Leases back).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta

from . import finalsync
from .plan import CutoverHold
from .views import JobView, MailboxView

STALE_HEARTBEATS = 3  # a confirmation older than this many heartbeats: the follower is not following
FRESH_HEARTBEATS = 2  # the final sync takes confirmations at most this many heartbeats old
RESTART_SECONDS = 30.0  # a follow round whose Jobs all ended: the next starts this long after it started


def following(m: MailboxView) -> bool:
    """The mailbox's last word is its follower's (not a later round's delta)."""
    at = m.follow_caught_up_at
    return at is not None and (m.last_sync_time is None or at >= m.last_sync_time)


def mailbox_lag(m: MailboxView, now: datetime) -> int | None:
    """Seconds behind for a followed mailbox (None: not followed, the rounds rule applies): the larger of
    its last and p95 lag while its follower confirms it, else the time since its last confirmation."""
    if not following(m):
        return None
    assert m.follow_caught_up_at is not None
    age = (now - m.follow_caught_up_at).total_seconds()
    if age > STALE_HEARTBEATS * max(1, m.follow_heartbeat_seconds):
        return max(0, int(age))
    return math.ceil(max(m.follow_last_lag_seconds or 0.0, m.follow_p95_lag_seconds or 0.0))


def final_reached(
    views: Iterable[MailboxView],
    failed: Collection[str],
    cutovers: Sequence[CutoverHold],
    now: datetime,
) -> bool:
    """Every live mailbox confirmed current after every cutover drained, and lately (see the module)."""
    live = [v for v in views if v.source not in failed and v.name not in failed]
    for v in live:
        at = v.follow_caught_up_at
        if at is None or not finalsync.allows(cutovers, at):
            return False
        if now - at > timedelta(seconds=FRESH_HEARTBEATS * max(1, v.follow_heartbeat_seconds)):
            return False
    return True


def next_round_after(kind: str, interval: float) -> float:
    """Seconds from a round's start to the next in follow mode: none after the bulk copy (or a delta
    round of rounds mode), at most RESTART_SECONDS after a follow round whose Jobs all ended."""
    return min(interval, RESTART_SECONDS) if kind == "follow" else 0.0


def to_stop(jobs: Iterable[JobView], round_number: int) -> list[str]:
    """The follower Jobs of a finished follow round that still run."""
    return [j.name for j in jobs if j.round == round_number and j.active]
