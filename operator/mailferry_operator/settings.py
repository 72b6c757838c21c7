"""The operator's settings: every `MAILFERRY_*` variable it reads, typed, read once at start.

`current()` is what the code asks; `main()` loads it before importing the handlers (the DnsCutover
timer's interval is a decorator argument). Flags of `mailferry-operator` override the matching values.
The table in docs/configuration.md is `python -m mailferry_operator.settings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mailferry_api.envsettings import env, load, table
from mailferry_api.version import DEFAULT_IMAGE

# What MAILFERRY_WORKER_POD may hold, with the JSON type each must have: pod metadata, then pod spec fields.
WORKER_POD_KEYS: dict[str, type] = {
    "labels": dict,
    "annotations": dict,
    "imagePullSecrets": list,
    "nodeSelector": dict,
    "tolerations": list,
    "affinity": dict,
    "priorityClassName": str,
}


def worker_pod_fields(raw: str) -> dict[str, Any]:
    """Parse MAILFERRY_WORKER_POD; a bad value stops the operator with a message naming the key."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"MAILFERRY_WORKER_POD is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit("MAILFERRY_WORKER_POD must be a JSON object")
    for key, item in value.items():
        kind = WORKER_POD_KEYS.get(key)
        if kind is None:
            raise SystemExit(
                f"MAILFERRY_WORKER_POD: unknown key {key!r} (known: {', '.join(WORKER_POD_KEYS)})"
            )
        if not isinstance(item, kind):
            raise SystemExit(f"MAILFERRY_WORKER_POD: {key} must be a JSON {kind.__name__}")
    return {k: v for k, v in value.items() if v not in ({}, [], "")}


@dataclass(frozen=True)
class OperatorSettings:
    watch_namespaces: tuple[str, ...] = env(
        "MAILFERRY_WATCH_NAMESPACES", (), "namespaces to watch, comma-separated (or `--namespace`)"
    )
    metrics_port: int = env("MAILFERRY_METRICS_PORT", 8080, "Prometheus `/metrics` port (0: off)")
    liveness_port: int = env("MAILFERRY_LIVENESS_PORT", 8081, "Kopf liveness `/healthz` port (0: off)")
    log_level: str = env("MAILFERRY_LOG_LEVEL", "info", "debug, info, warning or error")
    log_format: str = env("MAILFERRY_LOG_FORMAT", "text", "text or json")
    create_concurrency: int = env(
        "MAILFERRY_CREATE_CONCURRENCY", 8, "MailboxSync creates in flight at once, per operator"
    )
    probe_concurrency: int = env(
        "MAILFERRY_PROBE_CONCURRENCY", 32, "IMAP logins in flight at once while validating mailboxes"
    )
    worker_image: str = env(
        "MAILFERRY_WORKER_IMAGE",
        DEFAULT_IMAGE,
        "worker image for Jobs whose spec names none (the chart sets it from `image.*`)",
    )
    worker_service_account: str = env(
        "MAILFERRY_WORKER_SERVICE_ACCOUNT",
        "mailferry-worker",
        "worker ServiceAccount for Jobs whose spec names none",
    )
    worker_pod: str = env(
        "MAILFERRY_WORKER_POD",
        "",
        "JSON object: what every worker pod gets from the installation (the chart sets it): "
        f"{', '.join(f'`{k}`' for k in WORKER_POD_KEYS)}",
    )
    dns_gate_interval: float = env(
        "MAILFERRY_DNS_GATE_INTERVAL", 15.0, "seconds between DnsCutover gate evaluations"
    )
    sending_interval: float = env(
        "MAILFERRY_SENDING_INTERVAL", 30.0, "seconds between SendingCutover ramp evaluations"
    )
    dns_reconcile_timeout: float = env(
        "MAILFERRY_DNS_RECONCILE_TIMEOUT", 300.0, "seconds one DnsCutover step may take before it is retried"
    )
    spf_resolve: bool = env(
        "MAILFERRY_SPF_RESOLVE", True, "resolve SPF includes and MX hosts in public DNS (0: skip, for tests)"
    )
    spf_nameservers: tuple[str, ...] = env(
        "MAILFERRY_SPF_NAMESERVERS", (), "resolvers for SPF/MX checks, comma-separated (default: system)"
    )
    worker_images_allowed: tuple[str, ...] = env(
        "MAILFERRY_WORKER_IMAGES_ALLOWED",
        (),
        "other worker images a MailMigration's spec.worker.image may name, comma-separated (default: none)",
    )
    worker_service_accounts_allowed: tuple[str, ...] = env(
        "MAILFERRY_WORKER_SERVICE_ACCOUNTS_ALLOWED",
        (),
        "other ServiceAccounts spec.worker.serviceAccountName may name, comma-separated (default: none)",
    )
    egress_allow: tuple[str, ...] = env(
        "MAILFERRY_EGRESS_ALLOW",
        (),
        "base URLs a spec's tokenUrl, DNS provider API URL or Prometheus address may lie under, "
        "comma-separated (the providers' public endpoints are always allowed)",
    )
    ca_file: str = env(
        "MAILFERRY_CA_FILE", "", "CA bundle for IMAP and SMTP TLS checks (default: the system's)"
    )
    dns_retries: int = env("MAILFERRY_DNS_RETRIES", 5, "attempts per DNS provider call")
    dns_retry_delay: float = env("MAILFERRY_DNS_RETRY_DELAY", 0.2, "first back-off between attempts, seconds")
    dns_timeout: float = env("MAILFERRY_DNS_TIMEOUT", 10.0, "seconds per DNS provider request")
    notice_interval: float = env(
        "MAILFERRY_NOTICE_INTERVAL", 15.0, "seconds between runs of a NoticePlan (drafts, sending)"
    )

    def __post_init__(self) -> None:
        worker_pod_fields(self.worker_pod)  # refuse a bad MAILFERRY_WORKER_POD at start, not at the first Job

    @property
    def worker_pod_overrides(self) -> dict[str, Any]:
        """MAILFERRY_WORKER_POD, parsed: pod metadata (`labels`, `annotations`) and pod spec fields."""
        return worker_pod_fields(self.worker_pod)


_current: OperatorSettings | None = None


def current() -> OperatorSettings:
    """The settings of this process (read from the environment on first use, then fixed)."""
    global _current
    if _current is None:
        _current = load(OperatorSettings)
    return _current


def override(settings: OperatorSettings) -> None:
    """Replace the process's settings (main() after parsing flags; tests)."""
    global _current
    _current = settings


if __name__ == "__main__":
    print(table(OperatorSettings))
