"""NoticePlan metrics (on the operator's registry), set from status after each run."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from mailferry_api.noticeplan import NoticePlanStatus

from ..metrics import REGISTRY

_NP = ["namespace", "noticeplan"]

recipients = Gauge(
    "mailferry_notice_recipients",
    "Recipients of each notice per cohort by delivery state (recipients, sent, bounced, in_doubt)",
    [*_NP, "notice", "cohort", "state"],
    registry=REGISTRY,
)
pending_approvals = Gauge(
    "mailferry_notice_pending_approvals", "Drafts that wait for approval", _NP, registry=REGISTRY
)
messages = Counter(
    "mailferry_notice_messages",
    "Notice messages handed to SMTP submission, by outcome (sent, bounced, retry, doubt)",
    [*_NP, "outcome"],
    registry=REGISTRY,
)


def update(namespace: str, name: str, status: NoticePlanStatus) -> None:
    pending_approvals.labels(namespace, name).set(status.pending_approvals)
    for d in status.drafts:
        counts = {"recipients": d.recipients, "sent": d.sent, "bounced": d.bounced, "in_doubt": d.in_doubt}
        for state, value in counts.items():
            recipients.labels(namespace, name, d.notice, d.cohort, state).set(value)
