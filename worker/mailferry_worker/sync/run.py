"""One mailbox run's terms: the settings it is given, the result it returns, the delay between attempts."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .. import settings

# busy: another worker holds the mailbox (AlreadyRunning); lost: this one lost its lease mid-way (LeaseLost).
# proved: unchanged, its status not rewritten: the Job's exit 0 says so (sync/noopproof.py).
Outcome = Literal["synced", "proved", "permanent", "transient", "config", "suspended", "busy", "lost"]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class MailboxResult:
    name: str
    outcome: Outcome
    reason: str | None = None
    copied: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    # "proved": the status write it left out, for a batch whose exit code cannot prove it
    write_proof: Callable[[], Awaitable[MailboxResult]] | None = field(
        default=None, repr=False, compare=False
    )


@dataclass
class RunSettings:
    round: int = 0
    job_name: str | None = None
    max_retries: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    connections: int | None = None  # overrides spec.connectionsPerMailbox
    ca_file: str | None = None
    egress_allow: tuple[str, ...] = ()  # OAuth2 token URLs the installation allows
    noop_status_seconds: int = 0  # > 0: a mailbox proved unchanged may leave its status as is (noopproof)

    @classmethod
    def from_env(cls, **kw: Any) -> RunSettings:
        env = settings.current()
        return cls(
            max_retries=env.max_retries,
            backoff_base=env.backoff_base,
            ca_file=env.ca_file or None,
            egress_allow=env.egress_allow,
            noop_status_seconds=env.noop_status_seconds,
            **kw,
        )


def backoff(attempt: int, base: float, cap: float, hint: float | None = None) -> float:
    """Exponential backoff with full jitter; a server's suggested delay is a floor."""
    delay = random.uniform(base, min(cap, base * (2**attempt)))
    return min(cap, max(delay, hint or 0.0))
