"""The follower's Prometheus metrics, served on its pod's port (MAILFERRY_METRICS_PORT, /metrics).

Round Jobs report through MailboxSync status (the operator turns it into metrics); a follower lives for
days, so it exposes its own /metrics like the operator does. The lag histogram has no per-mailbox label
(10,000 mailboxes x 16 buckets would be a cardinality bomb); per mailbox there is one gauge of the last
lag, and status.follow keeps the last lag and the p95."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ..logs import log
from .lagwindow import LAG_BUCKETS

REGISTRY = CollectorRegistry(auto_describe=True)

LAG = Histogram(
    "mailferry_follow_lag_seconds",
    "Follow mode: first seen on the source -> APPEND confirmed on the destination, per copied message",
    ["mode"],
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
MAILBOX_LAG = Gauge(
    "mailferry_follow_mailbox_last_lag_seconds",
    "Follow mode: the lag of the last message copied, per mailbox",
    ["mailboxsync"],
    registry=REGISTRY,
)
MAILBOXES = Gauge(
    "mailferry_follow_mailboxes",
    "Follow mode: mailboxes served, by how changes are seen (notify, idle, poll) and whether the feed is up",
    ["mode", "watching"],
    registry=REGISTRY,
)
DELTAS = Counter(
    "mailferry_follow_deltas_total",
    "Follow mode: delta runs of a followed mailbox, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "mailferry_follow_reconnects_total",
    "Follow mode: change-feed connections lost and opened again",
    registry=REGISTRY,
)


def serve(port: int) -> bool:
    """Start the /metrics endpoint (a daemon thread); port 0 turns it off. A port in use (followers sharing
    a host network) is logged and skipped: the follower works without it."""
    if port <= 0:
        return False
    try:
        start_http_server(port, registry=REGISTRY)
    except OSError as exc:
        log("metrics_port_unavailable", "warning", port=port, error=str(exc)[:200])
        return False
    return True
