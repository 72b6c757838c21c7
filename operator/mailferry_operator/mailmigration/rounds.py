"""One round's batches, pure: which Jobs to create, which batches are done, which mailboxes failed."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .batching import plan_batches
from .naming import job_name
from .plan import JobPlan
from .views import JobView, MailboxView

MAX_JOB_ATTEMPTS = 3  # a batch whose Job failed this often: its unfinished mailboxes are marked failed
RETRY_BASE_SECONDS = 10.0
RETRY_MAX_SECONDS = 300.0
# A Job's success and its mailboxes' final status arrive on different watch streams: wait this long
# for the MailboxSync status to catch up before trusting the Job alone.
STATUS_GRACE_SECONDS = 20.0
# Reasons after which retrying the same credentials/config cannot help.
PERMANENT_REASONS = frozenset(
    {"AuthenticationFailed", "AuthorizationFailed", "ConfigurationError", "MailboxNotFound", "SecretNotFound"}
)

# Finished Jobs of older rounds are deleted (with their pods): a round every 15 minutes for weeks leaves
# a Job per batch each time (10,000 mailboxes: 19,200 a day), and every pass reads them all.
KEPT_ROUNDS = 2  # the current round's Jobs and the one's before stay: their pods' logs are still wanted
PRUNED_PER_PASS = 50  # a burst of deletes must not hold up the pass that starts the next round's Jobs

MarkFailed = Callable[[MailboxView, str, str], None]


def prunable_jobs(jobs: Sequence[JobView], current_round: int, limit: int = PRUNED_PER_PASS) -> list[str]:
    """Finished Jobs of rounds before the last KEPT_ROUNDS, oldest first, at most `limit`. A Job still
    running is never deleted, whatever its round."""
    old = [j for j in jobs if j.finished and j.round <= current_round - KEPT_ROUNDS]
    old.sort(key=lambda j: (j.round, j.batch, j.attempt))
    return [j.name for j in old[:limit]]


def retry_backoff(attempts: int) -> float:
    """Seconds to wait before attempt number `attempts` (1 = first retry)."""
    return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


@dataclass
class RoundProgress:
    pending: list[JobPlan] = field(default_factory=list)  # Jobs due now, in batch order
    all_done: bool = True
    retrying: bool = False
    requeue_after: float | None = None  # look again this soon (a grace period or a retry back-off)

    def soon(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


def drive_round(
    migration: str,
    number: int,
    batch_size: int,
    views: Mapping[str, MailboxView],
    jobs: Sequence[JobView],
    failed_sources: Collection[str],
    tested: frozenset[str] | None,
    now: datetime,
    mark_failed: MarkFailed,
) -> RoundProgress:
    """Walk the batches of round `number` (every mailbox, failed ones left out of new Jobs so batch
    numbers never shift) against the Jobs that exist. `tested`: while validation still runs, a batch
    starts only when all its members are tested."""
    progress = RoundProgress()
    by_batch: dict[int, list[JobView]] = {}
    for j in jobs:
        if j.round == number:
            by_batch.setdefault(j.batch, []).append(j)
    failed_names = {v.name for v in views.values() if v.source in failed_sources}
    for b, planned in enumerate(plan_batches(sorted(views), batch_size)):
        members = [m for m in planned if m not in failed_names]
        attempts = sorted(by_batch.get(b, []), key=lambda j: j.attempt)
        if not attempts:
            if members:
                progress.all_done = False
                if tested is None or all(m in tested for m in members):
                    progress.pending.append(
                        JobPlan(job_name(migration, number, b), number, b, 0, tuple(members))
                    )
            continue
        latest = attempts[-1]
        if latest.active:
            progress.all_done = False
            continue
        ran = [views[m] for m in latest.mailboxes if m in views]
        if latest.succeeded:
            unsettled = [v for v in ran if v.round < number and v.phase != "Failed"]
            age = (now - latest.finished_at).total_seconds() if latest.finished_at else 1e9
            if unsettled and age < STATUS_GRACE_SECONDS:
                progress.all_done = False
                progress.soon(2.0)
                continue
            for v in ran:
                if v.phase == "Failed":
                    mark_failed(v, v.error_reason, v.error_message)
            continue
        # the latest attempt failed
        for v in ran:
            if v.phase == "Failed" and v.error_reason in PERMANENT_REASONS:
                mark_failed(v, v.error_reason, v.error_message)
        remaining = [
            m
            for m in members
            if m not in failed_names
            and views[m].source not in failed_sources
            and not (views[m].round >= number and views[m].phase == "Synced")
        ]
        if not remaining:
            continue
        tries = latest.attempt + 1
        if tries >= MAX_JOB_ATTEMPTS:
            for m in remaining:
                v = views[m]
                mark_failed(
                    v,
                    v.error_reason or "RetriesExhausted",
                    v.error_message or f"{tries} worker Job attempts failed",
                )
            continue
        progress.all_done = False
        progress.retrying = True
        due = (latest.finished_at or now) + timedelta(seconds=retry_backoff(tries))
        if now >= due:
            progress.pending.append(
                JobPlan(job_name(migration, number, b, tries), number, b, tries, tuple(remaining))
            )
        else:
            progress.soon((due - now).total_seconds())
    return progress
