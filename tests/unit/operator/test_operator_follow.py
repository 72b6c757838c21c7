"""Follow mode on the operator's side (issue 20), table-tested through decide() without servers: after the
bulk copy a follow round of follower Jobs (no deadline, `mailferry-worker follow`), the next one at once
when they end, the follow lag in status.lag, the final sync from the followers' confirmations after a
cutover drained, then the followers deleted."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mailferry_operator.mailmigration import followplan
from mailferry_operator.mailmigration.plan import CutoverHold, JobPlan, Plan
from mailferry_operator.mailmigration.resources import job_body
from mailferry_operator.mailmigration.views import MailboxView, mailbox_view
from mailferry_operator.settings import OperatorSettings

sys.path.insert(0, str(Path(__file__).parent))
from test_operator_reconcile import T0, as_jobs, boxes, finish, make_spec, step, synced, validated_status


def _bulk_done(spec_over: dict[str, object]) -> tuple[Plan, dict[str, MailboxView], list, datetime]:
    spec = make_spec(**spec_over)
    views = boxes(4)
    plan = step(spec, validated_status(), views, [], T0)
    jobs = as_jobs(plan)
    synced(views, tuple(views), 1, T0)
    t1 = T0 + timedelta(seconds=10)
    jobs = [finish(j, True, t1) for j in jobs]
    plan = step(spec, plan.status, views, jobs, t1)
    return plan, views, jobs, t1


def _followed(v: MailboxView, at: datetime, last: float = 1.5, p95: float = 2.4) -> MailboxView:
    return replace(
        v,
        follow_caught_up_at=at,
        follow_heartbeat_seconds=60,
        follow_last_lag_seconds=last,
        follow_p95_lag_seconds=p95,
    )


def test_follow_round_after_bulk_then_follower_jobs() -> None:
    plan, views, jobs, t1 = _bulk_done({"deltaMode": "follow"})
    assert plan.status.round is not None and (plan.status.round.number, plan.status.round.kind) == (
        2,
        "follow",
    )
    plan = step(make_spec(deltaMode="follow"), plan.status, views, jobs, t1)
    assert [j.name for j in plan.create_jobs] == ["acme-r2-b0", "acme-r2-b1"]
    assert all(j.follow for j in plan.create_jobs)
    # they run: nothing new, InSync, the round does not end
    running = jobs + as_jobs(plan)
    later = t1 + timedelta(hours=5)
    for v in list(views):
        views[v] = _followed(views[v], later - timedelta(seconds=20))
    plan = step(make_spec(deltaMode="follow"), plan.status, views, running, later)
    assert plan.create_jobs == [] and plan.status.round.completed_at is None
    assert plan.status.phase == "InSync"
    assert plan.status.lag.max_seconds == 3  # the followers' p95, not hours since lastSyncTime
    assert plan.status.lag.mode == "follow"
    # the followers end (SIGTERM: exit 0): the round completes and the next follow round starts
    ended = [finish(j, True, later) if j.active else j for j in running]
    plan = step(make_spec(deltaMode="follow"), plan.status, views, ended, later + timedelta(seconds=25))
    assert (plan.status.round.number, plan.status.round.kind) == (3, "follow")
    assert any(e.reason == "RoundCompleted" and "round 2 (follow)" in e.message for e in plan.events)
    plan = step(make_spec(deltaMode="follow"), plan.status, views, ended, later + timedelta(seconds=26))
    assert [j.name for j in plan.create_jobs] == ["acme-r3-b0", "acme-r3-b1"]
    assert all(j.follow for j in plan.create_jobs)


def test_rounds_mode_is_unchanged() -> None:
    plan, views, jobs, t1 = _bulk_done({})
    assert plan.status.round is not None and plan.status.round.kind == "bulk"
    plan = step(make_spec(), plan.status, views, jobs, t1 + timedelta(seconds=61))
    assert plan.status.round is not None and plan.status.round.kind == "delta"


@pytest.mark.parametrize(
    ("age", "last", "p95", "want"),
    [
        (30, 0.4, 1.2, 2),  # confirmed lately: the larger of last and p95, rounded up
        (170, 0.4, None, 1),  # still within three heartbeats (60 s)
        (200, 0.4, 1.2, 200),  # stopped confirming: time since the last confirmation
    ],
)
def test_mailbox_lag(age: int, last: float, p95: float | None, want: int) -> None:
    v = _followed(MailboxView(name="m", source="u"), T0 - timedelta(seconds=age), last, p95 or 0.0)
    assert followplan.mailbox_lag(v, T0) == want


def test_a_later_round_overrides_an_old_follow_status() -> None:
    v = _followed(MailboxView(name="m", source="u"), T0 - timedelta(hours=2))
    assert followplan.mailbox_lag(replace(v, last_sync_time=T0 - timedelta(minutes=1)), T0) is None


def test_view_reads_status_follow() -> None:
    body = {
        "metadata": {"name": "m"},
        "spec": {"source": {"username": "u"}},
        "status": {"follow": {"mode": "notify", "caughtUpAt": "2026-11-25T12:00:00Z", "p95LagSeconds": 1.5}},
    }
    v = mailbox_view(body)
    assert (
        v.follow_caught_up_at == T0 and v.follow_p95_lag_seconds == 1.5 and v.follow_heartbeat_seconds == 120
    )
    assert mailbox_view({"metadata": {"name": "n"}}).follow_caught_up_at is None


def test_final_sync_from_confirmations_after_the_drain_then_followers_deleted() -> None:
    plan, views, jobs, t1 = _bulk_done({"deltaMode": "follow"})
    spec = make_spec(deltaMode="follow", complete=True)
    drain = t1 + timedelta(hours=2)
    cut = [CutoverHold("dns", "Switched", switched_at=t1 + timedelta(hours=1), drain_until=drain)]
    plan = step(make_spec(deltaMode="follow"), plan.status, views, jobs, t1)
    running = jobs + as_jobs(plan)
    # complete=true while draining: keep following
    for v in list(views):
        views[v] = _followed(views[v], drain - timedelta(seconds=5))
    plan = step(spec, plan.status, views, running, drain - timedelta(seconds=1), cutovers=cut)
    assert plan.status.phase != "Completed" and plan.stop_jobs == []
    # drained, but one mailbox's last confirmation predates the drain: wait
    now = drain + timedelta(seconds=30)
    for v in list(views)[:3]:
        views[v] = _followed(views[v], drain + timedelta(seconds=20))
    plan = step(spec, plan.status, views, running, now, cutovers=cut)
    assert plan.status.phase != "Completed" and plan.requeue_after <= 5.0
    # every mailbox confirmed after the drain: completed, the followers deleted, no new Jobs
    views["m3"] = _followed(views["m3"], drain + timedelta(seconds=25))
    plan = step(spec, plan.status, views, running, now, cutovers=cut)
    assert plan.status.phase == "Completed" and plan.create_jobs == []
    assert sorted(plan.stop_jobs) == ["acme-r2-b0", "acme-r2-b1"]
    # the next pass asks again while they still run (idempotent), then nothing
    again = step(spec, plan.status, views, running, now + timedelta(seconds=5), cutovers=cut)
    assert again.status.phase == "Completed" and sorted(again.stop_jobs) == ["acme-r2-b0", "acme-r2-b1"]
    gone = [finish(j, True, now) for j in running]
    assert step(spec, again.status, views, gone, now + timedelta(seconds=9), cutovers=cut).stop_jobs == []


def test_stale_confirmations_do_not_complete() -> None:
    v = _followed(MailboxView(name="m", source="u"), T0 - timedelta(seconds=121))
    assert not followplan.final_reached([v], set(), [], T0)  # older than two heartbeats
    assert followplan.final_reached([replace(v, follow_caught_up_at=T0)], set(), [], T0)
    assert followplan.final_reached([v], {"u"}, [], T0)  # a failed mailbox is left out


def test_follower_job_body() -> None:
    spec = make_spec(deltaMode="follow", deltaInterval="10m")
    install = OperatorSettings()
    body = job_body("acme", "uid", "ns", spec, JobPlan("acme-r2-b0", 2, 0, 0, ("m0",), follow=True), install)
    c = body["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert c["command"] == ["mailferry-worker", "follow"]
    assert env["MAILFERRY_FOLLOW_POLL_SECONDS"] == "600.0" and env["MAILFERRY_LEASE_SECONDS"] == "120"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9102}]
    assert body["spec"]["activeDeadlineSeconds"] is None
    one_shot = job_body("acme", "uid", "ns", spec, JobPlan("acme-r1-b0", 1, 0, 0, ("m0",)), install)
    assert one_shot["spec"]["template"]["spec"]["containers"][0]["command"] == ["mailferry-worker", "sync"]
    assert "ports" not in one_shot["spec"]["template"]["spec"]["containers"][0]


def test_sync_lag_gate_says_follow_lag() -> None:
    from mailferry_api.dnscutover import Gate, GateStatus
    from mailferry_operator.gates.evaluate import LagObservation, sync_lag

    gate = Gate.model_validate({"name": "lag", "type": "syncLag", "syncLag": {"maxSeconds": 60}})
    st = GateStatus(phase="Switched", name="lag", type="syncLag")
    ok = sync_lag(gate, st, LagObservation(found=True, max_seconds=3, pending_messages=0, mode="follow"), T0)
    assert ok.result == "Passed" and ok.message.startswith("follow lag 3s")
    slow = sync_lag(
        gate, st, LagObservation(found=True, max_seconds=300, pending_messages=0, mode="follow"), T0
    )
    assert slow.result == "Failed"
    rounds = sync_lag(gate, st, LagObservation(found=True, max_seconds=3, pending_messages=0), T0)
    assert rounds.message.startswith("lag 3s")
