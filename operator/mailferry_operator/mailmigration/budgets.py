"""Budgets across the Jobs of a migration, and its ETA (pure).

`schedule` decides which of the Jobs due may start now and what each is handed (`JobShare`, in its
MAILFERRY_BUDGET): connections, bytes per day and messages per second, per side, so that the running Jobs
together never take more than `spec.budgets` allow, and no mailbox starts a Job while its own daily budget
(`source.limits`/`destination.limits` or the provider preset) is spent. The rules (docs/providers.md):

- connections: a Job copies `concurrency` mailboxes at once, each with connectionsPerMailbox connections
  per side; the running Jobs' connections never exceed a side's `connections`. A Job that would gets a
  lower concurrency; one that cannot have a single mailbox waits (ConnectionBudget).
- bytes per day: what is left of a side's `bytesPerDay` after the last 24 hours' copies (MailboxSync
  `status.usage`) and the running Jobs' shares is split evenly over the Job slots still free (the
  worker's token bucket keeps a Job within its share in any 24 hours). A share under an hour's worth of a
  slot's even part is not worth a Job: it waits (ByteBudgetSpent) until old copies leave the window.
- messages per second: the side's rate minus the running Jobs' shares, split over the free slots.
- a mailbox's own daily budget: a Job waits while one of its mailboxes has less than an hour's share of
  its day left (MailboxBudgetSpent); the worker lowers the mailbox's budget by its last day's copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailferry_api.budgets import (
    DAY,
    HOUR,
    Estimate,
    JobShare,
    Rates,
    Work,
    estimate,
    frees_at,
    used_last_day,
)
from mailferry_api.mailboxsync import UsageBucket
from mailferry_api.mailmigration import BudgetStatus, MailMigrationSpec, MailMigrationStatus, SideBudgetUse
from mailferry_api.providers import Side, effective_limits, with_presets

from .plan import JobPlan

SIDES: tuple[Side, Side] = ("source", "destination")
MIN_MESSAGES_PER_SECOND = 0.01  # the smallest rate a worker paces at (the CRD's minimum)
# An ETA that moved less than this (and less than 5 % of what is left) is not rewritten: status stays
# quiet instead of changing on every pass.
ETA_TOLERANCE_SECONDS = 60


@dataclass(frozen=True)
class SideLimits:
    """One side: the migration-wide budget (None: unlimited) and each mailbox's own bytes per day."""

    connections: int | None = None
    bytes_per_day: int | None = None
    messages_per_second: float | None = None
    mailbox_bytes_per_day: int | None = None
    mailbox_messages_per_second: float | None = None


@dataclass(frozen=True)
class BudgetView:
    source: SideLimits
    destination: SideLimits
    connections_per_mailbox: int
    mailbox_concurrency: int
    max_jobs: int
    active: Sequence[JobShare]  # the running Jobs' shares (read back from their MAILFERRY_BUDGET)
    usage: Mapping[str, Sequence[UsageBucket]]  # by MailboxSync name: what each copied per hour
    now: datetime

    def side(self, side: Side) -> SideLimits:
        return self.source if side == "source" else self.destination

    def job_slots(self) -> int:
        """Jobs that may run at once: maxConcurrentJobs, and one mailbox's connections per Job."""
        slots = self.max_jobs
        for s in SIDES:
            limit = self.side(s).connections
            if limit:
                slots = min(slots, limit // max(1, self.connections_per_mailbox))
        return slots


@dataclass
class Scheduled:
    start: list[JobPlan] = field(default_factory=list)  # each with its share
    held: int = 0
    reason: str | None = None
    message: str | None = None
    wake_after: float | None = None  # seconds until a held Job may fit (None: when a running Job ends)
    use: BudgetStatus = field(default_factory=BudgetStatus)

    def hold(self, reason: str, message: str, wake: datetime | None, now: datetime) -> None:
        self.held += 1
        if self.reason is None:
            self.reason, self.message = reason, message[:1024]
        if wake is not None:
            seconds = max(1.0, (wake - now).total_seconds())
            self.wake_after = seconds if self.wake_after is None else min(self.wake_after, seconds)


def view_of(
    spec: MailMigrationSpec,
    active: Sequence[JobShare],
    usage: Mapping[str, Sequence[UsageBucket]],
    now: datetime,
) -> BudgetView:
    """The budgets of `spec`: spec.budgets per side, and each mailbox's from the provider presets."""

    def side(s: Side) -> SideLimits:
        budget = getattr(spec.budgets, s)
        own = effective_limits(getattr(spec, s), s)
        return SideLimits(
            budget.connections,
            budget.bytes_per_day,
            budget.messages_per_second,
            own.bytes_per_day,
            own.messages_per_second,
        )

    connections = with_presets(spec, spec.source, spec.destination).connections_per_mailbox
    return BudgetView(
        side("source"),
        side("destination"),
        connections,
        spec.worker.mailbox_concurrency,
        spec.max_concurrent_jobs,
        active,
        usage,
        now,
    )


def _spent_mailbox(job: JobPlan, b: BudgetView) -> tuple[str, Side, datetime | None] | None:
    """The first mailbox of `job` with less than an hour's share of its own day left, the side, and when
    it has that again."""
    for s in SIDES:
        budget = b.side(s).mailbox_bytes_per_day
        if not budget:
            continue
        need = budget / 24
        for m in job.mailboxes:
            buckets = b.usage.get(m, ())
            if budget - used_last_day(buckets, b.now) < need:
                return m, s, frees_at(buckets, b.now, int(need), budget)
    return None


def _window_frees(usage: Mapping[str, Sequence[UsageBucket]], now: datetime) -> datetime | None:
    """When the oldest copied hour still counted leaves the 24-hour window."""
    starts = [bk.start for buckets in usage.values() for bk in buckets if bk.start + HOUR > now - DAY]
    return min(starts) + HOUR + DAY if starts else None


def schedule(pending: Sequence[JobPlan], b: BudgetView) -> Scheduled:
    """Which of `pending` (in order) start now, each with its share; the others wait, with the reason."""
    out = Scheduled()
    per_mailbox = max(1, b.connections_per_mailbox)
    slots = b.job_slots()
    running = len(b.active)
    conns = {s: sum(a.concurrency for a in b.active) * per_mailbox for s in SIDES}
    used_day = sum(used_last_day(u, b.now) for u in b.usage.values())
    taken_bytes = {s: sum((getattr(a, f"{s}_bytes_per_day") or 0) for a in b.active) for s in SIDES}
    taken_rate = {s: sum((getattr(a, f"{s}_messages_per_second") or 0.0) for a in b.active) for s in SIDES}
    blocked = False
    for job in pending:
        if blocked or running >= b.max_jobs:
            out.held += 1 if blocked else 0
            continue
        concurrency = min(b.mailbox_concurrency, len(job.mailboxes))
        for s in SIDES:
            limit = b.side(s).connections
            if limit:
                concurrency = min(concurrency, (limit - conns[s]) // per_mailbox)
        if concurrency < 1:
            side = next(s for s in SIDES if b.side(s).connections)
            out.hold(
                "ConnectionBudget",
                f"{side} connections: {conns[side]} of {b.side(side).connections} in use, a mailbox needs "
                f"{per_mailbox}; the next Job starts when a running one ends",
                None,
                b.now,
            )
            blocked = True
            continue
        spent = _spent_mailbox(job, b)
        if spent is not None:
            mailbox, side, wake = spent
            when = f"until {wake:%Y-%m-%dT%H:%M:%SZ}" if wake else "until its limit is raised"
            out.hold(
                "MailboxBudgetSpent",
                f"{mailbox} copied its {side} day's budget ({b.side(side).mailbox_bytes_per_day} bytes); "
                f"batch {job.batch} waits {when}",
                wake,
                b.now,
            )
            continue
        free = max(1, slots - running)
        share: dict[str, float | int | None] = {}
        for s in SIDES:
            lim = b.side(s)
            if lim.bytes_per_day:
                part = int((lim.bytes_per_day - used_day - taken_bytes[s]) // free)
                if part < max(1.0, lim.bytes_per_day / (24 * max(1, slots))):
                    out.hold(
                        "ByteBudgetSpent",
                        f"{s}: {used_day} of {lim.bytes_per_day} bytes/day copied in the last 24 hours and "
                        f"{taken_bytes[s]} handed to running Jobs; the next Job starts when copies leave "
                        "the window or a Job ends",
                        _window_frees(b.usage, b.now),
                        b.now,
                    )
                    blocked = True
                    break
                share[f"{s}_bytes_per_day"] = part
            if lim.messages_per_second:
                rate = (lim.messages_per_second - taken_rate[s]) / free
                if rate < MIN_MESSAGES_PER_SECOND:
                    out.hold(
                        "MessageBudgetSpent",
                        f"{s}: running Jobs hold {taken_rate[s]:g} of {lim.messages_per_second:g} messages/s",
                        None,
                        b.now,
                    )
                    blocked = True
                    break
                share[f"{s}_messages_per_second"] = round(rate, 3)
        if blocked:
            continue
        given = JobShare(concurrency, **share)  # type: ignore[arg-type]
        out.start.append(replace(job, share=given))
        running += 1
        for s in SIDES:
            conns[s] += concurrency * per_mailbox
            taken_bytes[s] += getattr(given, f"{s}_bytes_per_day") or 0
            taken_rate[s] += getattr(given, f"{s}_messages_per_second") or 0.0
    out.use = BudgetStatus(
        **{
            s: SideBudgetUse(
                connections=conns[s],
                bytes_per_day=taken_bytes[s] if b.side(s).bytes_per_day else None,
                messages_per_second=round(taken_rate[s], 3) if b.side(s).messages_per_second else None,
            )
            for s in SIDES
        },
        bytes_last_day=used_day,
        held_jobs=out.held,
        reason=out.reason,
        message=out.message,
    )
    return out


# ------------------------------------------------------------------------------------ ETA
def migration_rates(b: BudgetView, mailboxes_left: int, observed: float | None) -> Rates:
    """What the whole migration copies at: side budgets, and each mailbox's own for those copied at once."""

    def smallest(values: Sequence[float | None]) -> float | None:
        present = [v for v in values if v]
        return min(present) if present else None

    parallel = max(1, min(b.job_slots() * b.mailbox_concurrency, mailboxes_left))
    return Rates(
        bytes_per_day=smallest([b.source.bytes_per_day, b.destination.bytes_per_day]),
        messages_per_second=smallest([b.source.messages_per_second, b.destination.messages_per_second]),
        mailbox_bytes_per_day=smallest([b.source.mailbox_bytes_per_day, b.destination.mailbox_bytes_per_day]),
        mailbox_messages_per_second=smallest(
            [b.source.mailbox_messages_per_second, b.destination.mailbox_messages_per_second]
        ),
        parallel=parallel,
        observed_bytes_per_second=observed,
    )


def observed_rate(usage: Mapping[str, Sequence[UsageBucket]], now: datetime) -> float | None:
    """Bytes per second over the last day's copies, from the first copied hour until now (None: less
    than ten minutes of copying to go by)."""
    live = [bk for buckets in usage.values() for bk in buckets if bk.start + HOUR > now - DAY]
    if not live:
        return None
    span = (now - min(bk.start for bk in live)).total_seconds()
    total = sum(bk.bytes for bk in live)
    return total / span if span >= 600 and total > 0 else None


def migration_work(st: MailMigrationStatus, bulk_done: bool, largest_copied: int = 0) -> Work | None:
    """What is left: during the bulk copy the scan minus what was copied (and the largest mailbox minus
    its own copies, `largest_copied`); afterwards the pending messages at the average size copied so far.
    None: no scan yet."""
    scan, totals = st.scan, st.totals
    if scan is None or scan.completed_at is None or totals is None:
        return None
    average = totals.copied_bytes / totals.copied_messages if totals.copied_messages else 0.0
    if bulk_done:
        pending = st.lag.pending_messages if st.lag else 0
        return Work(bytes=round(pending * average), messages=pending)
    left = max(0, scan.bytes - totals.copied_bytes)
    done = totals.copied_messages + totals.skipped_messages
    largest = min(left, max(0, scan.largest_mailbox_bytes - largest_copied))
    return Work(left, max(0, scan.messages - done), largest)


def migration_eta(
    st: MailMigrationStatus,
    b: BudgetView,
    bulk_done: bool,
    mailboxes_left: int,
    started: bool,
    largest_copied: int = 0,
) -> Estimate:
    work = migration_work(st, bulk_done, largest_copied)
    if work is None:
        return Estimate(None, "NotScanned")
    observed = observed_rate(b.usage, b.now) if started else None
    return estimate(work, migration_rates(b, mailboxes_left, observed))


def write_eta(st: MailMigrationStatus, eta: Estimate, now: datetime) -> None:
    """Put `eta` in status, unless it moved less than the tolerance (then the stored one stays)."""
    at = eta.at(now.replace(microsecond=0))
    if at is not None and st.eta is not None and st.eta_reason == eta.reason and eta.seconds is not None:
        tolerance = max(ETA_TOLERANCE_SECONDS, 0.05 * eta.seconds)
        if abs((at - st.eta).total_seconds()) < tolerance:
            return
    st.eta, st.eta_seconds, st.eta_reason = at, eta.seconds, eta.reason
