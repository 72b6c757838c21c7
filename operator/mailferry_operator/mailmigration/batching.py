"""Group MailboxSyncs into batches (one Job per batch per round)."""

from __future__ import annotations

from collections.abc import Iterable


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
