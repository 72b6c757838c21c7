"""A delta round's no-op mailboxes proved by their Job's success, not by a status write each (pure).

Under `spec.noopStatusInterval` a delta round's Job carries MAILFERRY_NOOP_STATUS_SECONDS. Its worker
then does not rewrite the status of a mailbox whose source STATUS proves it unchanged since a clean
finish, as long as that status is recent and reflects the current spec; and it exits 0 only when every
other mailbox of the batch was written (synced, or failed for good). Otherwise it writes those proofs
one by one as before the Job ends (docs/job-contract.md). So a succeeded Job of round R proves, for each
of its mailboxes still Synced at an older round with its spec as last written, that nothing was left
to copy when the Job started: the mailbox counts as synced in round R from the Job's startTime (before
any of its pods asked the source: the lag is never understated). A MailboxSync's status write costs the
API server 13-16 ms (docs/benchmarks.md), more than the IMAP check itself: at 10,000 mailboxes this is
most of a no-op round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from mailferry_api.mailmigration import MailMigrationSpec, RoundKind

from .durations import parse_duration
from .views import JobView, MailboxView


def noop_status_seconds(spec: MailMigrationSpec, kind: RoundKind) -> int:
    """What a round's Jobs carry: only delta rounds prove by Job (a final round writes every mailbox:
    the cutover's proof stays on each MailboxSync)."""
    return int(parse_duration(spec.noop_status_interval)) if kind == "delta" else 0


def proved(view: MailboxView, job: JobView) -> bool:
    """The Job's success proves `view` unchanged in its round (module doc)."""
    return (
        view.phase == "Synced"
        and view.round < job.round
        and not view.suspend
        and view.observed_generation is not None
        and str(view.observed_generation) == view.generation
    )


def overlay(views: Mapping[str, MailboxView], jobs: Iterable[JobView]) -> Mapping[str, MailboxView]:
    """`views` with each mailbox a succeeded proving Job vouches for advanced to that Job's round and
    start (the latest such Job wins); `views` itself when no Job proves anything."""
    proving = sorted(
        (j for j in jobs if j.noop_status_seconds > 0 and j.succeeded and j.started_at is not None),
        key=lambda j: (j.round, j.attempt),
    )
    if not proving:
        return views
    out = dict(views)
    for job in proving:
        assert job.started_at is not None
        for name in job.mailboxes:
            view = out.get(name)
            if view is None or not proved(view, job):
                continue
            last = view.last_sync_time
            out[name] = replace(
                view,
                round=job.round,
                last_sync_time=job.started_at if last is None else max(last, job.started_at),
            )
    return out
