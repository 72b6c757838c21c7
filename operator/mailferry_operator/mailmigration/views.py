"""Small, immutable summaries of MailboxSyncs and worker Jobs (what the operator keeps in memory).

Built from raw API bodies by pure functions, so the in-memory indexes stay small for 10,000 mailboxes.
MailboxView is derived from the MailboxSync model (`..modelviews`); a Job has no model of ours, so its
view reads the few batch/v1 fields it needs by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailferry_api.budgets import JobShare
from mailferry_api.groupware import CollectionTotals
from mailferry_api.labels import LABEL_APP as LABEL_APP  # the kernel's: tools select by them too
from mailferry_api.labels import LABEL_MIGRATION as LABEL_MIGRATION
from mailferry_api.labels import WORKER_APP as WORKER_APP
from mailferry_api.mailboxsync import MailboxPhase, MailboxSync, UsageBucket

from ..modelviews import annotation, derived_from, meta, picked, read_view

LABEL_ROUND = "mailferry.io/round"
LABEL_BATCH = "mailferry.io/batch"
LABEL_ATTEMPT = "mailferry.io/attempt"
ANNOTATION_SPEC_HASH = "mailferry.io/spec-hash"
ANNOTATION_APPROVED = "mailferry.io/approved"
ANNOTATION_RETRY_FAILED = "mailferry.io/retry-failed"
ENV_BUDGET = "MAILFERRY_BUDGET"  # a Job's share of the migration's budgets (mailferry_api.budgets.JobShare)
ENV_NOOP_STATUS = "MAILFERRY_NOOP_STATUS_SECONDS"  # spec.noopStatusInterval, on a delta round's Jobs


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@derived_from(MailboxSync)
class MailboxView:
    """What a MailMigration needs of one MailboxSync (types, wire keys and defaults from the model)."""

    name: str = meta("name")
    source: str = picked("spec.source.username")
    destination: str = picked("spec.destination.username")
    spec_hash: str = annotation(ANNOTATION_SPEC_HASH)
    phase: MailboxPhase | None = picked("status.phase")
    round: int = picked("status.round")
    last_sync_time: datetime | None = picked("status.last_sync_time")
    pending_messages: int = picked("status.lag.pending_messages")
    messages: int = picked("status.totals.messages")
    copied: int = picked("status.totals.copied")
    skipped: int = picked("status.totals.skipped")
    failed: int = picked("status.totals.failed")
    deleted: int = picked("status.totals.deleted")
    moved: int = picked("status.totals.moved")
    bytes: int = picked("status.totals.bytes")
    expected_bytes: int = picked("status.totals.expected_bytes")
    attempts: int = picked("status.attempts")
    suspend: bool = picked("spec.suspend")
    generation: str = meta("generation")
    observed_generation: int | None = picked("status.observed_generation")
    error_reason: str = picked("status.last_error.reason")
    error_message: str = picked("status.last_error.message", limit=1024)
    collection_totals: CollectionTotals | None = picked("status.collection_totals")
    usage: list[UsageBucket] | None = picked("status.usage")
    # Live follow mode (status.follow, written by the follower): its last confirmation and lag.
    follow_caught_up_at: datetime | None = picked("status.follow.caught_up_at")
    follow_heartbeat_seconds: int = picked("status.follow.heartbeat_seconds")
    follow_last_lag_seconds: float | None = picked("status.follow.last_lag_seconds")
    follow_p95_lag_seconds: float | None = picked("status.follow.p95_lag_seconds")


def mailbox_view(body: Mapping[str, Any]) -> MailboxView:
    return read_view(MailboxView, body)


@dataclass(frozen=True, slots=True)
class JobView:
    name: str
    round: int
    batch: int
    attempt: int
    mailboxes: tuple[str, ...]
    active: bool = False
    succeeded: bool = False
    failed: bool = False
    finished_at: datetime | None = None
    created_at: datetime | None = None
    share: JobShare | None = None  # what it was handed of the budgets (None: made before budgets)
    started_at: datetime | None = None  # status.startTime: before any of its pods ran
    noop_status_seconds: int = 0  # > 0: its success proves the mailboxes it did not write (proofs.py)

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


def job_view(body: Mapping[str, Any]) -> JobView:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    mailboxes: tuple[str, ...] = ()
    share: JobShare | None = None
    noop_status_seconds = 0
    containers = (((body.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        for env in container.get("env") or []:
            if env.get("name") == "MAILFERRY_MAILBOXSYNCS":
                mailboxes = tuple(n for n in str(env.get("value") or "").split(",") if n)
            elif env.get("name") == ENV_BUDGET:
                share = JobShare.from_json(str(env.get("value") or ""))
            elif env.get("name") == ENV_NOOP_STATUS:
                noop_status_seconds = _int(env.get("value"))
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    succeeded = "Complete" in conditions or "SuccessCriteriaMet" in conditions
    failed = "Failed" in conditions or "FailureTarget" in conditions
    finished_at = parse_time(status.get("completionTime"))
    if finished_at is None:
        cond = conditions.get("Failed") or conditions.get("Complete")
        finished_at = parse_time(cond.get("lastTransitionTime")) if cond else None
    return JobView(
        name=str(meta.get("name", "")),
        round=_int(labels.get(LABEL_ROUND)),
        batch=_int(labels.get(LABEL_BATCH)),
        attempt=_int(labels.get(LABEL_ATTEMPT)),
        mailboxes=mailboxes,
        active=not (succeeded or failed),
        succeeded=succeeded,
        failed=failed and not succeeded,
        finished_at=finished_at,
        created_at=parse_time(meta.get("creationTimestamp")),
        share=share,
        started_at=parse_time(status.get("startTime")),
        noop_status_seconds=noop_status_seconds,
    )
