"""Budgets across the Jobs of a migration (mailmigration/budgets.py): which Jobs start, what each is handed,
and the migration's ETA. Table cases, no servers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailferry_api.budgets import JobShare
from mailferry_api.mailboxsync import UsageBucket
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus, ScanStatus, Totals
from mailferry_operator.mailmigration.budgets import (
    BudgetView,
    SideLimits,
    migration_eta,
    schedule,
    view_of,
    write_eta,
)
from mailferry_operator.mailmigration.plan import JobPlan

NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)
GB = 1_000_000_000
UNLIMITED = SideLimits()


def jobs(*sizes: int) -> list[JobPlan]:
    out, n = [], 0
    for b, size in enumerate(sizes):
        out.append(JobPlan(f"j{b}", 1, b, 0, tuple(f"m{n + i}" for i in range(size))))
        n += size
    return out


def view(
    source: SideLimits = UNLIMITED,
    destination: SideLimits = UNLIMITED,
    *,
    per_mailbox: int = 2,
    concurrency: int = 4,
    max_jobs: int = 2,
    active: tuple[JobShare, ...] = (),
    usage: dict[str, list[UsageBucket]] | None = None,
) -> BudgetView:
    return BudgetView(source, destination, per_mailbox, concurrency, max_jobs, active, usage or {}, NOW)


def hours_ago(hours: float, nbytes: int) -> UsageBucket:
    start = (NOW - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    return UsageBucket(start=start, bytes=nbytes)


def test_no_budgets_behaves_as_before() -> None:
    out = schedule(jobs(10, 10, 10), view())
    assert [j.name for j in out.start] == ["j0", "j1"]  # maxConcurrentJobs
    assert all(j.share == JobShare(4) for j in out.start)
    assert out.held == 0 and out.reason is None


@pytest.mark.parametrize(
    ("connections", "active", "expected"),
    [
        # 16 connections, 2 per mailbox: two Jobs of 4 mailboxes each
        (16, (), [4, 4]),
        # 12: the second Job copies 2 mailboxes at once
        (12, (), [4, 2]),
        # 3: one mailbox at a time in one Job (a mailbox needs 2)
        (3, (), [1]),
        # one running Job holds 8 of 10: the new one gets 1 mailbox
        (10, (JobShare(4),), [1]),
        # one running Job holds all 8: nothing starts
        (8, (JobShare(4),), []),
    ],
)
def test_connections_cap_jobs_and_concurrency(
    connections: int, active: tuple[JobShare, ...], expected: list[int]
) -> None:
    out = schedule(jobs(5, 5, 5), view(SideLimits(connections=connections), active=active, max_jobs=3))
    assert [j.share.concurrency for j in out.start if j.share] == expected
    used = sum(a.concurrency for a in active) * 2 + sum(expected) * 2
    assert used <= connections
    assert out.use.source.connections == used
    if len(expected) + len(active) < 3:
        assert out.reason == "ConnectionBudget" and out.held >= 1


def test_destination_connections_count_too() -> None:
    out = schedule(jobs(4, 4), view(destination=SideLimits(connections=6)))
    assert [j.share.concurrency for j in out.start if j.share] == [3]
    assert out.reason == "ConnectionBudget"


def test_day_bytes_split_over_free_slots_minus_last_day_and_running_shares() -> None:
    usage = {"m0": [hours_ago(3, 2 * GB)], "m1": [hours_ago(30, 5 * GB)]}  # the second is older than a day
    running = (JobShare(4, source_bytes_per_day=3 * GB),)
    out = schedule(
        jobs(4, 4, 4),
        view(SideLimits(bytes_per_day=10 * GB), max_jobs=3, active=running, usage=usage),
    )
    # 10 - 2 (last day) - 3 (running) = 5, over the 2 free slots
    assert [j.share.source_bytes_per_day for j in out.start if j.share] == [int(2.5 * GB), int(2.5 * GB)]
    assert out.use.bytes_last_day == 2 * GB
    assert out.use.source.bytes_per_day == 8 * GB <= 10 * GB - 2 * GB


def test_day_spent_holds_the_next_job_until_copies_leave_the_window() -> None:
    usage = {"m0": [hours_ago(23, 6 * GB), hours_ago(1, 3.9 * GB)]}  # type: ignore[arg-type]
    out = schedule(jobs(4, 4), view(SideLimits(bytes_per_day=10 * GB), usage=usage))
    assert out.start == [] and out.held == 2 and out.reason == "ByteBudgetSpent"
    # the bucket 23 h ago (11:00 yesterday... hour start) leaves the window an hour and a day after it began
    oldest = hours_ago(23, 0).start
    assert out.wake_after == ((oldest + timedelta(hours=25)) - NOW).total_seconds()


def test_messages_per_second_shared() -> None:
    out = schedule(
        jobs(2, 2, 2),
        view(
            destination=SideLimits(messages_per_second=10),
            max_jobs=3,
            active=(JobShare(2, destination_messages_per_second=4),),
        ),
    )
    rates = [j.share.destination_messages_per_second or 0.0 for j in out.start if j.share]
    assert rates == [3.0, 3.0]
    assert sum(rates) + 4 <= 10


def test_mailbox_day_spent_holds_only_its_batch() -> None:
    limits = SideLimits(mailbox_bytes_per_day=2_500_000_000)
    usage = {"m0": [hours_ago(2, 2_450_000_000)]}  # m0 (batch 0) has 50 MB left: less than an hour's share
    out = schedule(jobs(2, 2), view(limits, usage=usage))
    assert [j.batch for j in out.start] == [1]
    assert out.reason == "MailboxBudgetSpent" and "m0" in (out.message or "")
    # it may go once the hour 2 h ago leaves the window: in 22-23 h
    assert out.wake_after is not None and 21 * 3600 < out.wake_after <= 23 * 3600


def test_many_batches_uneven_mailboxes_shares_never_exceed_budget() -> None:
    """Simulate a run: Jobs start and end in random order over days; at every decision the running Jobs'
    shares plus the last day's copies stay within the budget, and connections within theirs."""
    rng = random.Random(15)
    budget, connections = 20 * GB, 20
    pending = jobs(*[rng.randint(1, 9) for _ in range(40)])
    running: list[tuple[JobPlan, datetime]] = []
    usage: dict[str, list[UsageBucket]] = {}
    now = NOW
    done = 0
    for _step in range(400):
        b = BudgetView(
            SideLimits(connections=connections, bytes_per_day=budget),
            SideLimits(connections=connections),
            2,
            4,
            5,
            [j.share for j, _ in running if j.share],
            usage,
            now,
        )
        out = schedule(pending, b)
        for j in out.start:
            assert j.share is not None
            pending.remove(next(p for p in pending if p.batch == j.batch))
            running.append((j, now))
        shares = sum(j.share.source_bytes_per_day or 0 for j, _ in running if j.share)
        used = sum(bk.bytes for bs in usage.values() for bk in bs if bk.start + timedelta(hours=25) > now)
        assert shares + used <= budget
        assert sum(j.share.concurrency * 2 for j, _ in running if j.share) <= connections
        # time passes; each running Job copies up to its share's hourly part, some finish
        now += timedelta(hours=1)
        for j, _ in list(running):
            assert j.share is not None and j.share.source_bytes_per_day
            copied = rng.randint(0, j.share.source_bytes_per_day // 24)
            bucket = UsageBucket(start=(now - timedelta(minutes=30)).replace(minute=0), bytes=copied)
            usage.setdefault(j.mailboxes[0], []).append(bucket)
            if rng.random() < 0.3:
                running.remove((j, _))
                done += 1
        if not pending and not running:
            break
    assert done == 40 and not pending


def test_budget_lowered_mid_run_takes_effect_for_new_jobs_only() -> None:
    running = (JobShare(4, source_bytes_per_day=6 * GB),)
    out = schedule(jobs(3), view(SideLimits(bytes_per_day=5 * GB), active=running))
    assert out.start == [] and out.reason == "ByteBudgetSpent"
    raised = schedule(jobs(3), view(SideLimits(bytes_per_day=12 * GB), active=running))
    assert [j.share.source_bytes_per_day for j in raised.start if j.share] == [6 * GB]


# ------------------------------------------------------------------------------------ spec and ETA
def spec(**extra: object) -> MailMigrationSpec:
    endpoint = {"host": "imap.example.org", "auth": {"secretRef": {"name": "s"}}}
    return MailMigrationSpec.model_validate(
        {
            "source": {**endpoint, "provider": "gmail"},
            "destination": endpoint,
            "mailboxes": [{"source": "a@b.c"}],
            **extra,
        }
    )


def test_view_of_reads_presets_and_spec_budgets() -> None:
    s = spec(budgets={"destination": {"connections": 30, "bytesPerDay": 7 * GB}}, connectionsPerMailbox=4)
    b = view_of(s, [], {}, NOW)
    assert b.source.mailbox_bytes_per_day == 2_500_000_000  # Gmail download per mailbox
    assert b.destination == SideLimits(30, 7 * GB, None, None, None)
    assert b.connections_per_mailbox == 4 and b.job_slots() == 2


def status(scan_bytes: int, copied: int, messages: int = 1000, largest: int = 0) -> MailMigrationStatus:
    return MailMigrationStatus(
        scan=ScanStatus(bytes=scan_bytes, messages=messages, completed_at=NOW, largest_mailbox_bytes=largest),
        totals=Totals(copied_bytes=copied, copied_messages=copied // 1000),
    )


def test_migration_eta_budget_bound_by_the_largest_mailbox() -> None:
    b = view_of(spec(), [], {}, NOW)  # gmail source: 2.5 GB/day per mailbox, 2 Jobs x 4 mailboxes
    eta = migration_eta(status(10 * GB, 0, largest=8 * GB), b, False, 10, True)
    assert eta.reason == "BudgetBound"
    # the 8 GB mailbox alone, at 2.5 GB/day (the first hour's share passes at once)
    burst = 2.5 * GB / 24
    assert eta.seconds == round((8 * GB - burst) / ((2.5 * GB - burst) / 86400))


def test_migration_eta_unknown_before_the_scan_and_zero_when_done() -> None:
    b = view_of(spec(), [], {}, NOW)
    assert migration_eta(MailMigrationStatus(), b, False, 1, False).reason == "NotScanned"
    done = migration_eta(status(GB, GB, messages=1_000_000), b, False, 1, True)
    assert (done.seconds, done.reason) == (0, "Done")


def test_migration_eta_throughput_bound_once_copying_is_slower_than_budgets() -> None:
    generic = MailMigrationSpec.model_validate(
        {
            "source": {"host": "a.example", "auth": {"secretRef": {"name": "s"}}},
            "destination": {"host": "b.example", "auth": {"secretRef": {"name": "s"}}},
            "mailboxes": [{"source": "a@b.c"}],
        }
    )
    assert migration_eta(status(GB, 0), view_of(generic, [], {}, NOW), False, 3, True).reason == "NoRateYet"
    usage = {"m0": [hours_ago(2, 360_000_000)]}  # since 10:00: 2.5 h, 40 kB/s
    eta = migration_eta(status(GB, 360_000_000), view_of(generic, [], usage, NOW), False, 3, True)
    assert eta.reason == "ThroughputBound"
    assert eta.seconds == round(640_000_000 / (360_000_000 / 9000))


def test_write_eta_keeps_a_barely_moved_estimate() -> None:
    from mailferry_api.budgets import Estimate

    st = MailMigrationStatus()
    write_eta(st, Estimate(86_400, "BudgetBound"), NOW)
    first = st.eta
    write_eta(st, Estimate(86_400 - 30, "BudgetBound"), NOW + timedelta(seconds=90))  # moved 60 s: < 5 %
    assert st.eta == first and st.eta_seconds == 86_400
    write_eta(st, Estimate(3600, "ThroughputBound"), NOW)
    assert st.eta == NOW + timedelta(hours=1) and st.eta_reason == "ThroughputBound"
    write_eta(st, Estimate(None, "NoRateYet"), NOW)
    assert st.eta is None and st.eta_seconds is None and st.eta_reason == "NoRateYet"
