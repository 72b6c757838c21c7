"""Pacing under a daily byte budget and a message rate, on a simulated clock (days in milliseconds)."""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_left
from collections.abc import Iterator

import pytest

from mailferry_api.budgets import JobShare
from mailferry_api.imap import ImapEndpoint
from mailferry_worker.sync import pacing
from mailferry_worker.sync.pacing import DAY_SECONDS, JobBudgets, Pacer, pacer_for


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(pacer: Pacer, clock: SimClock, sizes: list[int]) -> list[tuple[float, int]]:
    sent: list[tuple[float, int]] = []

    async def go() -> None:
        for size in sizes:
            await pacer.admit(size, 1)
            sent.append((clock.now, size))

    asyncio.run(go())
    return sent


def most_in_any_window(sent: list[tuple[float, int]], window: float) -> int:
    times = [t for t, _ in sent]
    prefix = [0]
    for _, n in sent:
        prefix.append(prefix[-1] + n)
    # The heaviest window starts at some send time: [t, t + window).
    return max(prefix[bisect_left(times, t + window)] - prefix[i] for i, t in enumerate(times))


def test_daily_budget_never_exceeded_over_simulated_days() -> None:
    budget = 500_000_000  # Gmail's IMAP upload per day
    rng = random.Random(15)
    sizes = [rng.randint(2_000, 30_000_000) for _ in range(400)]  # ~6 GB: about 12 days' worth
    total = sum(sizes)
    assert total > 10 * budget  # unpaced, the first day alone would carry all of it
    clock = SimClock()
    pacer = Pacer([budget], [], largest_message=30_000_000, clock=clock, sleep=clock.sleep)
    sent = run(pacer, clock, sizes)
    assert most_in_any_window(sent, DAY_SECONDS) <= budget
    # It ends close to the estimate from bytes and budget: burst first, then the refill rate.
    burst = 30_000_000  # the largest message allowed, bigger than an hour's share
    estimate = (total - burst) / ((budget - burst) / DAY_SECONDS)
    print(f"\nsimulated {clock.now / DAY_SECONDS:.2f} days, estimate {estimate / DAY_SECONDS:.2f} days")
    assert clock.now <= estimate * 1.01
    assert clock.now >= (total - 30_000_000 - burst) / ((budget - burst) / DAY_SECONDS) * 0.99


def test_message_rate_is_held() -> None:
    clock = SimClock()
    pacer = Pacer([], [4.0], clock=clock, sleep=clock.sleep)
    sent = run(pacer, clock, [1000] * 400)
    per_second = most_in_any_window([(t, 1) for t, _ in sent], 1.0)
    assert per_second <= 4 + 4  # a bucket of one second's share plus one second of refill
    assert clock.now == pytest.approx((400 - 4) / 4.0)


def test_no_budget_no_wait() -> None:
    clock = SimClock()
    pacer = Pacer([], [], clock=clock, sleep=clock.sleep)
    run(pacer, clock, [10**9] * 3)
    assert clock.now == 0.0 and not pacer.active


def test_pacer_for_takes_both_sides_presets_and_overrides() -> None:
    def ep(provider: str, **kw: object) -> ImapEndpoint:
        return ImapEndpoint.model_validate(
            {"host": "h.example", "auth": {"secretRef": {"name": "s"}}, "provider": provider, **kw}
        )

    p = pacer_for(ep("gmail"), ep("microsoft365"))
    assert [b.capacity * 24 for b in p.byte_budgets] == [2_500_000_000]
    assert [m.rate for m in p.message_budgets] == [4.0]
    p = pacer_for(ep("generic", limits={"bytesPerDay": 1_000}), ep("gmail"))
    assert sorted(round(b.capacity * 24) for b in p.byte_budgets) == [1_000, 500_000_000]
    assert not pacer_for(ep("generic"), ep("generic")).active


# ------------------------------------------------------------------------------------ the Job's share
SHARE = 100_000_000


@pytest.fixture(autouse=True)
def no_job_share() -> Iterator[None]:
    yield
    pacing.set_job_share(None)


def copy_mailboxes(
    shared: JobBudgets | None, clock: SimClock, mailboxes: int, per_mailbox: int
) -> list[tuple[float, int]]:
    """`mailboxes` mailboxes, two at a time, each with a fresh pacer (as the engine makes one per run),
    each copying `per_mailbox` messages of 1 MB."""
    sent: list[tuple[float, int]] = []
    slots = asyncio.Semaphore(2)

    async def mailbox() -> None:
        async with slots:
            own = [] if shared is not None else [SHARE]  # without sharing: each its own full bucket
            pacer = Pacer(own, [], clock=clock, sleep=clock.sleep, shared=shared)
            for _ in range(per_mailbox):
                await pacer.admit(1_000_000, 1)
                sent.append((clock.now, 1_000_000))

    async def go() -> None:
        await asyncio.gather(*(mailbox() for _ in range(mailboxes)))

    asyncio.run(go())
    return sorted(sent)


def test_job_share_is_one_bucket_for_every_mailbox_of_the_job() -> None:
    clock = SimClock()
    sent = copy_mailboxes(JobBudgets(JobShare(2, source_bytes_per_day=SHARE)), clock, 12, 40)
    assert sum(n for _, n in sent) == 480_000_000  # ~5 days' worth of the share
    assert most_in_any_window(sent, DAY_SECONDS) <= SHARE
    # without the shared bucket (a fresh budget per mailbox, as before) the same Job overshoots
    clock = SimClock()
    assert most_in_any_window(copy_mailboxes(None, clock, 12, 40), DAY_SECONDS) > SHARE


def test_pacer_for_adds_the_share_set_at_start() -> None:
    ep = ImapEndpoint.model_validate({"host": "h.example", "auth": {"secretRef": {"name": "s"}}})
    assert not pacing.pacer_for(ep, ep).active
    pacing.set_job_share(JobShare(2, destination_bytes_per_day=SHARE, source_messages_per_second=3.0))
    a, b = pacing.pacer_for(ep, ep), pacing.pacer_for(ep, ep)
    assert a.active and a.byte_budgets[0] is b.byte_budgets[0]  # the same bucket in both
    assert [m.rate for m in a.message_budgets] == [3.0]
