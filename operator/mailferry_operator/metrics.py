"""The operator's Prometheus metrics, all derived from resource status (Jobs are short-lived: no Pushgateway).

Dashboards and alerts in charts/ and deploy/ reference these names; a test compares them.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, resident memory, open fds, start time) and python_info, as every Prometheus exporter has.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_MM = ["namespace", "migration"]

migration_phase = Gauge(
    "mailferry_migration_phase",
    "1 for the MailMigration's current phase, 0 otherwise",
    [*_MM, "phase"],
    registry=REGISTRY,
)
migration_messages = Gauge(
    "mailferry_migration_messages",
    "Messages by state (expected, copied, skipped, failed, deleted, moved), from status.totals",
    [*_MM, "state"],
    registry=REGISTRY,
)
migration_bytes = Gauge(
    "mailferry_migration_bytes",
    "Bytes by state (expected, copied), from status.totals",
    [*_MM, "state"],
    registry=REGISTRY,
)
migration_lag_seconds = Gauge(
    "mailferry_migration_lag_seconds", "Max seconds any mailbox is behind its source", _MM, registry=REGISTRY
)
migration_pending_messages = Gauge(
    "mailferry_migration_pending_messages",
    "Source messages not yet on the destination",
    _MM,
    registry=REGISTRY,
)
migration_jobs = Gauge(
    "mailferry_migration_jobs",
    "Worker Jobs by state (active, succeeded, failed)",
    [*_MM, "state"],
    registry=REGISTRY,
)
migration_mailboxes = Gauge(
    "mailferry_migration_mailboxes",
    "Mailboxes by state (total, synced, syncing, pending, failed)",
    [*_MM, "state"],
    registry=REGISTRY,
)
migration_condition = Gauge(
    "mailferry_migration_condition", "1 when the condition is True", [*_MM, "condition"], registry=REGISTRY
)
migration_collection_items = Gauge(
    "mailferry_migration_collection_items",
    "Contacts and calendars by kind (contacts, calendars) and state (collections, items, copied, deleted, "
    "failed, unsupported, pending)",
    [*_MM, "kind", "state"],
    registry=REGISTRY,
)

_DC = ["namespace", "dnscutover", "domain"]

dnscutover_phase = Gauge(
    "mailferry_dnscutover_phase",
    "1 for the DnsCutover's current phase, 0 otherwise",
    [*_DC, "phase"],
    registry=REGISTRY,
)
dnscutover_phase_index = Gauge(
    "mailferry_dnscutover_phase_index",
    "Current phase as a number: 0 Planned, 1 TTLLowered, 2 Staged, 3 Switched, 4 Enforced",
    _DC,
    registry=REGISTRY,
)
dnscutover_gate = Gauge(
    "mailferry_dnscutover_gate_result",
    "1 for each gate's current result (Pending, Passed, Failed, Inconclusive)",
    [*_DC, "phase", "gate", "type", "result"],
    registry=REGISTRY,
)
dnscutover_condition = Gauge(
    "mailferry_dnscutover_condition", "1 when the condition is True", [*_DC, "condition"], registry=REGISTRY
)
dnscutover_transitions = Counter(
    "mailferry_dnscutover_transitions",
    "Phase changes made, by direction (forward, rollback)",
    [*_DC, "direction"],
    registry=REGISTRY,
)
dnscutover_drifted = Gauge(
    "mailferry_dnscutover_drifted_rrsets",
    "Managed RRsets someone else changed after the phase wrote them (reported, not written back)",
    _DC,
    registry=REGISTRY,
)
dns_record_writes = Counter(
    "mailferry_dns_record_writes",
    "RRset writes sent to a DNS provider",
    ["provider", "result"],
    registry=REGISTRY,
)
_SC = ["namespace", "sendingcutover", "domain", "stream"]

sendingcutover_weight = Gauge(
    "mailferry_sendingcutover_weight",
    "Percent of the application's mail sent through the new provider (the Secret's weight)",
    _SC,
    registry=REGISTRY,
)
sendingcutover_step = Gauge(
    "mailferry_sendingcutover_step", "Ramp step (0: not started)", _SC, registry=REGISTRY
)
sendingcutover_rate = Gauge(
    "mailferry_sendingcutover_rate",
    "Bounce and complaint rate since the step began (kind: bounce, complaint)",
    [*_SC, "kind"],
    registry=REGISTRY,
)
sendingcutover_threshold = Gauge(
    "mailferry_sendingcutover_threshold",
    "The warm-up thresholds in force "
    "(kind: bounce_max, bounce_hard_stop, complaint_max, complaint_hard_stop)",
    [*_SC, "kind"],
    registry=REGISTRY,
)
sendingcutover_hard_stopped = Gauge(
    "mailferry_sendingcutover_hard_stopped",
    "1 while a hard stop waits for spec.hardStopAck",
    _SC,
    registry=REGISTRY,
)
sendingcutover_decisions = Counter(
    "mailferry_sendingcutover_decisions",
    "Ramp moves made (Advance, StepBack, HardStop, RollBack)",
    [*_SC, "decision"],
    registry=REGISTRY,
)
reconcile_errors = Counter(
    "mailferry_reconcile_errors", "Reconciliations that raised, by kind", ["kind"], registry=REGISTRY
)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)


def metric_names() -> set[str]:
    """Every sample name the registry exposes (counters with their _total suffix)."""
    names: set[str] = set()
    for collector in REGISTRY.collect():
        for sample in collector.samples:
            names.add(sample.name)
        names.add(collector.name)
        if collector.type == "counter":
            names.add(collector.name + "_total")
    return names
