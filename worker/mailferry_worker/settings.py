"""The worker's settings: every `MAILFERRY_*` variable a Job's pod carries, typed, read once at start.

The operator sets them on the Job (docs/job-contract.md); flags of `mailferry-worker sync` override the
matching values. The table in docs/configuration.md is `python -m mailferry_worker.settings`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mailferry_api.envsettings import env, load, table


@dataclass(frozen=True)
class WorkerSettings:
    namespace: str = env("MAILFERRY_NAMESPACE", "", "namespace of the MailboxSyncs (or `--namespace`)")
    mailboxsyncs: tuple[str, ...] = env(
        "MAILFERRY_MAILBOXSYNCS", (), "the batch: MailboxSync names, comma-separated (or `--mailboxsync`)"
    )
    secrets_dir: str = env(
        "MAILFERRY_SECRETS_DIR", "/var/run/mailferry/secrets", "where the Job mounts the credential Secrets"
    )
    round: int = env("MAILFERRY_ROUND", 0, "the delta round this Job runs (0: bulk)")
    mailbox_concurrency: int = env("MAILFERRY_MAILBOX_CONCURRENCY", 4, "mailboxes copied at once per Job")
    job_name: str = env("MAILFERRY_JOB_NAME", "", "the Job's name (recorded in status)")
    noop_status_seconds: int = env(
        "MAILFERRY_NOOP_STATUS_SECONDS",
        0,
        "a delta round under spec.noopStatusInterval: a mailbox proved unchanged rewrites its status only "
        "this rarely, the Job's exit 0 proving it in between (0: every round; sync/noopproof.py)",
    )
    budget: str = env(
        "MAILFERRY_BUDGET",
        "",
        "the Job's share of the migration's side-wide budgets (JSON, set by the operator; docs/providers.md)",
    )
    max_retries: int = env("MAILFERRY_MAX_RETRIES", 4, "reconnects per mailbox after a transient error")
    backoff_base: float = env("MAILFERRY_BACKOFF_BASE", 1.0, "first back-off after a transient error, s")
    lease_seconds: int = env(
        "MAILFERRY_LEASE_SECONDS",
        30,
        "a mailbox's lease (one writer per mailbox): renewed every third of it (every twelfth after a failed "
        "try); a worker that could not renew for three quarters of it stops writing",
    )
    follow_modes: tuple[str, ...] = env(
        "MAILFERRY_FOLLOW_MODES",
        ("notify", "idle", "poll"),
        "follow mode: the ways to wait for changes the follower may use, best first where the source "
        "announces them (notify: IMAP NOTIFY; idle: IDLE on INBOX + STATUS sweep; poll: periodic deltas)",
    )
    follow_poll_seconds: float = env(
        "MAILFERRY_FOLLOW_POLL_SECONDS",
        900.0,
        "follow mode: a delta this often where neither NOTIFY nor IDLE",
    )
    follow_sweep_seconds: float = env(
        "MAILFERRY_FOLLOW_SWEEP_SECONDS",
        60.0,
        "follow mode (idle): STATUS sweep of the folders besides INBOX",
    )
    follow_idle_seconds: float = env(
        "MAILFERRY_FOLLOW_IDLE_SECONDS",
        240.0,
        "follow mode: longest IDLE before DONE (a keep-alive that also finds a dead connection; kept "
        "below the endpoint's read timeout)",
    )
    follow_heartbeat_seconds: int = env(
        "MAILFERRY_FOLLOW_HEARTBEAT_SECONDS",
        120,
        "follow mode: how often a followed mailbox's status says it is caught up (status.follow.caughtUpAt)",
    )
    follow_lag_window_seconds: int = env(
        "MAILFERRY_FOLLOW_LAG_WINDOW_SECONDS", 3600, "follow mode: window of status.follow.p95LagSeconds"
    )
    metrics_port: int = env(
        "MAILFERRY_METRICS_PORT", 9102, "follow mode: the follower's Prometheus /metrics port (0: off)"
    )
    ca_file: str = env("MAILFERRY_CA_FILE", "", "CA bundle for IMAP TLS (default: the system's)")
    log_format: str = env("MAILFERRY_LOG_FORMAT", "json", "json (one object per line) or text")
    egress_allow: tuple[str, ...] = env(
        "MAILFERRY_EGRESS_ALLOW",
        (),
        "base URLs OAuth2 token requests may go to (the operator copies its own)",
    )


@functools.cache
def current() -> WorkerSettings:
    """The settings of this process (read from the environment on first use, then fixed)."""
    return load(WorkerSettings)


if __name__ == "__main__":
    print(table(WorkerSettings))
