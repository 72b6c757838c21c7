"""NoticePlan metrics (on the operator's registry), set from status after each run."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from mailferry_api.noticeplan import Draft, NoticePlanStatus

from ..metrics import REGISTRY

_NP = ["namespace", "noticeplan"]

recipients = Gauge(
    "mailferry_notice_recipients",
    "Recipients of each notice per cohort by delivery state (recipients, sent, bounced, acknowledged, "
    "in_doubt); bounced counts refusals during the SMTP transaction and delivery status notifications",
    [*_NP, "notice", "cohort", "state"],
    registry=REGISTRY,
)
pending_approvals = Gauge(
    "mailferry_notice_pending_approvals", "Drafts that wait for approval", _NP, registry=REGISTRY
)
approval_wait = Gauge(
    "mailferry_notice_approval_wait_seconds",
    "How long a due draft has waited for approval: since it became due or since its hash appeared, "
    "whichever is later (0: approved, or not due yet)",
    [*_NP, "notice", "cohort"],
    registry=REGISTRY,
)
replies_failing = Gauge(
    "mailferry_notice_replies_failing",
    "1 while the last read of the replies mailbox (spec.replies) failed (status.replies.error)",
    _NP,
    registry=REGISTRY,
)
messages = Counter(
    "mailferry_notice_messages",
    "Notice messages handed to SMTP submission, by outcome (sent, bounced, retry, doubt)",
    [*_NP, "outcome"],
    registry=REGISTRY,
)
replies = Counter(
    "mailferry_notice_replies",
    "Messages read from the replies mailbox, by outcome (bounce, acknowledgement, auto-reply, unmatched)",
    [*_NP, "outcome"],
    registry=REGISTRY,
)

# (namespace, plan) -> the (notice, cohort) label pairs set last time: a removed notice's series go away
_drafts_seen: dict[tuple[str, str], set[tuple[str, str]]] = {}


def waited(draft: Draft, now: datetime) -> float:
    if draft.state != "AwaitingApproval" or draft.due_at is None or draft.due_at > now:
        return 0.0
    start = max(draft.due_at, draft.awaiting_since or draft.due_at)
    return max(0.0, (now - start).total_seconds())


def update(namespace: str, name: str, status: NoticePlanStatus) -> None:
    pending_approvals.labels(namespace, name).set(status.pending_approvals)
    if status.replies is not None:
        replies_failing.labels(namespace, name).set(1 if status.replies.error else 0)
    now = datetime.now(UTC)
    current: set[tuple[str, str]] = set()
    for d in status.drafts:
        current.add((d.notice, d.cohort))
        counts = {
            "recipients": d.recipients,
            "sent": d.sent,
            "bounced": d.bounced,
            "acknowledged": d.acknowledged,
            "in_doubt": d.in_doubt,
        }
        for state, value in counts.items():
            recipients.labels(namespace, name, d.notice, d.cohort, state).set(value)
        approval_wait.labels(namespace, name, d.notice, d.cohort).set(waited(d, now))
    for notice, cohort in _drafts_seen.get((namespace, name), set()) - current:
        for state in ("recipients", "sent", "bounced", "acknowledged", "in_doubt"):
            recipients.remove(namespace, name, notice, cohort, state)
        approval_wait.remove(namespace, name, notice, cohort)
    _drafts_seen[(namespace, name)] = current
