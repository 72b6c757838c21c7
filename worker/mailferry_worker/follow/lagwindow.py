"""Lag samples of one mailbox (source arrival -> destination APPEND), pure.

Arrival is the first time the follower saw the change (a NOTIFY/IDLE response, a STATUS sweep, a poll),
so a notification's own delay on the server is not counted; the APPEND time is when the destination
confirmed the chunk (its checkpoint). ``p95`` is over the samples of the last ``window`` seconds, kept
bounded (the newest ``max_samples``)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

# Prometheus histogram buckets for lag in seconds: sub-second NOTIFY paths up to a missed sweep.
LAG_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class LagWindow:
    window: float = 3600.0
    max_samples: int = 2048
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (at, seconds)
    last: float | None = None

    def add(self, at: float, seconds: float, count: int = 1) -> None:
        seconds = max(0.0, seconds)
        self.last = seconds
        for _ in range(max(1, min(count, self.max_samples))):
            self.samples.append((at, seconds))
        while len(self.samples) > self.max_samples:
            self.samples.popleft()

    def _trim(self, now: float) -> None:
        while self.samples and now - self.samples[0][0] > self.window:
            self.samples.popleft()

    def p95(self, now: float) -> float | None:
        self._trim(now)
        return percentile([s for _, s in self.samples], 95)

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self.samples)
