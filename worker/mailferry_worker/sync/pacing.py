"""Pacing one mailbox's copy under its sides' budgets (bytes per day, messages per second).

A token bucket of capacity C refilled at r per second lets through at most C + r*T in any window of T
seconds. For a daily budget B we take C = B/24 (an hour's share as burst, or the largest message allowed
if bigger) and r = (B - C) / 86,400, so no 24-hour window ever carries more than B (a message larger than C
would overshoot by its excess, hence C holds the size limit in force). Pure apart from the clock and the
sleep, which are injected (tests run days of simulated time in milliseconds).

Scope: one worker process, one mailbox (its connections share the pacer). Budgets shared across all
Jobs of a migration (the operator scheduling batches under them) are not built yet (issue 15).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailferry_api.imap import ImapEndpoint
from mailferry_api.providers import effective_limits

DAY_SECONDS = 86_400.0


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
        burst = min(max(units / 24, largest), units / 2)
        return cls(burst, (units - burst) / DAY_SECONDS, burst, now)

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
    ) -> None:
        now = clock()
        self.byte_budgets = [Budget.per_day(b, now, largest_message) for b in bytes_per_day]
        self.message_budgets = [Budget.per_second(m, now) for m in messages_per_second]
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


def pacer_for(source: ImapEndpoint, destination: ImapEndpoint, largest_message: int | None = None) -> Pacer:
    """The pacer for one mailbox: the source's download and the destination's upload budgets
    (``largest_message``: the size limit in force, so the burst holds any message that may pass)."""
    src, dst = effective_limits(source, "source"), effective_limits(destination, "destination")
    return Pacer(
        [b for b in (src.bytes_per_day, dst.bytes_per_day) if b],
        [m for m in (src.messages_per_second, dst.messages_per_second) if m],
        largest_message or 0,
    )
