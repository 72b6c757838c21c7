"""mailferry_api.budgets: the hourly usage record, when a spent day frees up, a Job's share on the wire,
and the ETA (budget-bound, message-bound, throughput-bound, nothing left, unknown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailferry_api.budgets import (
    Estimate,
    JobShare,
    Rates,
    Work,
    day_bucket,
    estimate,
    frees_at,
    record_usage,
    used_last_day,
)
from mailferry_api.mailboxsync import MAX_USAGE_BUCKETS, UsageBucket

NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)
DAY = 86_400


def test_record_usage_adds_to_the_hour_and_forgets_old_hours() -> None:
    buckets = record_usage([], 100, 1, NOW)
    buckets = record_usage(buckets, 50, 2, NOW + timedelta(minutes=20))
    assert buckets == [UsageBucket(start=NOW.replace(minute=0), bytes=150, messages=3)]
    later = NOW + timedelta(hours=26)
    assert [b.bytes for b in record_usage(buckets, 7, 1, later)] == [7]  # 26 h on, the first hour is gone
    every_hour: list[UsageBucket] = []
    for h in range(40):
        every_hour = record_usage(every_hour, 1, 1, NOW + timedelta(hours=h))
    assert len(every_hour) <= MAX_USAGE_BUCKETS


def test_used_last_day_counts_an_hour_while_any_of_it_is_in_the_window() -> None:
    start = NOW.replace(minute=0) - timedelta(
        hours=24
    )  # 12:00 yesterday: 12:30 yesterday still in the window
    buckets = [UsageBucket(start=start, bytes=10), UsageBucket(start=start - timedelta(hours=1), bytes=99)]
    assert used_last_day(buckets, NOW) == 10


@pytest.mark.parametrize(
    ("need", "expected_hours"),
    [(100, 0.0), (300, 25 - 10.5), (500, 25 - 10.5), (600, 25 - 4.5), (1001, None)],
)
def test_frees_at(need: int, expected_hours: float | None) -> None:
    buckets = [
        UsageBucket(start=NOW.replace(minute=0) - timedelta(hours=10), bytes=400),
        UsageBucket(start=NOW.replace(minute=0) - timedelta(hours=4), bytes=500),
    ]
    at = frees_at(buckets, NOW, need, 1000)
    if expected_hours is None:
        assert at is None
    else:
        assert at == NOW + timedelta(hours=expected_hours)


def test_job_share_round_trips_and_bad_text_is_none() -> None:
    share = JobShare(3, source_bytes_per_day=10, destination_messages_per_second=0.5)
    assert JobShare.from_json(share.to_json()) == share
    assert share.bytes_per_day() == [10] and share.messages_per_second() == [0.5]
    for bad in ("", "[]", "{", '{"nope": 1}'):
        assert JobShare.from_json(bad) is None


def test_day_bucket_holds_the_largest_message_but_never_more_than_half() -> None:
    assert day_bucket(2400) == (100, 2300 / DAY)
    assert day_bucket(2400, largest=500) == (500, 1900 / DAY)
    assert day_bucket(2400, largest=5000) == (1200, 1200 / DAY)


GB = 1_000_000_000


@pytest.mark.parametrize(
    ("work", "rates", "expected"),
    [
        # nothing left
        (Work(0, 0), Rates(bytes_per_day=GB), Estimate(0, "Done")),
        # no budget, nothing observed yet
        (Work(GB, 10), Rates(), Estimate(None, "NoRateYet")),
        # budget-bound: 24 GB under 2.4 GB/day: the first hour's 0.1 GB at once, then 2.3 GB/day
        (
            Work(24 * GB, 10),
            Rates(bytes_per_day=2.4 * GB),
            Estimate(round(23.9 * GB / (2.3 * GB / DAY)), "BudgetBound"),
        ),
        # per-mailbox budgets over 4 mailboxes at once, capped by the side's budget
        (
            Work(24 * GB, 10),
            Rates(bytes_per_day=4.8 * GB, mailbox_bytes_per_day=2.4 * GB, parallel=4),
            Estimate(round(23.8 * GB / (4.6 * GB / DAY)), "BudgetBound"),
        ),
        # one big mailbox bounds alone, whatever the parallelism
        (
            Work(10 * GB, 10, largest_mailbox_bytes=9.6 * GB),  # type: ignore[arg-type]
            Rates(mailbox_bytes_per_day=2.4 * GB, parallel=50),
            Estimate(round(9.5 * GB / (2.3 * GB / DAY)), "BudgetBound"),
        ),
        # zero bytes known, messages left: the message rate bounds
        (
            Work(0, 4000),
            Rates(bytes_per_day=GB, mailbox_messages_per_second=4, parallel=2),
            Estimate(500, "MessageRateBound"),
        ),
        # throughput slower than the budget allows: throughput-bound
        (
            Work(GB, 10),
            Rates(bytes_per_day=10 * GB, observed_bytes_per_second=10_000),
            Estimate(100_000, "ThroughputBound"),
        ),
        # throughput faster than the budget: the budget still bounds
        (
            Work(GB, 10),
            Rates(bytes_per_day=0.24 * GB, observed_bytes_per_second=10**9),
            Estimate(round(0.99 * GB / (0.23 * GB / DAY)), "BudgetBound"),
        ),
    ],
)
def test_estimate(work: Work, rates: Rates, expected: Estimate) -> None:
    assert estimate(work, rates) == expected


def test_estimate_at() -> None:
    assert Estimate(60, "BudgetBound").at(NOW) == NOW + timedelta(minutes=1)
    assert Estimate(None, "NoRateYet").at(NOW) is None
