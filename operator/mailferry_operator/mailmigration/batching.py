"""Group MailboxSyncs into batches (one Job per batch per round)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from mailferry_api.mailmigration import MailMigrationSpec, RoundKind, RoundStatus


def round_batch_size(spec: MailMigrationSpec, kind: RoundKind) -> int:
    """Mailboxes per Job in a round of this kind starting now: the bulk copy's batchSize, after it
    deltaBatchSize when set (a no-op round's Job costs mostly its start, so fewer, larger ones)."""
    if kind == "bulk":
        return spec.batch_size
    return spec.delta_batch_size or spec.batch_size


def started_round(spec: MailMigrationSpec, number: int, kind: RoundKind, now: datetime) -> RoundStatus:
    """Round `number` starting now, with the batch size it keeps until it ends (Jobs are matched to
    batches by number: a size changed mid-round would shift them)."""
    return RoundStatus(number=number, kind=kind, started_at=now, batch_size=round_batch_size(spec, kind))


def batch_size_of(spec: MailMigrationSpec, rnd: RoundStatus) -> int:
    """The size the round started with; a round from before it was recorded: the spec's."""
    return rnd.batch_size or round_batch_size(spec, rnd.kind)


def plan_batches(names: Iterable[str], batch_size: int) -> list[list[str]]:
    """Sorted names in chunks of `batch_size`.

    Plan over *every* mailbox of the migration, failed ones included, and leave failed ones out
    only when a Job is made: a batch's members then never shift when a mailbox fails, so batch
    numbers (and Job names) stay stable across operator restarts.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ordered = sorted(set(names))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
