"""When a delta round may leave a no-op mailbox's status as it is (pure).

Under `spec.noopStatusInterval` (MAILFERRY_NOOP_STATUS_SECONDS) a mailbox whose source STATUS proves it
unchanged since a clean finish is not rewritten if its status is recent and reflects its current spec:
the Job's exit 0 proves it instead, and the operator counts it synced in the round from the Job's
start (operator mailmigration/proofs.py). That holds only if exit 0 means every other mailbox of the
batch was written, so a batch that exits otherwise writes these proofs one by one first
(sync/batch.py). A status write costs the API server more than the IMAP check (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from mailferry_api.mailboxsync import MailboxSyncSpec, MailboxSyncStatus


def spread(name: str) -> float:
    """A fraction in [0.5, 1) fixed per mailbox: 10,000 mailboxes written in one round do not all come
    due again in the same later one."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return 0.5 + int.from_bytes(digest, "big") / 2**33


def may_leave_status(
    name: str,
    spec: MailboxSyncSpec,
    status: MailboxSyncStatus,
    generation: int | None,
    every_seconds: int,
    now: datetime,
) -> bool:
    """True when a proved no-op of `name` needs no status write: the interval is on, the status (as read,
    before this run) answers the current spec, carries no contacts/calendars (written under their own
    lease), and its last sync is younger than its share of the interval."""
    if every_seconds <= 0 or status.last_sync_time is None or spec.groupware_kinds():
        return False
    if generation is None or status.observed_generation != generation:
        return False
    age = (now - status.last_sync_time).total_seconds()
    return 0 <= age < every_seconds * spread(name)
