"""MailMigration status numbers aggregated from its MailboxSyncs' status (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from mailferry_api.groupware import KINDS, CollectionTotals
from mailferry_api.mailmigration import JobCounts, Lag, MailboxCounts, Totals

from . import followplan
from .views import JobView, MailboxView


def totals(mailboxes: Iterable[MailboxView]) -> Totals:
    t = Totals()
    for m in mailboxes:
        t.expected_messages += m.messages
        t.copied_messages += m.copied
        t.skipped_messages += m.skipped
        t.failed_messages += m.failed
        t.deleted_messages += m.deleted
        t.moved_messages += m.moved
        t.expected_bytes += m.expected_bytes
        t.copied_bytes += m.bytes
    return t


def collection_totals(mailboxes: Iterable[MailboxView]) -> CollectionTotals | None:
    """Contacts and calendars summed over the mailboxes that have any (None when none has)."""
    result: CollectionTotals | None = None
    for m in mailboxes:
        if m.collection_totals is not None:
            result = result or CollectionTotals()
            for kind in KINDS:
                result.add(kind, getattr(m.collection_totals, kind))
    return result


def lag(
    mailboxes: Iterable[MailboxView], failed: Collection[str], now: datetime, since: datetime | None
) -> Lag:
    """maxSeconds = max over live mailboxes of (now - lastSyncTime); a mailbox never synced counts from
    `since` (when the migration started copying); a followed mailbox counts its follower's lag
    (followplan.mailbox_lag). pendingMessages = sum of the mailboxes' lag.pendingMessages.
    Failed mailboxes are left out: they are reported on their own and would pin the lag forever."""
    result = Lag()
    for m in mailboxes:
        if m.source in failed or m.name in failed:
            continue
        followed = followplan.mailbox_lag(m, now)  # follow mode: what its follower measured
        reference = m.last_sync_time or since
        if followed is not None:
            result.max_seconds = max(result.max_seconds, followed)
            result.mode = "follow"
        elif reference is not None:
            result.max_seconds = max(result.max_seconds, max(0, int((now - reference).total_seconds())))
        result.pending_messages += m.pending_messages
    return result


def mailbox_counts(mailboxes: Iterable[MailboxView], failed: Collection[str]) -> MailboxCounts:
    c = MailboxCounts()
    for m in mailboxes:
        c.total += 1
        if m.source in failed or m.name in failed:
            c.failed += 1
        elif m.phase == "Synced":
            c.synced += 1
        elif m.phase in ("Syncing", "Throttled"):
            c.syncing += 1
        elif m.phase == "Failed":
            c.failed += 1
        else:
            c.pending += 1
    return c


def job_counts(jobs: Iterable[JobView]) -> JobCounts:
    c = JobCounts()
    for j in jobs:
        if j.active:
            c.active += 1
        elif j.succeeded:
            c.succeeded += 1
        elif j.failed:
            c.failed += 1
    return c


def progress(t: Totals) -> str:
    return f"{t.copied_messages + t.skipped_messages}/{t.expected_messages}"[:32]
