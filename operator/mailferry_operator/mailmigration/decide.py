"""The MailMigration state machine as a pure function: (spec, status, MailboxSyncs, Jobs, now) -> plan.

Everything it needs is read back from the API on every pass (status, MailboxSync status, Jobs by label),
so an operator restart resumes exactly where the last one stopped, and Job names are deterministic so
nothing is created twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailferry_api.common import MAX_ERRORS, MAX_HISTORY, HistoryEntry
from mailferry_api.conditions import get_condition, is_true, set_condition
from mailferry_api.mailmigration import MailboxError, MailMigrationSpec, MailMigrationStatus, RoundStatus

from . import aggregate
from .batching import plan_batches
from .durations import parse_duration
from .naming import job_name
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
IDLE_REQUEUE = 30.0


@dataclass(frozen=True)
class JobPlan:
    name: str
    round: int
    batch: int
    attempt: int
    mailboxes: tuple[str, ...]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Snapshot:
    name: str
    generation: int
    spec: MailMigrationSpec
    status: MailMigrationStatus
    mailboxes: Mapping[str, MailboxView]  # by MailboxSync name: the current inventory only
    jobs: Sequence[JobView]
    now: datetime
    approved_annotation: bool = False
    retry_annotation: str | None = None
    created_at: datetime | None = None
    # While validation still runs (no approval needed): the MailboxSyncs tested so far; a batch starts
    # once all its members are tested. None: validation is not running.
    validated_names: frozenset[str] | None = None


@dataclass
class Plan:
    status: MailMigrationStatus
    create_jobs: list[JobPlan] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float = IDLE_REQUEUE


def retry_backoff(attempts: int) -> float:
    """Seconds to wait before attempt number `attempts` (1 = first retry)."""
    return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def _failed_entry(view: MailboxView, reason: str, message: str) -> MailboxError:
    return MailboxError(
        mailbox=view.source[:320], reason=(reason or "SyncFailed")[:128], message=message[:1024]
    )


def decide(snap: Snapshot) -> Plan:
    spec = snap.spec
    now = snap.now
    st = snap.status.model_copy(deep=True)
    plan = Plan(status=st)
    events = plan.events
    gen = snap.generation
    views = snap.mailboxes
    names = sorted(views)

    def note(type_: str, reason: str, message: str) -> None:
        events.append(Event(type_, reason, message))

    # --- retry of failed mailboxes (spec field or annotation; a new value means "once more")
    retry_token = spec.retry_failed or snap.retry_annotation
    retry_now = False
    if retry_token and retry_token != st.retried_failed:
        if st.failed_mailboxes:
            note("Normal", "RetryingFailed", f"retrying {len(st.failed_mailboxes)} failed mailbox(es)")
            retry_now = True
        st.failed_mailboxes = []
        st.retried_failed = retry_token[:63]
    failed_sources = {e.mailbox for e in st.failed_mailboxes}

    def mark_failed(view: MailboxView, reason: str, message: str) -> None:
        if view.source in failed_sources:
            return
        failed_sources.add(view.source)
        if len(st.failed_mailboxes) < MAX_ERRORS:
            st.failed_mailboxes.append(_failed_entry(view, reason, message))
        note("Warning", "MailboxFailed", f"{view.source}: {reason}")

    # --- approval
    validating = snap.validated_names is not None
    validated = is_true(st.conditions, "Validated") or (validating and not spec.approval.required)
    if not spec.approval.required:
        st.conditions = set_condition(st.conditions, "Approved", "True", "ApprovalNotRequired", "", gen, now)
    elif spec.approval.approved or snap.approved_annotation or is_true(st.conditions, "Approved"):
        if not is_true(st.conditions, "Approved"):
            note("Normal", "Approved", "migration approved: copying may start")
        st.conditions = set_condition(st.conditions, "Approved", "True", "Approved", "approved", gen, now)
    else:
        st.conditions = set_condition(
            st.conditions,
            "Approved",
            "False",
            "AwaitingApproval",
            "set spec.approval.approved=true or annotate mailferry.io/approved=true",
            gen,
            now,
        )
    approved = is_true(st.conditions, "Approved")

    rnd = st.round or RoundStatus(number=0)
    completed = st.phase == "Completed"
    jobs = list(snap.jobs)
    active_jobs = [j for j in jobs if j.active]
    retrying = False

    if validated and approved and not completed:
        # --- start the first round
        if rnd.number == 0 and not spec.suspend:
            rnd = RoundStatus(number=1, kind="bulk", started_at=now)
            note("Normal", "RoundStarted", "round 1 (bulk copy) started")

        # --- drive the current round
        if rnd.number > 0 and rnd.completed_at is None:
            n = rnd.number
            by_batch: dict[int, list[JobView]] = {}
            for j in jobs:
                if j.round == n:
                    by_batch.setdefault(j.batch, []).append(j)
            pending: list[JobPlan] = []
            all_done = True
            failed_names = {v.name for v in views.values() if v.source in failed_sources}
            for b, planned in enumerate(plan_batches(names, spec.batch_size)):
                members = [m for m in planned if m not in failed_names]
                attempts = sorted(by_batch.get(b, []), key=lambda j: j.attempt)
                if not attempts:
                    if members:
                        all_done = False
                        untested = snap.validated_names is not None and any(
                            m not in snap.validated_names for m in members
                        )
                        if not untested:
                            pending.append(JobPlan(job_name(snap.name, n, b), n, b, 0, tuple(members)))
                    continue
                latest = attempts[-1]
                if latest.active:
                    all_done = False
                    continue
                ran = [views[m] for m in latest.mailboxes if m in views]
                if latest.succeeded:
                    unsettled = [v for v in ran if v.round < n and v.phase != "Failed"]
                    age = (now - latest.finished_at).total_seconds() if latest.finished_at else 1e9
                    if unsettled and age < STATUS_GRACE_SECONDS:
                        all_done = False
                        plan.requeue_after = min(plan.requeue_after, 2.0)
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
                    and not (views[m].round >= n and views[m].phase == "Synced")
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
                all_done = False
                retrying = True
                due = (latest.finished_at or now) + timedelta(seconds=retry_backoff(tries))
                if now >= due:
                    pending.append(JobPlan(job_name(snap.name, n, b, tries), n, b, tries, tuple(remaining)))
                else:
                    plan.requeue_after = min(plan.requeue_after, (due - now).total_seconds())

            if not spec.suspend:
                slots = max(0, spec.max_concurrent_jobs - len(active_jobs))
                plan.create_jobs = pending[:slots]
            if all_done and not pending:
                rnd.completed_at = now
                kind = {"bulk": "bulk copy", "delta": "delta", "final": "final delta"}[rnd.kind]
                note("Normal", "RoundCompleted", f"round {n} ({kind}) completed")
            elif active_jobs or plan.create_jobs:
                plan.requeue_after = min(plan.requeue_after, 5.0)

        # --- between rounds: the next delta, the final one, or done
        if rnd.number > 0 and rnd.completed_at is not None:
            interval = parse_duration(spec.delta_interval)
            if rnd.kind == "final":
                completed = True
                if st.completed_at is None:
                    st.completed_at = now
            elif not spec.suspend:
                due = (rnd.started_at or now) + timedelta(seconds=interval)
                if spec.complete or retry_now or now >= due:
                    kind = "final" if spec.complete else "delta"
                    rnd = RoundStatus(number=rnd.number + 1, kind=kind, started_at=now)
                    note("Normal", "RoundStarted", f"round {rnd.number} ({kind}) started")
                    plan.requeue_after = 0.0
                else:
                    plan.requeue_after = min(plan.requeue_after, max(0.5, (due - now).total_seconds()))

    st.round = rnd if rnd.number > 0 else st.round

    # --- aggregates
    all_views = list(views.values())
    since = None
    if st.round is not None and st.round.number > 0:
        since = next((h.time for h in st.history if h.phase == "Syncing"), None) or st.round.started_at
    st.totals = aggregate.totals(all_views)
    st.lag = aggregate.lag(all_views, failed_sources, now, since if since else snap.created_at)
    st.mailboxes = aggregate.mailbox_counts(all_views, failed_sources)
    st.jobs = aggregate.job_counts(jobs)
    st.progress = aggregate.progress(st.totals)

    # --- phase
    bulk_copied = st.round is not None and (st.round.number > 1 or st.round.completed_at is not None)
    all_failed = bool(names) and st.mailboxes.failed >= len(names)
    if completed:
        phase = "Completed"
    elif spec.suspend:
        phase = "Suspended"
    elif not validated or (validating and (st.round is None or st.round.number == 0)):
        phase = "Validating"
    elif not approved:
        phase = "AwaitingApproval"
    elif all_failed and st.round is not None and st.round.completed_at is not None:
        phase = "Failed"
    elif st.round is not None and st.round.kind == "final":
        phase = "Completing"
    elif bulk_copied:
        phase = "InSync"
    else:
        phase = "Syncing"

    # --- conditions
    nfail = len(failed_sources)
    if nfail:
        sample = ", ".join(f"{e.mailbox} ({e.reason})" for e in st.failed_mailboxes[:5])
        more = f" and {nfail - 5} more" if nfail > 5 else ""
        st.conditions = set_condition(
            st.conditions,
            "Stalled",
            "True",
            "MailboxesFailed",
            f"{nfail} of {len(names)} mailboxes failed: {sample}{more}; the others go on",
            gen,
            now,
        )
    elif retrying:
        st.conditions = set_condition(
            st.conditions,
            "Stalled",
            "True",
            "JobRetrying",
            "a worker Job failed; retrying with backoff",
            gen,
            now,
        )
    else:
        st.conditions = set_condition(st.conditions, "Stalled", "False", "Progressing", "", gen, now)

    if bulk_copied:
        st.conditions = set_condition(
            st.conditions,
            "BulkCopied",
            "True",
            "BulkRoundCompleted",
            "round 1 (bulk copy) completed",
            gen,
            now,
        )
    else:
        reason = "BulkInProgress" if st.round is not None and st.round.number > 0 else "NotStarted"
        st.conditions = set_condition(st.conditions, "BulkCopied", "False", reason, "", gen, now)

    if bulk_copied and st.lag.pending_messages == 0 and not all_failed:
        reason = "Completed" if completed else "DeltaRounds"
        st.conditions = set_condition(
            st.conditions,
            "InSync",
            "True",
            reason,
            f"max lag {st.lag.max_seconds}s, every {spec.delta_interval}",
            gen,
            now,
        )
    else:
        reason = "MessagesPending" if bulk_copied else "BulkInProgress"
        st.conditions = set_condition(
            st.conditions, "InSync", "False", reason, f"{st.lag.pending_messages} messages pending", gen, now
        )

    if phase in ("InSync", "Completed") and not nfail:
        st.conditions = set_condition(st.conditions, "Ready", "True", phase, "", gen, now)
    elif phase in ("InSync", "Completed"):
        st.conditions = set_condition(
            st.conditions, "Ready", "False", "MailboxesFailed", f"{nfail} mailbox(es) failed", gen, now
        )
    else:
        st.conditions = set_condition(st.conditions, "Ready", "False", phase, "", gen, now)

    # --- phase transition: history + event
    if phase != st.phase:
        message = _phase_message(phase, st)
        st.history = [*st.history, HistoryEntry(time=now, phase=phase, reason=f"To{phase}", message=message)][
            -MAX_HISTORY:
        ]
        note("Warning" if phase == "Failed" else "Normal", phase, message)
        st.phase = phase  # type: ignore[assignment]
    st.observed_generation = gen
    if completed or (spec.suspend and not active_jobs):
        plan.requeue_after = max(plan.requeue_after, IDLE_REQUEUE)
    return plan


def _phase_message(phase: str, st: MailMigrationStatus) -> str:
    n = st.round.number if st.round else 0
    counts = st.mailboxes
    total = counts.total if counts else 0
    if phase == "AwaitingApproval" and st.scan is not None:
        return (
            f"scan: {st.scan.mailboxes} mailboxes, {st.scan.folders} folders, {st.scan.messages} messages, "
            f"{st.scan.bytes} bytes; waiting for approval"
        )
    if phase == "Completed":
        return f"completed after {n} rounds; {st.progress} messages"
    if phase == "Failed":
        return f"all {total} mailboxes failed"
    return f"round {n}; {st.progress} messages; {total} mailboxes"


def validated_condition_missing(status: MailMigrationStatus) -> bool:
    return get_condition(status.conditions, "Validated") is None
