"""spec.deltaBatchSize: larger Jobs after the bulk copy, and a round keeps the size it started with (its
batches are matched to Jobs by number, so a size changed mid-round must not shift them)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from test_operator_reconcile import T0, as_jobs, boxes, finish, make_spec, step, synced, validated_status

from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus, RoundStatus
from mailferry_operator.mailmigration.batching import batch_size_of, round_batch_size
from mailferry_operator.mailmigration.views import JobView, MailboxView


def test_the_bulk_copy_uses_batch_size_and_later_rounds_delta_batch_size() -> None:
    spec = make_spec(batchSize=2, deltaBatchSize=5)
    assert round_batch_size(spec, "bulk") == 2
    assert [round_batch_size(spec, k) for k in ("delta", "final", "follow")] == [5, 5, 5]
    plain = make_spec(batchSize=3)
    assert [round_batch_size(plain, k) for k in ("bulk", "delta", "final", "follow")] == [3, 3, 3, 3]
    # a round recorded by an operator from before the field: the spec's size for its kind
    assert batch_size_of(spec, RoundStatus(number=4, kind="delta")) == 5
    assert batch_size_of(spec, RoundStatus(number=4, kind="delta", batch_size=7)) == 7


def test_the_schema_bounds_delta_batch_size() -> None:
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            make_spec(deltaBatchSize=bad)
    assert make_spec().delta_batch_size is None


def _run_round(
    spec_at: list[MailMigrationSpec],
    status: MailMigrationStatus,
    views: dict[str, MailboxView],
    jobs: list[JobView],
    number: int,
    clock: list[int],
    rng: random.Random,
) -> tuple[MailMigrationStatus, list[JobView]]:
    """Passes until round `number` completes; each pass may change the spec (spec_at[0] is replaced) and
    finishes the Jobs created by the pass before, their mailboxes synced in the round."""
    made: list[JobView] = []
    for _ in range(200):
        clock[0] += 7
        now = T0 + timedelta(seconds=clock[0])
        running = [j for j in made if j.active]
        for j in running:
            synced(views, j.mailboxes, number, now)
        made = [finish(j, True, now) if j.active else j for j in made]
        if rng.random() < 0.5:  # someone edits the spec mid-round
            spec_at[0] = make_spec(
                batchSize=spec_at[0].batch_size,
                deltaBatchSize=rng.choice([1, 2, 3, 4, 6, 9, 13]),
                maxConcurrentJobs=spec_at[0].max_concurrent_jobs,
                deltaInterval="5s",
            )
        plan = step(spec_at[0], status, views, jobs + made, now)
        status = plan.status
        made += [j for j in as_jobs(plan) if j.round == number]
        rnd = status.round
        assert rnd is not None
        if rnd.number > number or (rnd.number == number and rnd.completed_at is not None):
            return status, made
    raise AssertionError(f"round {number} did not complete")


@pytest.mark.parametrize("seed", range(12))
def test_every_mailbox_gets_one_job_per_round_whatever_the_size_changes_mid_round(seed: int) -> None:
    rng = random.Random(seed)
    views = boxes(rng.randint(5, 23))
    spec = [make_spec(batchSize=2, deltaBatchSize=rng.randint(1, 8), maxConcurrentJobs=2, deltaInterval="5s")]
    status = validated_status()
    jobs: list[JobView] = []
    clock = [0]
    for number in range(1, 5):
        status, made = _run_round(spec, status, views, jobs, number, clock, rng)
        rnd = status.round
        assert rnd is not None and rnd.batch_size is not None
        size = rnd.batch_size if rnd.number == number else None
        covered = Counter(m for j in made for m in j.mailboxes)
        assert covered == Counter(list(views)), f"round {number}: {covered}"
        if number == 1:
            assert all(len(j.mailboxes) <= 2 for j in made), "the bulk copy is batched by batchSize"
        if size is not None:
            assert all(len(j.mailboxes) <= size for j in made)
            assert sum(len(j.mailboxes) == size for j in made) >= len(made) - 1, "one batch per size"
        assert all(v.round == number for v in views.values())
        jobs += made
        # the next round starts on the spec as it is then; it records that size
        clock[0] += 10
        status = step(spec[0], status, views, jobs, T0 + timedelta(seconds=clock[0])).status
        nxt = status.round
        assert nxt is not None and nxt.number == number + 1
        assert nxt.batch_size == round_batch_size(spec[0], nxt.kind)


def test_a_round_recorded_before_the_field_keeps_its_batches_with_the_spec_size() -> None:
    """Status written by an older operator (no batchSize in the round): batches as the spec gives them."""
    spec = make_spec(batchSize=2, deltaInterval="60s")
    views = boxes(4)
    synced(views, tuple(views), 1, T0)
    status = validated_status()
    status.round = RoundStatus(number=2, kind="delta", started_at=T0)
    plan = step(spec, status, views, [], T0 + timedelta(seconds=1))
    assert [j.mailboxes for j in plan.create_jobs] == [("m0", "m1"), ("m2", "m3")]
    assert plan.status.round is not None and plan.status.round.batch_size is None
