"""Pacing one mailbox's copy under its sides' budgets (bytes per day, messages per second).

A token bucket of capacity C refilled at r per second lets through at most C + r*T in any window of T
seconds. For a daily budget B we take C = B/24 (an hour's share as burst, or the largest message allowed
if bigger) and r = (B - C) / 86,400, so no 24-hour window ever carries more than B (a message larger than C
would overshoot by its excess, hence C holds the size limit in force). Pure apart from the clock and the
sleep, which are injected (tests run days of simulated time in milliseconds).

Scope: one mailbox's pacer (its connections share it) holds the mailbox's own budgets, already reduced by
what the mailbox copied in the last day (`sync/budget.py`), plus the Job's share of the migration's
side-wide budgets (`MAILFERRY_BUDGET`, handed out by the operator so the shares of all running Jobs sum
to at most the budget): one bucket per side for the whole process, drawn from by every mailbox of the Job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailferry_api.budgets import DAY_SECONDS as DAY_SECONDS  # re-exported: tests and callers use it
from mailferry_api.budgets import JobShare, day_bucket
from mailferry_api.imap import ImapEndpoint
from mailferry_api.providers import effective_limits


@dataclass
class Budget:
    """A token bucket: ``capacity`` units at most at once, ``rate`` units per second refill."""

    capacity: float
    rate: float
    tokens: float
    stamp: float

    @classmethod
    def per_day(cls, units: float, now: float, largest: int = 0) -> Budget:
        # The burst must hold the largest request: one bigger than the bucket overshoots by its excess.
        burst, rate = day_bucket(units, largest)
        return cls(burst, rate, burst, now)

    @classmethod
    def per_second(cls, units: float, now: float) -> Budget:
        return cls(max(units, 1.0), units, max(units, 1.0), now)

    def wait_for(self, units: float, now: float) -> float:
        """Seconds until ``units`` may pass (0: now). A request larger than the bucket waits until the
        bucket is full and then passes alone (a message larger than an hour's share is still copied)."""
        self._refill(now)
        need = min(units, self.capacity)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, units: float, now: float) -> None:
        self._refill(now)
        self.tokens -= units  # may go negative for an oversized request: later requests wait it off

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class Pacer:
    """Waits before each chunk until every budget lets its bytes and messages through."""

    def __init__(
        self,
        bytes_per_day: list[int],
        messages_per_second: list[float],
        largest_message: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        shared: JobBudgets | None = None,
    ) -> None:
        now = clock()
        self.byte_budgets = [Budget.per_day(b, now, largest_message) for b in bytes_per_day]
        self.message_budgets = [Budget.per_second(m, now) for m in messages_per_second]
        if shared is not None:  # the same objects in every mailbox's pacer: one bucket for the Job
            self.byte_budgets += shared.byte_budgets(now, largest_message)
            self.message_budgets += shared.message_budgets(now)
        self.clock, self.sleep = clock, sleep
        self.waited = 0.0
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return bool(self.byte_budgets or self.message_budgets)

    async def admit(self, nbytes: int, messages: int) -> None:
        if not self.active:
            return
        async with self._lock:  # the mailbox's connections take turns: one budget, one order
            while True:
                now = self.clock()
                delay = max(
                    [b.wait_for(nbytes, now) for b in self.byte_budgets]
                    + [m.wait_for(messages, now) for m in self.message_budgets]
                )
                if delay <= 0.001:  # rounding leaves crumbs of a second: never spin on them
                    break
                self.waited += delay
                await self.sleep(delay)
            now = self.clock()
            for b in self.byte_budgets:
                b.take(nbytes, now)
            for m in self.message_budgets:
                m.take(messages, now)


class JobBudgets:
    """The Job's share of the migration's side-wide budgets, as buckets every mailbox of the Job shares.

    Made lazily on the first mailbox's pacer, so the burst holds the size limit in force (a migration's
    mailboxes share one spec, hence one limit)."""

    def __init__(self, share: JobShare) -> None:
        self.share = share
        self._bytes: list[Budget] | None = None
        self._messages: list[Budget] | None = None

    def byte_budgets(self, now: float, largest: int) -> list[Budget]:
        if self._bytes is None:
            self._bytes = [Budget.per_day(b, now, largest) for b in self.share.bytes_per_day()]
        return self._bytes

    def message_budgets(self, now: float) -> list[Budget]:
        if self._messages is None:
            self._messages = [Budget.per_second(m, now) for m in self.share.messages_per_second()]
        return self._messages


# The share of the Job this process runs (one Job, one process): set once at start by main from
# MAILFERRY_BUDGET. A module value rather than an argument so the engine's pacer_for call needs no change.
job_budgets: JobBudgets | None = None


def set_job_share(share: JobShare | None) -> None:
    global job_budgets
    job_budgets = JobBudgets(share) if share is not None else None


def pacer_for(source: ImapEndpoint, destination: ImapEndpoint, largest_message: int | None = None) -> Pacer:
    """The pacer for one mailbox: the source's download and the destination's upload budgets, plus the
    Job's share of the migration's budgets (``largest_message``: the size limit in force, so the burst
    holds any message that may pass)."""
    src, dst = effective_limits(source, "source"), effective_limits(destination, "destination")
    return Pacer(
        [b for b in (src.bytes_per_day, dst.bytes_per_day) if b],
        [m for m in (src.messages_per_second, dst.messages_per_second) if m],
        largest_message or 0,
        shared=job_budgets,
    )
