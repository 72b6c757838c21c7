"""When the connection test runs and what Validated says: decide.schedule_validation, without servers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from mailferry_api.conditions import get_condition, set_condition
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus
from mailferry_api.problems import Problem
from mailferry_operator.mailmigration.apply import apply_validation
from mailferry_operator.mailmigration.decide import decide
from mailferry_operator.mailmigration.observe import Runtime
from mailferry_operator.mailmigration.plan import Plan, Snapshot, ValidationPlan, ValidationState
from mailferry_operator.mailmigration.views import MailboxView

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EP = {"host": "imap.test", "port": 143, "security": "none", "auth": {"secretRef": {"name": "s"}}}
LOG = logging.getLogger("test")
VIEWS = {f"m{i}": MailboxView(name=f"m{i}", source=f"u{i}@a.test") for i in range(3)}


def spec(**over: Any) -> MailMigrationSpec:
    return MailMigrationSpec.model_validate({"source": EP, "destination": EP, "mailboxes": [], **over})


def run(status: MailMigrationStatus, state: ValidationState, **kw: Any) -> Plan:
    s = kw.pop("spec", spec())
    return decide(Snapshot("acme", kw.pop("generation", 1), s, status, VIEWS, [], T0, validation=state, **kw))


def validated(plan: Plan) -> tuple[str, str, str]:
    c = get_condition(plan.status.conditions, "Validated")
    assert c is not None
    return c.status, c.reason, c.message


def failed_result(reason: str = "NoMailboxReachable") -> MailMigrationStatus:
    return MailMigrationStatus(
        conditions=set_condition([], "Validated", "False", reason, "none of 3 mailboxes passed", 1)
    )


def test_first_pass_starts_the_test_and_says_so() -> None:
    plan = run(MailMigrationStatus(), ValidationState(now=100.0))
    assert plan.validation is not None and plan.validation.start and plan.ensure_mailboxsyncs
    assert validated(plan) == ("Unknown", "InProgress", "0 of 3 mailboxes tested")
    assert any(e.reason == "Validating" for e in plan.events)
    assert plan.create_jobs == []  # no mailbox tested yet


def test_running_test_reports_progress_and_first_tested_batch_starts() -> None:
    first = run(MailMigrationStatus(), ValidationState(now=100.0))
    assert first.validation is not None
    state = ValidationState(
        now=101.0, running=True, tested=frozenset(VIEWS), trigger=first.validation.trigger
    )
    plan = run(first.status, state, spec=spec(batchSize=3))
    assert plan.validation is not None and not plan.validation.start
    assert validated(plan) == ("Unknown", "InProgress", "3 of 3 mailboxes tested")
    assert [j.mailboxes for j in plan.create_jobs] == [("m0", "m1", "m2")]


def test_failed_test_is_retried_with_back_off_then_at_once_for_a_new_generation() -> None:
    done = ValidationState(now=100.0, result=failed_result(), trigger=(1, None))
    plan = run(MailMigrationStatus(), done)
    v = plan.validation
    assert v is not None and (v.failures, v.next_at, v.retry_in) == (1, 130.0, 30.0)
    status, reason, message = validated(plan)
    assert (status, reason) == ("False", "NoMailboxReachable") and "tested again in 30s" in message
    assert any(e.type == "Warning" and e.reason == "NoMailboxReachable" for e in plan.events)
    # before the back-off ends: not again; after: again
    waiting = ValidationState(now=129.0, failures=1, next_at=130.0, trigger=(1, None))
    assert run(plan.status, waiting).validation.start is False  # type: ignore[union-attr]
    due = ValidationState(now=131.0, failures=1, next_at=130.0, trigger=(1, None))
    assert run(plan.status, due).validation.start is True  # type: ignore[union-attr]
    # the second failure waits twice as long
    again = run(
        plan.status, ValidationState(now=131.0, failures=1, result=failed_result(), trigger=(1, None))
    )
    assert again.validation is not None and again.validation.retry_in == 60.0
    # a new generation tests at once, back-off reset
    fresh = run(plan.status, waiting, generation=2)
    assert fresh.validation is not None and fresh.validation.start and fresh.validation.failures == 0


def test_a_crashed_test_counts_as_a_failure() -> None:
    plan = run(MailMigrationStatus(), ValidationState(now=5.0, crashed=True, trigger=(1, None)))
    assert plan.validation is not None and (plan.validation.failures, plan.validation.next_at) == (1, 35.0)


def test_a_spec_problem_blocks_the_test_and_cancels_a_running_one() -> None:
    problem = Problem("InventoryNotFound", "ConfigMap inv (spec.inventoryRef.name) not found")
    running = ValidationState(now=1.0, running=True, tested=frozenset({"m0"}), trigger=(1, None))
    plan = run(MailMigrationStatus(), running, problem=problem)
    assert plan.validation is not None and plan.validation.cancel and not plan.validation.start
    assert not plan.ensure_mailboxsyncs and plan.create_jobs == []
    assert validated(plan) == ("False", "InventoryNotFound", problem.message)
    assert [e.reason for e in plan.events if e.type == "Warning"] == ["InventoryNotFound"]
    # the same problem again: no second Event
    again = run(plan.status, ValidationState(now=2.0, trigger=(1, None)), problem=problem)
    assert not [e for e in again.events if e.type == "Warning"]
    ready = get_condition(again.status.conditions, "Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "InventoryNotFound")


def test_a_test_that_finishes_between_read_and_write_is_folded_in_by_the_next_pass() -> None:
    """The task may end after observe() read it running: apply keeps it (dropping it would lose its
    result and log in to every mailbox again)."""

    async def main() -> None:
        rt = Runtime()

        async def finished() -> MailMigrationStatus:
            return failed_result()

        rt.validation = asyncio.ensure_future(finished())
        await asyncio.sleep(0)
        assert rt.validation.done()
        apply_validation(
            rt, Plan(MailMigrationStatus(), validation=ValidationPlan()), "ns", "acme", spec(), 1, LOG
        )
        assert rt.validation is not None
        folded = ValidationPlan(failures=1, next_at=130.0, folded=True)
        apply_validation(rt, Plan(MailMigrationStatus(), validation=folded), "ns", "acme", spec(), 1, LOG)
        assert rt.validation is None and rt.validation_state.failures == 1

    asyncio.run(main())
