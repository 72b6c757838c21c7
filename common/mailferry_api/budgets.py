"""Budgets over time, pure: the token bucket's shape, the hourly usage record a MailboxSync keeps, the share
of the migration's budgets one Job is handed (its wire form), and the ETA.

The operator (scheduling Jobs, the migration's ETA) and the worker (pacing, the mailbox's ETA) both use
these, so they agree on what a daily budget allows. Figures and reasoning: docs/providers.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from .mailboxsync import MAX_USAGE_BUCKETS, UsageBucket

DAY_SECONDS = 86_400.0
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


# ------------------------------------------------------------------------------------ the bucket
def day_bucket(units: float, largest: int = 0) -> tuple[float, float]:
    """(burst, refill per second) of a token bucket that lets at most `units` through in any 24 hours.

    A bucket of capacity C refilled at r lets through at most C + r*T in T seconds; with C an hour's
    share (or the largest message allowed, which must fit, but never more than half the budget) and
    r = (units - C) / day, no 24-hour window carries more than `units`."""
    burst = min(max(units / 24, largest), units / 2)
    return burst, (units - burst) / DAY_SECONDS


# ------------------------------------------------------------------------------------ usage record
def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def record_usage(
    buckets: Sequence[UsageBucket], nbytes: int, messages: int, now: datetime
) -> list[UsageBucket]:
    """`buckets` with `nbytes`/`messages` added to the current hour; hours older than a day dropped."""
    start = hour_of(now)
    kept = [b for b in buckets if b.start + HOUR > now - DAY and b.start != start]
    current = next((b for b in buckets if b.start == start), UsageBucket(start=start))
    current = UsageBucket(start=start, bytes=current.bytes + nbytes, messages=current.messages + messages)
    return sorted([*kept, current], key=lambda b: b.start)[-MAX_USAGE_BUCKETS:]


def used_last_day(buckets: Iterable[UsageBucket], now: datetime) -> int:
    """Bytes copied in the last 24 hours. A bucket counts whole while any part of its hour is in the
    window: the budget is never under-counted (at most an hour's copies are counted too long)."""
    return sum(b.bytes for b in buckets if b.start + HOUR > now - DAY)


def frees_at(buckets: Iterable[UsageBucket], now: datetime, need: int, budget: int) -> datetime | None:
    """The first time at which `budget` minus the last day's bytes is at least `need` (None: never,
    `need` exceeds the budget; `now`: already)."""
    live = sorted((b for b in buckets if b.start + HOUR > now - DAY), key=lambda b: b.start)
    used = sum(b.bytes for b in live)
    if budget - used >= need:
        return now
    for b in live:  # the oldest hour leaves the window first
        used -= b.bytes
        if budget - used >= need:
            return b.start + HOUR + DAY
    return None


# ------------------------------------------------------------------------------------ a Job's share
@dataclass(frozen=True)
class JobShare:
    """What one Job may take of the migration's side-wide budgets (None: that budget is not set).

    `concurrency`: mailboxes the Job copies at once (its connections: that times connectionsPerMailbox,
    per side). The byte and message shares hold for the whole Job: its mailboxes draw from one bucket."""

    concurrency: int
    source_bytes_per_day: int | None = None
    source_messages_per_second: float | None = None
    destination_bytes_per_day: int | None = None
    destination_messages_per_second: float | None = None

    def bytes_per_day(self) -> list[int]:
        return [b for b in (self.source_bytes_per_day, self.destination_bytes_per_day) if b]

    def messages_per_second(self) -> list[float]:
        return [m for m in (self.source_messages_per_second, self.destination_messages_per_second) if m]

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobShare | None:
        """The share a Job carries (MAILFERRY_BUDGET), or None when it carries none or a broken one."""
        try:
            data = json.loads(text) if text else None
            return cls(**data) if isinstance(data, dict) else None
        except (TypeError, ValueError):
            return None


# ------------------------------------------------------------------------------------ ETA
@dataclass(frozen=True)
class Work:
    """What is left to copy."""

    bytes: int
    messages: int
    largest_mailbox_bytes: int = 0  # the biggest single mailbox left: a per-mailbox budget bounds it alone


@dataclass(frozen=True)
class Rates:
    """What the copy may go at. Side-wide budgets hold for everything; per-mailbox ones for each of the
    `parallel` mailboxes copied at once; `observed` is bytes per second actually seen (None: not yet)."""

    bytes_per_day: float | None = None
    messages_per_second: float | None = None
    mailbox_bytes_per_day: float | None = None
    mailbox_messages_per_second: float | None = None
    parallel: int = 1
    observed_bytes_per_second: float | None = None


@dataclass(frozen=True)
class Estimate:
    seconds: int | None
    reason: str  # BudgetBound | MessageRateBound | ThroughputBound | Done | NoRateYet

    def at(self, now: datetime) -> datetime | None:
        return None if self.seconds is None else now + timedelta(seconds=self.seconds)


def _smaller(a: float | None, b: float | None) -> float | None:
    present = [v for v in (a, b) if v]
    return min(present) if present else None


def _paced_seconds(nbytes: int, per_day: float) -> float:
    """Seconds a day bucket of `per_day` needs for `nbytes` (the burst passes at once)."""
    burst, rate = day_bucket(per_day)
    return max(0.0, nbytes - burst) / rate if rate > 0 else 0.0


def estimate(work: Work, rates: Rates) -> Estimate:
    """Seconds until `work` is copied: the slowest of what the byte budgets, the message budgets and the
    throughput seen so far allow (each bound holds alone, so the largest one is the estimate)."""
    if work.bytes <= 0 and work.messages <= 0:
        return Estimate(0, "Done")
    parallel = max(1, rates.parallel)
    bounds: list[tuple[float, str]] = []
    mailbox_bpd = rates.mailbox_bytes_per_day
    bpd = _smaller(rates.bytes_per_day, mailbox_bpd * parallel if mailbox_bpd else None)
    if bpd:
        bounds.append((_paced_seconds(work.bytes, bpd), "BudgetBound"))
    if mailbox_bpd and work.largest_mailbox_bytes:
        bounds.append((_paced_seconds(work.largest_mailbox_bytes, mailbox_bpd), "BudgetBound"))
    mailbox_mps = rates.mailbox_messages_per_second
    mps = _smaller(rates.messages_per_second, mailbox_mps * parallel if mailbox_mps else None)
    if mps:
        bounds.append((work.messages / mps, "MessageRateBound"))
    if rates.observed_bytes_per_second:
        bounds.append((work.bytes / rates.observed_bytes_per_second, "ThroughputBound"))
    if not bounds:
        return Estimate(None, "NoRateYet")
    seconds, reason = max(bounds, key=lambda b: b[0])
    return Estimate(round(seconds), reason)


__all__ = [
    "DAY_SECONDS",
    "Estimate",
    "JobShare",
    "Rates",
    "Work",
    "day_bucket",
    "estimate",
    "frees_at",
    "hour_of",
    "record_usage",
    "used_last_day",
]
