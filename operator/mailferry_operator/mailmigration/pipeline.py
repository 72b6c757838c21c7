"""The start of a migration as a pipeline (pure): batch 1's MailboxSyncs are created and tested first, and
its Job starts while the rest of 10,000 are still being created and tested.

The MailboxSyncs are created (or their drifted spec patched) in the background, in batch order, and each
one the API answered for becomes *ready*; validation tests in the same order (validation.py). A Job may
name a MailboxSync only once it is ready (it exists with the current spec: the worker reads it), and,
while validation runs, only once both its sides passed (rounds.drive_round's `tested`: a refused mailbox
never counts as tested). The approval gate and the one-writer lease are untouched: they hold before a
round starts and inside the worker.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence, Set
from typing import TypeVar

from .plan import JobPlan

Entry = TypeVar("Entry")
MIN_PAUSE = 0.5  # seconds between passes: a burst of watch events settles
PASS_SPACING = 3.0  # a pass over 10,000 mailboxes is O(N): at most a quarter of the operator's time
MAX_PAUSE = 2.0  # a first batch that is ready waits no longer than this for its Job


def creation_order(names: Mapping[str, Entry]) -> list[tuple[str, Entry]]:
    """MailboxSyncs to ensure, in the order batching.plan_batches cuts batches (sorted names): the first
    batch is complete first."""
    return sorted(names.items(), key=lambda item: item[0])


def ready_gate(
    wanted: Hashable, ensured: Hashable | None, running: bool, ready_for: Hashable | None, ready: Set[str]
) -> Set[str] | None:
    """The MailboxSyncs a Job may name now; None: all of them.

    `wanted`: the (inventory, spec) the MailboxSyncs must match this pass; `ensured`: the one a finished
    ensure run made them all match (None: none did, or a name is held by someone else); `running`: an
    ensure run is under way; `ready`: the names it confirmed so far, for `ready_for`. A run for an older
    (inventory, spec) confirms nothing of the wanted one."""
    if not running and ensured is not None and wanted == ensured:
        return None
    return ready if ready_for == wanted else frozenset()


def startable(jobs: Sequence[JobPlan], ready: Set[str] | None) -> list[JobPlan]:
    """The planned Jobs whose every mailbox is ready, in order (a held one is planned again next pass)."""
    if ready is None:
        return list(jobs)
    return [job for job in jobs if all(m in ready for m in job.mailboxes)]


def keep_ready(ready: Set[str], present: Iterable[str]) -> set[str]:
    """A new ensure run for the same (inventory, spec): the names confirmed before stay ready unless
    their MailboxSync is gone (deleted by hand: it is made again, and waits for that)."""
    return set(ready).intersection(present)


def pass_pause(spent: float) -> float:
    """Seconds the daemon rests after a pass that took `spent`: while 10,000 MailboxSyncs are created each
    one wakes it, and a pass reads them all; resting in proportion leaves the loop to the creates and
    the logins, and coalesces the status writes of that time into one."""
    return min(MAX_PAUSE, max(MIN_PAUSE, PASS_SPACING * spent))


def validation_lead(batch_size: int, max_concurrent_jobs: int) -> int:
    """Mailboxes validation tests ahead while MailboxSyncs are still being created: two rounds of Jobs'
    worth. The rest waits for the creates (both share one event loop; a Job takes minutes, so the test
    catches up long before those batches' turn), and every MailboxSync exists sooner."""
    return max(1, batch_size) * max(1, max_concurrent_jobs) * 2
