"""The final sync after the MX swap (decide + finalsync, no servers): `complete: true` waits until the
referencing DnsCutover's switch has drained, then one delta round that STARTS after drainUntil."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mailferry_api.conditions import get_condition, set_condition
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus
from mailferry_operator.mailmigration.decide import decide
from mailferry_operator.mailmigration.plan import CutoverHold, Plan, Snapshot
from mailferry_operator.mailmigration.views import JobView, MailboxView

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EP = {"host": "imap.test", "port": 143, "security": "none", "auth": {"secretRef": {"name": "s"}}}
VIEWS = {"m0": MailboxView(name="m0", source="u0@a.test")}


def spec(**over: Any) -> MailMigrationSpec:
    body = {"source": EP, "destination": EP, "mailboxes": [], "deltaInterval": "1h", **over}
    return MailMigrationSpec.model_validate(body)


class Run:
    """Drives decide() pass by pass; every Job it asks for finishes at once with the mailbox synced."""

    def __init__(self) -> None:
        self.status = MailMigrationStatus(
            conditions=set_condition([], "Validated", "True", "AllMailboxesReachable", "", 1, T0)
        )
        self.views = dict(VIEWS)
        self.jobs: list[JobView] = []

    def step(self, s: MailMigrationSpec, now: datetime, cutovers: tuple[CutoverHold, ...] = ()) -> Plan:
        plan = decide(Snapshot("acme", 1, s, self.status, self.views, self.jobs, now, cutovers=cutovers))
        for j in plan.create_jobs:
            self.jobs.append(
                JobView(j.name, j.round, j.batch, j.attempt, j.mailboxes, succeeded=True, finished_at=now)
            )
            self.views = {
                k: replace(v, phase="Synced", round=j.round, last_sync_time=now)
                for k, v in self.views.items()
            }
        self.status = plan.status
        return plan

    def settle(self, s: MailMigrationSpec, now: datetime, cutovers: tuple[CutoverHold, ...] = ()) -> Plan:
        plan = self.step(s, now, cutovers)
        for _ in range(4):
            plan = self.step(s, now, cutovers)
        return plan


def cond(plan: Plan) -> tuple[str, str, str]:
    c = get_condition(plan.status.conditions, "CutoverDrained")
    assert c is not None
    return c.status, c.reason, c.message


def test_without_a_cutover_complete_finishes_at_once_and_says_nothing_about_one() -> None:
    run = Run()
    run.settle(spec(), T0)
    plan = run.settle(spec(complete=True), T0 + timedelta(seconds=5))
    assert plan.status.phase == "Completed"
    assert get_condition(plan.status.conditions, "CutoverDrained") is None and plan.status.cutover is None


def test_complete_waits_for_the_switch_then_the_drain_then_one_round_started_after_it() -> None:
    run = Run()
    run.settle(spec(), T0)
    planned = CutoverHold("acme-dns", "Staged")
    plan = run.settle(spec(complete=True), T0 + timedelta(minutes=1), (planned,))
    assert plan.status.phase == "InSync"
    status, reason, message = cond(plan)
    assert (status, reason) == ("False", "WaitingForSwitch") and "DnsCutover acme-dns is Staged" in message
    assert "complete: true waits" in message
    assert plan.status.cutover is not None and plan.status.cutover.holds == "until the MX switch"

    switched, until = T0 + timedelta(minutes=2), T0 + timedelta(hours=1, minutes=2)
    draining = CutoverHold("acme-dns", "Switched", switched, until)
    now = T0 + timedelta(minutes=3)
    plan = run.settle(spec(complete=True), now, (draining,))
    assert plan.status.phase == "InSync" and plan.create_jobs == []
    status, reason, message = cond(plan)
    assert (status, reason) == ("False", "Draining") and "until 2026-12-01T13:02:00Z" in message
    assert plan.status.cutover is not None and plan.status.cutover.holds == "until 2026-12-01T13:02:00Z"
    # it wakes up when the drain ends, not only at the next delta interval
    assert plan.requeue_after <= (until - now).total_seconds()

    # exactly at drainUntil: still waiting (the round must START after it)
    plan = run.settle(spec(complete=True), until, (draining,))
    assert plan.status.phase == "InSync"
    after = until + timedelta(seconds=1)
    plan = run.settle(spec(complete=True), after, (draining,))
    assert plan.status.phase == "Completed"
    assert plan.status.round is not None and plan.status.round.kind == "final"
    assert plan.status.round.started_at is not None and plan.status.round.started_at > until
    assert cond(plan)[:2] == ("True", "Drained")
    assert plan.status.cutover is not None and plan.status.cutover.holds == "no"


def test_rolled_back_below_switched_waits_again_and_a_final_round_from_before_does_not_count() -> None:
    run = Run()
    run.settle(spec(), T0)
    switched, until = T0, T0 + timedelta(hours=1)
    drained = CutoverHold("acme-dns", "Switched", switched, until)
    later = until + timedelta(minutes=1)
    # the final round starts once drained ...
    plan = run.step(spec(complete=True), later, (drained,))
    plan = run.step(spec(complete=True), later, (drained,))
    assert plan.status.phase == "Completing"
    # ... the cutover is rolled back while it runs (fields cleared): the round finishes, but does not count
    rolled_back = CutoverHold("acme-dns", "Staged")
    plan = run.settle(spec(complete=True), later + timedelta(seconds=30), (rolled_back,))
    assert plan.status.phase == "InSync" and plan.status.completed_at is None
    assert cond(plan)[1] == "WaitingForSwitch"
    # switched again: a new drain, then completed by a round started after the new drainUntil
    again = CutoverHold(
        "acme-dns", "Switched", later + timedelta(minutes=5), later + timedelta(hours=1, minutes=5)
    )
    plan = run.settle(spec(complete=True), later + timedelta(minutes=10), (again,))
    assert plan.status.phase == "InSync"
    done_at = later + timedelta(hours=1, minutes=6)
    plan = run.settle(spec(complete=True), done_at, (again,))
    assert plan.status.phase == "Completed"
    assert plan.status.round is not None and plan.status.round.started_at == done_at


def test_two_cutovers_the_later_drain_holds() -> None:
    run = Run()
    run.settle(spec(), T0)
    a = CutoverHold("a", "Switched", T0, T0 + timedelta(hours=1))
    b = CutoverHold("b", "Enforced", T0, T0 + timedelta(hours=2))
    plan = run.settle(spec(complete=True), T0 + timedelta(hours=1, minutes=30), (a, b))
    assert plan.status.phase == "InSync" and "DnsCutover b" in cond(plan)[2]
    plan = run.settle(spec(complete=True), T0 + timedelta(hours=2, seconds=1), (a, b))
    assert plan.status.phase == "Completed"
