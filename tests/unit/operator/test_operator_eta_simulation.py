"""The ETA against a simulated run: the operator's planner starts the Jobs, each mailbox is paced by the
worker's token bucket under Gmail's 500 MB/day upload budget, the copies land in hourly usage, and the
migration's ETA is recomputed every simulated hour as the operator would. Uneven mailboxes (3 GB down to
100 MB) over two Job slots finish in days; the ETA must be close to when the run really ends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailferry_api.budgets import record_usage, used_last_day
from mailferry_api.mailboxsync import UsageBucket
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus, ScanStatus, Totals
from mailferry_operator.mailmigration.budgets import migration_eta, schedule, view_of
from mailferry_operator.mailmigration.plan import JobPlan
from mailferry_worker.sync.pacing import Budget

MB = 1_000_000
GB = 1_000 * MB
SIZES = {"m0": 3 * GB, "m1": 1 * GB, "m2": 500 * MB, "m3": 200 * MB, "m4": 2 * GB, "m5": 100 * MB}
MESSAGE = 5 * MB
GMAIL_UPLOAD = 500 * MB
GMAIL_LIMIT = 35_651_584  # the size limit in force: the worker's bucket holds it
STEP = 60.0
START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def spec() -> MailMigrationSpec:
    endpoint = {"host": "imap.example.org", "auth": {"secretRef": {"name": "s"}}}
    return MailMigrationSpec.model_validate(
        {
            "source": endpoint,
            "destination": {**endpoint, "provider": "gmail"},
            "mailboxes": [{"source": f"{m}@example.org"} for m in SIZES],
            "batchSize": 1,
            "maxConcurrentJobs": 2,
            "worker": {"mailboxConcurrency": 1},
        }
    )


def status(copied: int) -> MailMigrationStatus:
    total = sum(SIZES.values())
    return MailMigrationStatus(
        scan=ScanStatus(
            bytes=total,
            messages=total // MESSAGE,
            completed_at=START,
            largest_mailbox="m0",
            largest_mailbox_bytes=SIZES["m0"],
        ),
        totals=Totals(copied_bytes=copied, copied_messages=copied // MESSAGE),
    )


def simulate() -> tuple[datetime, list[tuple[datetime, datetime]]]:
    """(when the last mailbox finished, [(time, ETA)] every simulated hour)."""
    s = spec()
    pending = [JobPlan(f"j{i}", 1, i, 0, (m,)) for i, m in enumerate(sorted(SIZES))]
    running: dict[str, tuple[JobPlan, Budget]] = {}
    left = dict(SIZES)
    usage: dict[str, list[UsageBucket]] = {}
    now, mono, copied = START, 0.0, 0
    etas: list[tuple[datetime, datetime]] = []
    while pending or running:
        view = view_of(s, [j.share for j, _ in running.values() if j.share], usage, now)
        for job in schedule(pending, view).start:
            pending.remove(next(p for p in pending if p.batch == job.batch))
            m = job.mailboxes[0]
            allowance = GMAIL_UPLOAD - used_last_day(usage.get(m, ()), now)  # what the worker does on load
            running[m] = (job, Budget.per_day(allowance, mono, GMAIL_LIMIT))
        if now.minute == 0:
            done = sum(1 for m in SIZES if left[m] <= 0)
            largest_copied = SIZES["m0"] - max(0, left["m0"])  # what the operator reads from m0's status
            eta = migration_eta(status(copied), view, False, len(SIZES) - done, True, largest_copied)
            at = eta.at(now)
            assert at is not None and eta.reason in ("BudgetBound", "ThroughputBound")
            etas.append((now, at))
        now += timedelta(seconds=STEP)
        mono += STEP
        for m, (_job, bucket) in list(running.items()):
            while left[m] > 0 and bucket.wait_for(MESSAGE, mono) <= 0.001:
                bucket.take(MESSAGE, mono)
                left[m] -= MESSAGE
                copied += MESSAGE
                usage[m] = record_usage(usage.get(m, ()), MESSAGE, 1, now)
            if left[m] <= 0:
                del running[m]
    return now, etas


def test_eta_is_close_to_the_simulated_finish() -> None:
    finished, etas = simulate()
    days = (finished - START).total_seconds() / 86_400
    first = (etas[0][1] - START).total_seconds() / 86_400
    # the ETA a day before the end, and halfway
    day_before = next(at for t, at in etas if t >= finished - timedelta(days=1))
    halfway = next(at for t, at in etas if t >= START + (finished - START) / 2)
    print(
        f"\n6 mailboxes, 6.8 GB, 2 at a time under 500 MB/day each: finished after {days:.2f} days; "
        f"ETA at the start {first:.2f} days ({(first - days) / days:+.1%}), halfway "
        f"{(halfway - finished).total_seconds() / 3600:+.1f} h, a day before "
        f"{(day_before - finished).total_seconds() / 3600:+.1f} h"
    )
    # Batches go in name order, not largest first, so the slots do not end together: the first ETA (from
    # bytes and budgets alone) is early by the imbalance, later ones close in.
    assert abs(first - days) / days < 0.15
    assert abs((halfway - finished).total_seconds()) < 0.15 * (finished - START).total_seconds()
    assert abs((day_before - finished).total_seconds()) < 6 * 3600
