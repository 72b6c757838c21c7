"""The MailMigration state machine, driven pass by pass with hand-made MailboxSync/Job summaries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mailferry_api.conditions import get_condition, set_condition
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus
from mailferry_operator.mailmigration.decide import decide
from mailferry_operator.mailmigration.plan import Plan, Snapshot
from mailferry_operator.mailmigration.rounds import (
    MAX_JOB_ATTEMPTS,
    PRUNED_PER_PASS,
    prunable_jobs,
    retry_backoff,
)
from mailferry_operator.mailmigration.views import JobView, MailboxView

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_spec(**over: Any) -> MailMigrationSpec:
    ep = {"host": "imap.test", "port": 143, "security": "none", "auth": {"secretRef": {"name": "s"}}}
    body: dict[str, Any] = {
        "source": ep,
        "destination": ep,
        "mailboxes": [],
        "batchSize": 2,
        "maxConcurrentJobs": 2,
        "deltaInterval": "60s",
    }
    body.update(over)
    return MailMigrationSpec.model_validate(body)


def validated_status() -> MailMigrationStatus:
    st = MailMigrationStatus()
    st.conditions = set_condition([], "Validated", "True", "AllMailboxesReachable", "", 1, T0)
    return st


def boxes(n: int, **state: Any) -> dict[str, MailboxView]:
    return {f"m{i}": MailboxView(name=f"m{i}", source=f"u{i}@a.test", **state) for i in range(n)}


def step(
    spec: MailMigrationSpec,
    status: MailMigrationStatus,
    mailboxes: dict[str, MailboxView],
    jobs: list[JobView],
    now: datetime,
    **kw: Any,
) -> Plan:
    return decide(Snapshot("acme", 1, spec, status, mailboxes, jobs, now, **kw))


def as_jobs(plan: Plan, active: bool = True) -> list[JobView]:
    return [
        JobView(j.name, j.round, j.batch, j.attempt, j.mailboxes, active=active) for j in plan.create_jobs
    ]


def finish(job: JobView, ok: bool, at: datetime) -> JobView:
    return replace(job, active=False, succeeded=ok, failed=not ok, finished_at=at)


def synced(views: dict[str, MailboxView], names: tuple[str, ...], round_: int, at: datetime) -> None:
    for n in names:
        views[n] = replace(views[n], phase="Synced", round=round_, last_sync_time=at, messages=10, copied=10)


def cond(plan: Plan, type_: str) -> tuple[str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason


def test_not_validated_stays_validating_and_creates_nothing() -> None:
    plan = step(make_spec(), MailMigrationStatus(), boxes(3), [], T0)
    assert plan.status.phase == "Validating" and plan.create_jobs == []


def test_approval_gate_then_annotation_approves() -> None:
    spec = make_spec(approval={"required": True})
    plan = step(spec, validated_status(), boxes(3), [], T0)
    assert plan.status.phase == "AwaitingApproval" and plan.create_jobs == []
    assert cond(plan, "Approved") == ("False", "AwaitingApproval")
    plan = step(spec, plan.status, boxes(3), [], T0, approved_annotation=True)
    assert cond(plan, "Approved") == ("True", "Approved")
    assert plan.status.phase == "Syncing" and len(plan.create_jobs) == 2


def test_full_lifecycle_bulk_delta_final() -> None:
    spec = make_spec()
    views = boxes(5)
    plan = step(spec, validated_status(), views, [], T0)
    assert plan.status.phase == "Syncing"
    assert [j.name for j in plan.create_jobs] == [
        "acme-r1-b0",
        "acme-r1-b1",
    ]  # maxConcurrentJobs=2 of 3 batches
    assert plan.create_jobs[0].mailboxes == ("m0", "m1")
    jobs = as_jobs(plan)
    # a repeated pass (restart, or watch lag) with the same jobs creates nothing new
    again = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=1))
    assert again.create_jobs == []
    # batch 0 finishes: batch 2 starts
    t1 = T0 + timedelta(seconds=10)
    synced(views, ("m0", "m1"), 1, T0)
    jobs[0] = finish(jobs[0], True, t1)
    plan = step(spec, again.status, views, jobs, t1)
    assert [j.name for j in plan.create_jobs] == ["acme-r1-b2"]
    jobs += as_jobs(plan)
    synced(views, ("m2", "m3", "m4"), 1, T0)
    jobs = [finish(j, True, t1) for j in jobs]
    t2 = T0 + timedelta(seconds=20)
    plan = step(spec, plan.status, views, jobs, t2)
    assert plan.status.round is not None and plan.status.round.completed_at == t2
    assert plan.status.phase == "InSync"
    assert cond(plan, "BulkCopied") == ("True", "BulkRoundCompleted")
    assert cond(plan, "Ready") == ("True", "InSync")
    assert plan.status.progress == "50/50"
    assert plan.status.lag is not None and plan.status.lag.max_seconds == 20
    assert any(e.reason == "RoundCompleted" for e in plan.events)
    assert [h.phase for h in plan.status.history] == ["Syncing", "InSync"]
    # not yet time for a delta
    plan = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=30))
    assert plan.create_jobs == [] and 25 <= plan.requeue_after <= 31
    # delta round after deltaInterval (60s from the round's start)
    t3 = T0 + timedelta(seconds=61)
    plan = step(spec, plan.status, views, jobs, t3)
    assert plan.status.round is not None and (plan.status.round.number, plan.status.round.kind) == (
        2,
        "delta",
    )
    plan = step(spec, plan.status, views, jobs, t3)
    assert [j.name for j in plan.create_jobs] == ["acme-r2-b0", "acme-r2-b1"]
    assert plan.status.lag.max_seconds == 61  # lag rises until the delta lands
    jobs += as_jobs(plan)
    # complete=true during a delta: the delta finishes, then one final round, then Completed
    spec = make_spec(complete=True)
    t4 = t3 + timedelta(seconds=5)
    synced(views, tuple(views), 2, t3)
    jobs = [finish(j, True, t4) if j.active else j for j in jobs]
    plan = step(spec, plan.status, views, jobs, t4)
    assert plan.status.lag.max_seconds == 5  # ... and falls
    plan = step(spec, plan.status, views, jobs, t4)
    assert [j.name for j in plan.create_jobs][:1] == ["acme-r2-b2"]
    jobs += [finish(j, True, t4) for j in as_jobs(plan)]
    plan = step(spec, plan.status, views, jobs, t4)
    assert plan.status.round is not None and (plan.status.round.number, plan.status.round.kind) == (
        3,
        "final",
    )
    assert plan.status.phase == "Completing"
    plan = step(spec, plan.status, views, jobs, t4)
    jobs += as_jobs(plan)
    synced(views, tuple(views), 3, t4)
    jobs = [finish(j, True, t4) if j.active else j for j in jobs]
    for _ in range(3):
        plan = step(spec, plan.status, views, jobs, t4 + timedelta(seconds=1))
        jobs += [finish(j, True, t4) for j in as_jobs(plan)]
        synced(views, tuple(views), 3, t4)
    assert plan.status.phase == "Completed" and plan.status.completed_at is not None
    assert cond(plan, "Ready") == ("True", "Completed")
    final = step(spec, plan.status, views, jobs, t4 + timedelta(hours=1))
    assert final.create_jobs == [] and final.status.phase == "Completed"
    # round 3 is the last: round 1's Jobs go, rounds 2 and 3 keep theirs (their pods' logs)
    assert final.prune_jobs == ["acme-r1-b0", "acme-r1-b1", "acme-r1-b2"]


def test_only_finished_jobs_of_rounds_before_the_last_two_are_pruned_oldest_first() -> None:
    def job(round_: int, batch: int, attempt: int = 0, done: bool = True) -> JobView:
        view = JobView(
            f"acme-r{round_}-b{batch}-a{attempt}", round_, batch, attempt, (f"m{batch}",), active=True
        )
        return finish(view, attempt == 0, T0) if done else view

    jobs = [job(3, 0, done=False), job(2, 1), job(1, 1, 1), job(1, 1), job(1, 2, done=False), job(2, 0)]
    assert prunable_jobs(jobs, 3) == ["acme-r1-b1-a0", "acme-r1-b1-a1"]  # failed or not; never one running
    assert prunable_jobs(jobs, 4) == ["acme-r1-b1-a0", "acme-r1-b1-a1", "acme-r2-b0-a0", "acme-r2-b1-a0"]
    assert prunable_jobs(jobs, 2) == [] == prunable_jobs(jobs, 0)
    many = [job(1, b) for b in range(PRUNED_PER_PASS + 30)]
    first = prunable_jobs(many, 5)
    assert first == [j.name for j in many[:PRUNED_PER_PASS]]  # a bounded burst per pass, the rest next
    assert prunable_jobs([j for j in many if j.name not in first], 5) == [
        j.name for j in many[PRUNED_PER_PASS:]
    ]


def test_permanent_failure_of_one_mailbox_others_go_on() -> None:
    spec = make_spec(batchSize=10)
    views = boxes(4)
    plan = step(spec, validated_status(), views, [], T0)
    jobs = as_jobs(plan)
    assert jobs[0].mailboxes == ("m0", "m1", "m2", "m3")
    synced(views, ("m0", "m1", "m3"), 1, T0)
    views["m2"] = replace(
        views["m2"], phase="Failed", error_reason="AuthenticationFailed", error_message="login refused"
    )
    t1 = T0 + timedelta(seconds=5)
    jobs = [finish(jobs[0], True, t1)]  # exit 0: permanent failures are not retried
    plan = step(spec, plan.status, views, jobs, t1)
    assert [(e.mailbox, e.reason) for e in plan.status.failed_mailboxes] == [
        ("u2@a.test", "AuthenticationFailed")
    ]
    assert cond(plan, "Stalled") == ("True", "MailboxesFailed")
    assert "u2@a.test (AuthenticationFailed)" in get_condition(plan.status.conditions, "Stalled").message  # type: ignore[union-attr]
    assert cond(plan, "Ready") == ("False", "MailboxesFailed")
    assert plan.status.phase == "InSync"
    assert plan.status.mailboxes is not None and plan.status.mailboxes.failed == 1
    # the next round leaves the failed mailbox out
    plan = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=61))
    plan = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=61))
    assert plan.create_jobs[0].mailboxes == ("m0", "m1", "m3")
    # retryFailed brings it back
    retry = make_spec(batchSize=10, retryFailed="1")
    plan = step(retry, plan.status, views, jobs + as_jobs(plan), T0 + timedelta(seconds=62))
    assert plan.status.failed_mailboxes == [] and plan.status.retried_failed == "1"


def test_failed_job_is_retried_with_backoff_then_mailboxes_fail() -> None:
    spec = make_spec(batchSize=10, deltaInterval="1d")
    views = boxes(2)
    plan = step(spec, validated_status(), views, [], T0)
    job = as_jobs(plan)[0]
    jobs = [finish(job, False, T0)]
    views["m1"] = replace(views["m1"], phase="Synced", round=1)
    plan = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=1))
    assert plan.create_jobs == [] and cond(plan, "Stalled") == ("True", "JobRetrying")
    assert plan.requeue_after <= retry_backoff(1)
    t = T0 + timedelta(seconds=retry_backoff(1))
    plan = step(spec, plan.status, views, jobs, t)
    assert [(j.name, j.mailboxes) for j in plan.create_jobs] == [("acme-r1-b0-a1", ("m0",))]
    for attempt in range(1, MAX_JOB_ATTEMPTS):
        jobs.append(finish(JobView(f"acme-r1-b0-a{attempt}", 1, 0, attempt, ("m0",)), False, t))
    views["m0"] = replace(
        views["m0"], phase="Syncing", error_reason="ConnectionFailed", error_message="refused"
    )
    plan = step(spec, plan.status, views, jobs, t + timedelta(hours=1))
    assert [(e.mailbox, e.reason) for e in plan.status.failed_mailboxes] == [
        ("u0@a.test", "ConnectionFailed")
    ]
    assert plan.status.round is not None and plan.status.round.completed_at is not None


def test_suspend_stops_new_jobs_and_resume_continues() -> None:
    views = boxes(4)
    plan = step(make_spec(suspend=True), validated_status(), views, [], T0)
    assert plan.status.phase == "Suspended" and plan.create_jobs == []
    plan = step(make_spec(), plan.status, views, [], T0)
    assert plan.status.phase == "Syncing" and len(plan.create_jobs) == 2
    jobs = as_jobs(plan)
    plan = step(make_spec(suspend=True), plan.status, views, jobs, T0)
    assert plan.status.phase == "Suspended" and plan.create_jobs == []
    assert plan.status.jobs is not None and plan.status.jobs.active == 2  # running ones finish


def test_job_success_waits_briefly_for_mailbox_status() -> None:
    spec = make_spec(batchSize=10, deltaInterval="1d")
    views = boxes(1)
    plan = step(spec, validated_status(), views, [], T0)
    jobs = [finish(as_jobs(plan)[0], True, T0)]
    plan = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=1))
    assert plan.status.round is not None and plan.status.round.completed_at is None
    plan = step(spec, plan.status, views, jobs, T0 + timedelta(seconds=60))
    assert plan.status.round is not None and plan.status.round.completed_at is not None


def test_batches_start_while_validation_still_runs() -> None:
    spec = make_spec(batchSize=2, maxConcurrentJobs=5)
    views = boxes(5)
    plan = step(spec, MailMigrationStatus(), views, [], T0, validated_names=frozenset())
    assert plan.create_jobs == [] and plan.status.round is not None and plan.status.round.number == 1
    plan = step(spec, plan.status, views, [], T0, validated_names=frozenset({"m0", "m1", "m2"}))
    assert [j.mailboxes for j in plan.create_jobs] == [("m0", "m1")]  # m3 untested: batch 1 waits
    assert plan.status.round is not None and plan.status.round.completed_at is None
    # with approval required nothing starts before the whole scan is done
    gated = make_spec(approval={"required": True, "approved": True})
    plan = step(gated, MailMigrationStatus(), views, [], T0, validated_names=frozenset(views))
    assert plan.create_jobs == [] and plan.status.phase == "Validating"
