"""Small, immutable summaries of MailboxSyncs and worker Jobs (what the operator keeps in memory).

Built from raw API bodies by pure functions, so the in-memory indexes stay small for 10,000 mailboxes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LABEL_MIGRATION = "mailferry.io/migration"
LABEL_ROUND = "mailferry.io/round"
LABEL_BATCH = "mailferry.io/batch"
LABEL_ATTEMPT = "mailferry.io/attempt"
LABEL_APP = "app.kubernetes.io/name"
WORKER_APP = "mailferry-worker"
ANNOTATION_SPEC_HASH = "mailferry.io/spec-hash"
ANNOTATION_APPROVED = "mailferry.io/approved"
ANNOTATION_RETRY_FAILED = "mailferry.io/retry-failed"


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


@dataclass(frozen=True, slots=True)
class MailboxView:
    name: str
    source: str
    destination: str = ""
    spec_hash: str = ""
    phase: str = ""
    round: int = 0
    last_sync_time: datetime | None = None
    pending_messages: int = 0
    messages: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    expected_bytes: int = 0
    attempts: int = 0
    error_reason: str = ""
    error_message: str = ""


def mailbox_view(body: Mapping[str, Any]) -> MailboxView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    totals = status.get("totals") or {}
    lag = status.get("lag") or {}
    error = status.get("lastError") or {}
    return MailboxView(
        name=str(meta.get("name", "")),
        source=str((spec.get("source") or {}).get("username", "")),
        destination=str((spec.get("destination") or {}).get("username", "")),
        spec_hash=str((meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH, "")),
        phase=str(status.get("phase") or ""),
        round=_int(status.get("round")),
        last_sync_time=parse_time(status.get("lastSyncTime")),
        pending_messages=_int(lag.get("pendingMessages")),
        messages=_int(totals.get("messages")),
        copied=_int(totals.get("copied")),
        skipped=_int(totals.get("skipped")),
        failed=_int(totals.get("failed")),
        bytes=_int(totals.get("bytes")),
        expected_bytes=_int(totals.get("expectedBytes")),
        attempts=_int(status.get("attempts")),
        error_reason=str(error.get("reason") or ""),
        error_message=str(error.get("message") or "")[:1024],
    )


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

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


def job_view(body: Mapping[str, Any]) -> JobView:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    mailboxes: tuple[str, ...] = ()
    containers = (((body.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        for env in container.get("env") or []:
            if env.get("name") == "MAILFERRY_MAILBOXSYNCS":
                mailboxes = tuple(n for n in str(env.get("value") or "").split(",") if n)
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
    )
