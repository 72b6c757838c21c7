"""The start as a pipeline (mailmigration/pipeline.py): which planned Jobs may start while MailboxSyncs
are still being created, without servers."""

from __future__ import annotations

import pytest

from mailferry_operator.mailmigration.batching import plan_batches
from mailferry_operator.mailmigration.pipeline import (
    creation_order,
    keep_ready,
    pass_pause,
    ready_gate,
    startable,
    validation_lead,
)
from mailferry_operator.mailmigration.plan import JobPlan

KEY = ("configmap", 1, 42)
OLD = ("configmap", 1, 41)


def job(batch: int, *mailboxes: str, attempt: int = 0) -> JobPlan:
    return JobPlan(f"acme-r1-b{batch}", 1, batch, attempt, mailboxes)


def test_creation_goes_in_batch_order() -> None:
    names = {f"acme-{c}": c for c in "dbeca"}
    order = [n for n, _ in creation_order(names)]
    assert [order[:2], order[2:4], order[4:]] == plan_batches(names, 2)
    assert dict(creation_order(names)) == names  # each name keeps its entry


def test_finished_run_for_the_wanted_spec_lets_every_job_through() -> None:
    assert ready_gate(KEY, KEY, False, KEY, set()) is None


def test_while_a_run_is_under_way_only_confirmed_mailboxes_are_ready() -> None:
    ready = {"a", "b"}
    gate = ready_gate(KEY, None, True, KEY, ready)
    assert gate == {"a", "b"}
    assert ready_gate(KEY, KEY, True, KEY, ready) == {"a", "b"}  # a re-run (one deleted by hand)


def test_a_run_for_an_older_inventory_or_spec_confirms_nothing() -> None:
    # the spec changed: MailboxSyncs made for the old one must be patched before a Job names them
    assert ready_gate(KEY, OLD, False, OLD, {"a", "b"}) == frozenset()
    assert ready_gate(KEY, None, True, OLD, {"a"}) == frozenset()


def test_no_run_ever_finished_holds_every_job() -> None:
    assert ready_gate(KEY, None, False, None, set()) == frozenset()
    assert ready_gate(None, None, False, None, set()) == frozenset()  # never asked: nothing is ready


def test_startable_keeps_jobs_whose_every_mailbox_is_ready_in_order() -> None:
    jobs = [job(0, "a", "b"), job(1, "c", "d"), job(2, "e")]
    assert startable(jobs, {"a", "b", "e"}) == [jobs[0], jobs[2]]
    assert startable(jobs, frozenset()) == []
    assert startable(jobs, None) == jobs


def test_a_retry_waits_for_its_mailboxes_too() -> None:
    retry = job(0, "a", "b", attempt=1)
    assert startable([retry], {"a"}) == []


def test_rerun_keeps_what_still_exists() -> None:
    assert keep_ready({"a", "b", "c"}, ["a", "c", "z"]) == {"a", "c"}


def test_the_daemon_rests_in_proportion_to_a_costly_pass() -> None:
    assert pass_pause(0.01) == 0.5  # a small migration: as before
    assert pass_pause(0.4) == pytest.approx(1.2)  # 10,000 mailboxes: the pass is at most a quarter
    assert pass_pause(30.0) == 2.0  # a pass stuck on the API server: Jobs still start within seconds
    # while MailboxSyncs are created: the first batches' quick passes as before, a pass over thousands
    # rests ten times its length, at most 5 s
    assert pass_pause(0.01, creating=True) == 0.5
    assert pass_pause(0.2, creating=True) == pytest.approx(2.0)
    assert pass_pause(0.4, creating=True) == pytest.approx(4.0)
    assert pass_pause(3.0, creating=True) == 5.0


def test_validation_leads_the_creates_by_one_round_of_jobs() -> None:
    assert validation_lead(50, 4) == 200
    assert validation_lead(0, 0) == 1  # never nothing: the first batch is always tested at once
