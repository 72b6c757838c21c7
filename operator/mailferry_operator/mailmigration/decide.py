"""The MailMigration state machine as a pure function: (spec, status, MailboxSyncs, Jobs, now) -> plan.

Everything it needs is read back from the API on every pass (status, MailboxSync status, Jobs by label),
so an operator restart resumes exactly where the last one stopped, and Job names are deterministic so
nothing is created twice.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from mailferry_api.budgets import Estimate, JobShare
from mailferry_api.common import MAX_ERRORS, MAX_HISTORY, HistoryEntry
from mailferry_api.conditions import get_condition, is_true, set_condition, with_ready
from mailferry_api.mailmigration import MailboxError, MailMigrationStatus, RoundKind, RoundStatus

from . import aggregate, budgets, finalsync, followplan, proofs
from .batching import batch_size_of, started_round
from .durations import parse_duration, validation_retry_delay
from .plan import IDLE_REQUEUE, Event, Plan, Snapshot, ValidationPlan
from .rounds import drive_round, prunable_jobs
from .views import ANNOTATION_RETRY_FAILED, MailboxView

# Ready holds when these hold (and nothing is Stalled or Reconciling): `with_ready`.
READY_REQUIRES = ("Validated", "Approved", "BulkCopied")
RECONCILING_PHASES = ("Validating", "Syncing", "Completing")


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
    views = proofs.overlay(snap.mailboxes, snap.jobs)  # no-op mailboxes a Job proved without a write
    names = sorted(views)

    def note(type_: str, reason: str, message: str) -> None:
        events.append(Event(type_, reason, message))

    # --- the spec's problems and the connection test (which MailboxSyncs are tested so far)
    tested = snap.validated_names
    if snap.validation is not None:
        plan.ensure_mailboxsyncs = snap.problem is None and snap.inventory_ready
        plan.validation = schedule_validation(snap, st, events)
        running = snap.validation.running and not plan.validation.cancel and snap.validation.result is None
        tested = frozenset() if plan.validation.start else (snap.validation.tested if running else None)

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
    validating = tested is not None
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
    hold = finalsync.hold(snap.cutovers, now)
    # Jobs made before budgets carry no share: they hold the connections their concurrency implies.
    held = [j.share or JobShare(spec.worker.mailbox_concurrency) for j in active_jobs]
    budget = budgets.view_of(spec, held, {n: v.usage for n, v in views.items() if v.usage}, now)
    scheduled = budgets.schedule([], budget)

    if validated and approved and not completed:
        # --- start the first round
        if rnd.number == 0 and not spec.suspend:
            rnd = started_round(spec, 1, "bulk", now)
            note("Normal", "RoundStarted", "round 1 (bulk copy) started")

        # --- drive the current round
        if rnd.number > 0 and rnd.completed_at is None:
            n = rnd.number
            progress = drive_round(
                snap.name, n, batch_size_of(spec, rnd), views, jobs, failed_sources, tested, now, mark_failed
            )
            retrying = progress.retrying
            if rnd.kind == "follow":  # long-running follower Jobs instead of one-shot ones (followplan.py)
                progress.pending = [replace(p, follow=True) for p in progress.pending]
            quiet = proofs.noop_status_seconds(spec, rnd.kind)
            if quiet:  # a mailbox proved unchanged is not rewritten each round (proofs.py)
                progress.pending = [replace(p, noop_status_seconds=quiet) for p in progress.pending]
            if progress.requeue_after is not None:
                plan.requeue_after = min(plan.requeue_after, progress.requeue_after)
            if not spec.suspend:
                scheduled = budgets.schedule(progress.pending, budget)
                plan.create_jobs = scheduled.start
                if scheduled.wake_after is not None:
                    plan.requeue_after = min(plan.requeue_after, scheduled.wake_after)
                before = snap.status.budget
                if scheduled.reason and (before is None or before.reason != scheduled.reason):
                    note("Normal", "BudgetHold", f"{scheduled.held} Job(s) wait: {scheduled.message}")
            # the final sync in follow mode: every mailbox confirmed current after the drain
            final = (
                rnd.kind == "follow"
                and spec.complete
                and hold.released
                and not progress.all_done
                and followplan.final_reached(views.values(), failed_sources, snap.cutovers, now)
            )
            if final:
                rnd.completed_at = now
                completed = True
                st.completed_at = st.completed_at or now
                plan.create_jobs = []
                note("Normal", "RoundCompleted", f"round {n} (follow) completed: every mailbox current")
            elif progress.all_done and not progress.pending:
                rnd.completed_at = now
                what = {"bulk": "bulk copy", "delta": "delta", "final": "final delta", "follow": "follow"}
                note("Normal", "RoundCompleted", f"round {n} ({what[rnd.kind]}) completed")
            elif active_jobs or plan.create_jobs:
                plan.requeue_after = min(plan.requeue_after, 5.0)

        # --- between rounds: the next delta, the final one, or done
        if rnd.number > 0 and rnd.completed_at is not None:
            interval = parse_duration(spec.delta_interval)
            # a final round counts only if it started after every referencing cutover drained
            final_counts = rnd.kind == "final" and finalsync.allows(snap.cutovers, rnd.started_at)
            if completed:
                pass  # (the follow round's final sync, above)
            elif final_counts:
                completed = True
                if st.completed_at is None:
                    st.completed_at = now
            elif not spec.suspend:
                may_finish = spec.complete and hold.released
                follow = spec.delta_mode == "follow"
                if follow:  # followers right after the bulk copy, and again soon when they all ended
                    interval = followplan.next_round_after(rnd.kind, interval)
                due = (rnd.started_at or now) + timedelta(seconds=interval)
                if may_finish or retry_now or now >= due:
                    kind: RoundKind = "final" if may_finish else "follow" if follow else "delta"
                    rnd = started_round(spec, rnd.number + 1, kind, now)
                    note("Normal", "RoundStarted", f"round {rnd.number} ({kind}) started")
                    plan.requeue_after = 0.0
                else:
                    wake = (due - now).total_seconds()
                    if spec.complete and hold.wake_at is not None:
                        wake = min(wake, (hold.wake_at - now).total_seconds())
                    plan.requeue_after = min(plan.requeue_after, max(0.5, wake))

    st.round = rnd if rnd.number > 0 else st.round
    if completed and rnd.kind == "follow":
        plan.stop_jobs = followplan.to_stop(jobs, rnd.number)  # SIGTERM: they give the Leases back
    plan.prune_jobs = prunable_jobs(jobs, rnd.number)

    # --- aggregates
    all_views = list(views.values())
    since = None
    if st.round is not None and st.round.number > 0:
        since = next((h.time for h in st.history if h.phase == "Syncing"), None) or st.round.started_at
    st.totals = aggregate.totals(all_views)
    st.collection_totals = aggregate.collection_totals(all_views)
    st.lag = aggregate.lag(all_views, failed_sources, now, since if since else snap.created_at)
    st.mailboxes = aggregate.mailbox_counts(all_views, failed_sources)
    st.jobs = aggregate.job_counts(jobs)
    st.progress = aggregate.progress(st.totals)
    st.budget = scheduled.use

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
    elif st.round is not None and st.round.kind == "final" and st.round.completed_at is None:
        phase = "Completing"  # (a final round that does not count, the cutover rolled back: InSync)
    elif bulk_copied:
        phase = "InSync"
    else:
        phase = "Syncing"

    # --- ETA: from the scan and the budgets, then the throughput seen (kept when it barely moved)
    if completed:
        eta = Estimate(0, "Done")
    else:
        counts = st.mailboxes
        started = st.round is not None and st.round.number > 0
        largest = st.scan.largest_mailbox if st.scan else None
        largest_copied = next((v.bytes for v in all_views if largest and v.source == largest), 0)
        left = max(1, counts.total - counts.synced - counts.failed)
        eta = budgets.migration_eta(st, budget, bulk_copied, left, started, largest_copied)
    budgets.write_eta(st, eta, now)

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
    st.conditions, st.cutover = finalsync.report(st.conditions, hold, spec.complete, completed, gen, now)

    # --- phase transition: history + event
    if phase != st.phase:
        message = _phase_message(phase, st)
        st.history = [*st.history, HistoryEntry(time=now, phase=phase, reason=f"To{phase}", message=message)][
            -MAX_HISTORY:
        ]
        note("Warning" if phase == "Failed" else "Normal", phase, message)
        st.phase = phase  # type: ignore[assignment]

    # --- Ready, Flux-style: Stalled wins, then Reconciling, then what this resource requires
    blocked = phase == "Validating" and not is_true(st.conditions, "Validated") and not validating
    if phase in RECONCILING_PHASES and not blocked:  # a failed validation: Ready says why instead
        st.conditions = set_condition(
            st.conditions, "Reconciling", "True", phase, _phase_message(phase, st), gen, now
        )
    else:
        st.conditions = set_condition(st.conditions, "Reconciling", "False", phase, "", gen, now)
    st.conditions = with_ready(st.conditions, READY_REQUIRES, phase, "", gen, now)
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


# ------------------------------------------------------------------------------------ validation
def schedule_validation(snap: Snapshot, st: MailMigrationStatus, events: list[Event]) -> ValidationPlan:
    """When to test every mailbox's login (and scan the source), and what the Validated condition says.

    A problem of the spec (unreadable inventory, a check, a conflict) blocks it and cancels a running
    test; a finished test is folded in (a failed one is retried with back-off: 30 s doubling to 15 min,
    since every test logs in to every mailbox); a new spec generation or retry token tests at once."""
    v = snap.validation
    assert v is not None
    gen, now = snap.generation, snap.now
    total = len(snap.mailboxes)
    failures, next_at, trigger = v.failures, v.next_at, v.trigger
    wanted = (gen, snap.spec.retry_failed or snap.retry_annotation)
    if wanted != trigger:  # a new spec or a retry request: test now, back-off reset
        trigger, failures, next_at = wanted, 0, 0.0
    if snap.problem is not None:
        reason, message = snap.problem.reason, snap.problem.message
        before = get_condition(st.conditions, "Validated")
        if before is None or (before.reason, before.message) != (reason, message):
            events.append(Event("Warning", reason, message))
        st.conditions = set_condition(st.conditions, "Validated", "False", reason, message, gen, now)
        # one started before the problem appeared: its result no longer holds
        return ValidationPlan(False, v.running, failures, next_at, trigger)
    if v.crashed or v.result is not None:
        retry_in = None
        found = get_condition(v.result.conditions, "Validated") if v.result is not None else None
        if v.result is not None and v.result.scan is not None:
            st.scan = v.result.scan
        if v.crashed or (found is not None and found.status != "True"):
            retry_in = validation_retry_delay(failures)
            failures, next_at = failures + 1, v.now + retry_in
        else:
            failures = 0
        if found is not None:
            found = found.model_copy()
            if found.status != "True":
                found.message = (
                    f"{found.message}; tested again in {retry_in:.0f}s, or at once when the spec changes "
                    f"or spec.retryFailed / the {ANNOTATION_RETRY_FAILED} annotation gets a new value"
                )
                events.append(Event("Warning", found.reason, found.message))
            else:
                events.append(Event("Normal", "Validated", found.message))
            st.conditions = [c for c in st.conditions if c.type != "Validated"] + [found]
        return ValidationPlan(False, False, failures, next_at, trigger, retry_in, folded=True)
    if v.running:
        st.conditions = set_condition(
            st.conditions,
            "Validated",
            "Unknown",
            "InProgress",
            f"{len(v.tested)} of {total} mailboxes tested",
            gen,
            now,
        )
        return ValidationPlan(False, False, failures, next_at, trigger)
    validated = get_condition(st.conditions, "Validated")
    due = (
        snap.problem is None
        and snap.inventory_ready
        and (
            validated is None
            or (validated.status == "Unknown" and validated.reason == "InProgress")  # a restart cut it short
            or (validated.status != "True" and v.now >= next_at)
        )
    )
    if due:
        events.append(Event("Normal", "Validating", f"testing {total} mailboxes on source and destination"))
        st.conditions = set_condition(
            st.conditions, "Validated", "Unknown", "InProgress", f"0 of {total} mailboxes tested", gen, now
        )
    return ValidationPlan(due, False, failures, next_at, trigger)


def invalid_spec_status(status: MailMigrationStatus, generation: int, now: datetime) -> MailMigrationStatus:
    """The spec does not parse (the CRD schema let something through the model refuses)."""
    st = status.model_copy(deep=True)
    st.conditions = set_condition(
        st.conditions, "Stalled", "True", "InvalidSpec", "spec is invalid", generation, now
    )
    st.conditions = with_ready(st.conditions, READY_REQUIRES, "InvalidSpec", "", generation, now)
    st.phase = "Failed"
    return st
