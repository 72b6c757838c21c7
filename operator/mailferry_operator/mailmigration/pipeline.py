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
# While MailboxSyncs are still being created: a pass then mostly recounts them (its Jobs wait for free
# slots), and it shares the event loop with the creates
CREATING_PASS_SPACING = 10.0
CREATING_MAX_PAUSE = 5.0


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


def pass_pause(spent: float, creating: bool = False) -> float:
    """Seconds the daemon rests after a pass that took `spent`: while 10,000 MailboxSyncs are created each
    one wakes it, and a pass reads them all; resting in proportion leaves the loop to the creates and
    the logins, and coalesces the status writes of that time into one. While the creates run (`creating`)
    it rests longer still: a pass of the first batches is quick (their Job starts within a second), a
    pass over thousands is then at most a tenth of the operator's time."""
    spacing, longest = (CREATING_PASS_SPACING, CREATING_MAX_PAUSE) if creating else (PASS_SPACING, MAX_PAUSE)
    return min(longest, max(MIN_PAUSE, spacing * spent))


def validation_lead(batch_size: int, max_concurrent_jobs: int) -> int:
    """Mailboxes validation tests ahead while MailboxSyncs are still being created: one round of Jobs'
    worth (the first Jobs need no more). The rest waits for the creates: on a shared machine the
    servers' side of a login costs more CPU than a create (bench-operator's CPU split: Dovecot 12.8 s,
    API server 4.9 s, operator 3.4 s in the first 30 s of 2,000 rows with two rounds ahead), and a Job
    takes minutes, so the test catches up long before the next batches' turn.
    """
    return max(1, batch_size) * max(1, max_concurrent_jobs)
