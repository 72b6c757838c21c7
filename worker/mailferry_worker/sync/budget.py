"""A mailbox's daily budgets across Jobs, and its ETA: a StatusStore wrapper (the engine stays unaware).

On load, each side's per-mailbox bytes/day is lowered by what the mailbox copied in the last 24 hours
(`status.usage`, written by earlier Jobs), so a delta round or a retried Job within the day never lets the
account exceed its budget; the pacer (sync/pacing.py) then paces under what is left. On every save, the
bytes and messages copied since the last save go into the current hour of `status.usage`, and the
mailbox's ETA is computed (mailferry_api.budgets.estimate) from its pending messages, its budgets, the
Job's share and the throughput seen in this run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from mailferry_api.budgets import JobShare, Rates, Work, estimate, record_usage, used_last_day
from mailferry_api.imap import ImapEndpoint
from mailferry_api.mailboxsync import MailboxSyncSpec, MailboxSyncStatus
from mailferry_api.providers import Side, effective_limits

from ..checkpoint import StatusStore
from ..lease import MailboxLease

Loaded = tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]
# Throughput measured over less than this is noise (connection set-up, the first chunk's burst).
MIN_OBSERVED_SECONDS = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def within_day(endpoint: ImapEndpoint, side: Side, used: int) -> ImapEndpoint:
    """`endpoint` with its per-mailbox bytes/day lowered by the bytes `used` in the last day (at least 1:
    the pacer then waits; the operator starts no Job for a mailbox whose day is spent)."""
    budget = effective_limits(endpoint, side).bytes_per_day
    if not budget or not used:
        return endpoint
    limits = endpoint.limits.model_copy(update={"bytes_per_day": max(1, budget - used)})
    return endpoint.model_copy(update={"limits": limits})


def with_day_spent(spec: MailboxSyncSpec, used: int) -> MailboxSyncSpec:
    src = spec.source.model_copy(update={"endpoint": within_day(spec.source.endpoint, "source", used)})
    dst = spec.destination.model_copy(
        update={"endpoint": within_day(spec.destination.endpoint, "destination", used)}
    )
    return spec.model_copy(update={"source": src, "destination": dst})


def mailbox_rates(spec: MailboxSyncSpec, share: JobShare | None, observed: float | None) -> Rates:
    """The rates one mailbox copies at: its sides' own budgets, and a slot's part of the Job's share."""
    src = effective_limits(spec.source.endpoint, "source")
    dst = effective_limits(spec.destination.endpoint, "destination")
    own_bytes = [b for b in (src.bytes_per_day, dst.bytes_per_day) if b]
    own_messages = [m for m in (src.messages_per_second, dst.messages_per_second) if m]
    slots = max(1, share.concurrency) if share else 1
    job_bytes = [b / slots for b in share.bytes_per_day()] if share else []
    job_messages = [m / slots for m in share.messages_per_second()] if share else []
    return Rates(
        bytes_per_day=min(job_bytes) if job_bytes else None,
        messages_per_second=min(job_messages) if job_messages else None,
        mailbox_bytes_per_day=min(own_bytes) if own_bytes else None,
        mailbox_messages_per_second=min(own_messages) if own_messages else None,
        observed_bytes_per_second=observed,
    )


def mailbox_work(status: MailboxSyncStatus) -> Work:
    """Pending messages, and their bytes at the mailbox's average message size so far (0 when none was
    copied yet: the message and throughput bounds still hold)."""
    totals = status.totals
    pending = status.lag.pending_messages if status.lag else 0
    average = totals.bytes / totals.copied if totals and totals.copied else 0.0
    return Work(bytes=round(pending * average), messages=pending)


@dataclass
class _Run:
    spec: MailboxSyncSpec
    bytes: int  # status.totals.bytes at the last load or save
    messages: int
    started_bytes: int
    started: float  # monotonic


class BudgetedStore:
    """Wraps a StatusStore: per-mailbox budgets lowered by the last day's copies, usage and ETA kept."""

    def __init__(self, inner: StatusStore, share: JobShare | None = None) -> None:
        self.inner, self.share = inner, share
        self.runs: dict[str, _Run] = {}

    def lease(self, name: str) -> MailboxLease:
        return self.inner.lease(name)

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        await self.inner.event(name, type_, reason, message)

    async def load(self, name: str) -> Loaded:
        return self._started(name, await self.inner.load(name))

    async def load_kept(self, name: str) -> Loaded:
        return self._started(name, await self.inner.load_kept(name))

    def _started(self, name: str, loaded: Loaded) -> Loaded:
        spec, status, generation = loaded
        totals = status.totals
        copied_bytes, copied = (totals.bytes, totals.copied) if totals else (0, 0)
        self.runs[name] = _Run(spec, copied_bytes, copied, copied_bytes, time.monotonic())
        used = used_last_day(status.usage or (), utcnow())
        return with_day_spent(spec, used), status, generation

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        run = self.runs.get(name)
        if run is not None:
            self.account(run, status, utcnow(), time.monotonic())
        await self.inner.save(name, status)

    def account(self, run: _Run, status: MailboxSyncStatus, now: datetime, mono: float) -> None:
        totals = status.totals
        copied_bytes, copied = (totals.bytes, totals.copied) if totals else (0, 0)
        grown, more = copied_bytes - run.bytes, copied - run.messages
        if grown > 0 or more > 0:  # (fewer: the folders were re-counted, e.g. a new UIDVALIDITY)
            status.usage = record_usage(status.usage or (), max(0, grown), max(0, more), now)
        run.bytes, run.messages = copied_bytes, copied
        elapsed = mono - run.started
        seen = copied_bytes - run.started_bytes
        observed = seen / elapsed if elapsed >= MIN_OBSERVED_SECONDS and seen > 0 else None
        eta = estimate(mailbox_work(status), mailbox_rates(run.spec, self.share, observed))
        status.eta = eta.at(now.replace(microsecond=0))
        status.eta_seconds, status.eta_reason = eta.seconds, eta.reason
