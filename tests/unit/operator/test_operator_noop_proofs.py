"""A delta round's no-op mailboxes proved by their Job's success (mailmigration/proofs.py), through the
whole pass (decide), the Job the operator builds and the JobView it reads back."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

from test_operator_reconcile import T0, as_jobs, boxes, finish, make_spec, step, synced, validated_status

from mailferry_operator.mailmigration.plan import JobPlan
from mailferry_operator.mailmigration.proofs import overlay
from mailferry_operator.mailmigration.resources import job_body
from mailferry_operator.mailmigration.views import ENV_NOOP_STATUS, JobView, MailboxView, job_view


def clean(views: dict[str, MailboxView], round_: int, at: datetime) -> None:
    """Synced in `round_` at `at`, status written for generation 1 (as a worker leaves it)."""
    synced(views, tuple(views), round_, at)
    for n, v in views.items():
        views[n] = replace(v, generation="1", observed_generation=1)


def proving(name: str, round_: int, mailboxes: tuple[str, ...], started: datetime, **kw: object) -> JobView:
    base = JobView(
        name, round_, 0, 0, mailboxes, succeeded=True, started_at=started, noop_status_seconds=3600
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_a_succeeded_proving_job_advances_its_clean_mailboxes_to_its_round_and_start() -> None:
    views = boxes(4)
    clean(views, 2, T0)
    views["m1"] = replace(views["m1"], phase="Failed")
    views["m2"] = replace(views["m2"], observed_generation=0)  # its spec changed since its last write
    views["m3"] = replace(views["m3"], suspend=True)
    started = T0 + timedelta(minutes=15)
    out = overlay(views, [proving("j", 3, tuple(views), started)])
    assert (out["m0"].round, out["m0"].last_sync_time) == (3, started)
    for unproved in ("m1", "m2", "m3"):
        assert out[unproved] == views[unproved], unproved
    assert views["m0"].round == 2, "the input is not changed"


def test_only_a_succeeded_proving_job_with_a_start_proves() -> None:
    views = boxes(1)
    clean(views, 2, T0)
    later = T0 + timedelta(minutes=15)
    for job in (
        proving("running", 3, ("m0",), later, succeeded=False, active=True),
        proving("failed", 3, ("m0",), later, succeeded=False, failed=True),
        proving("no-start", 3, ("m0",), later, started_at=None),
        proving("writes-all", 3, ("m0",), later, noop_status_seconds=0),
        proving("older-round", 2, ("m0",), later),
        proving("other-batch", 3, ("m9",), later),
    ):
        assert overlay(views, [job])["m0"] == views["m0"], job.name


def test_the_latest_round_wins_and_a_newer_write_is_kept() -> None:
    views = boxes(1)
    clean(views, 2, T0 + timedelta(hours=1))  # written after both Jobs started (a change it copied)
    jobs = [proving("r4", 4, ("m0",), T0 + timedelta(minutes=30)), proving("r3", 3, ("m0",), T0)]
    out = overlay(views, jobs)["m0"]
    assert (out.round, out.last_sync_time) == (4, T0 + timedelta(hours=1))


def test_a_delta_round_with_the_interval_completes_on_its_jobs_and_counts_their_start_as_the_lag() -> None:
    spec = make_spec(batchSize=10, deltaInterval="60s", noopStatusInterval="1h")
    views = boxes(3)
    plan = step(spec, validated_status(), views, [], T0)
    assert [j.noop_status_seconds for j in plan.create_jobs] == [0], "the bulk copy writes every status"
    jobs = [finish(j, True, T0 + timedelta(seconds=30)) for j in as_jobs(plan)]
    clean(views, 1, T0)
    t1 = T0 + timedelta(seconds=40)
    plan = step(spec, plan.status, views, jobs, t1)
    assert plan.status.round is not None and plan.status.round.completed_at == t1
    t2 = T0 + timedelta(seconds=61)
    plan = step(spec, plan.status, views, jobs, t2)  # round 2 (delta) starts
    plan = step(spec, plan.status, views, jobs, t2)
    assert [(j.round, j.noop_status_seconds) for j in plan.create_jobs] == [(2, 3600)]
    # the Job succeeds and writes nothing: the round completes at once, no grace for status to arrive
    started, done = t2 + timedelta(seconds=1), t2 + timedelta(seconds=5)
    delta = [
        replace(finish(v, True, done), started_at=started, noop_status_seconds=p.noop_status_seconds)
        for v, p in zip(as_jobs(plan), plan.create_jobs, strict=True)
    ]  # as the Job's body reads back (the last test)
    plan = step(spec, plan.status, views, jobs + delta, done)
    assert plan.status.round is not None and plan.status.round.completed_at == done
    assert plan.status.lag is not None and plan.status.lag.max_seconds == 4  # from the Job's start
    assert plan.status.progress == "30/30"


def test_a_final_round_writes_every_status() -> None:
    spec = make_spec(batchSize=10, noopStatusInterval="1h", complete=True)
    views = boxes(2)
    plan = step(spec, validated_status(), views, [], T0)
    jobs = [finish(j, True, T0) for j in as_jobs(plan)]
    clean(views, 1, T0)
    t1 = T0 + timedelta(seconds=5)
    for _ in range(2):
        plan = step(spec, plan.status, views, jobs, t1)
    assert plan.status.round is not None and plan.status.round.kind == "final"
    assert [j.noop_status_seconds for j in plan.create_jobs] == [0]


def test_the_job_carries_the_interval_and_its_view_reads_it_back_with_the_start() -> None:
    spec = make_spec(noopStatusInterval="1h")
    plan = JobPlan("acme-r2-b0", 2, 0, 0, ("a", "b"), noop_status_seconds=3600)
    body = json.loads(json.dumps(job_body("acme", "uid-1", "ns", spec, plan)))
    env = {e["name"]: e["value"] for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[ENV_NOOP_STATUS] == "3600"
    body["status"] = {"startTime": "2026-12-04T12:00:01Z", "succeeded": 1,
                      "conditions": [{"type": "Complete", "status": "True"}]}  # fmt: skip
    view = job_view(body)
    assert (view.noop_status_seconds, view.succeeded, view.mailboxes) == (3600, True, ("a", "b"))
    assert view.started_at is not None and view.started_at.isoformat() == "2026-12-04T12:00:01+00:00"
    plain = json.loads(
        json.dumps(job_body("acme", "uid-1", "ns", spec, replace(plan, noop_status_seconds=0)))
    )
    assert ENV_NOOP_STATUS not in {
        e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]
    }
