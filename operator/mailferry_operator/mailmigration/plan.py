"""What one pass sees (Snapshot) and what it decides (Plan): plain data between observe, decide and apply."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailferry_api.budgets import JobShare
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus
from mailferry_api.problems import Problem

from .views import JobView, MailboxView

IDLE_REQUEUE = 30.0


@dataclass(frozen=True)
class JobPlan:
    name: str
    round: int
    batch: int
    attempt: int
    mailboxes: tuple[str, ...]
    share: JobShare | None = None  # its part of the budgets (budgets.schedule); None: not scheduled yet
    follow: bool = False  # a long-running follower (`mailferry-worker follow`, deltaMode: follow)
    # A delta round's Job under spec.noopStatusInterval: its success proves the mailboxes it did not write
    # unchanged (proofs.py), and a mailbox proved unchanged rewrites its status only this rarely.
    noop_status_seconds: int = 0


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class ValidationState:
    """What the daemon remembers of the connection test (times on the monotonic clock, seconds)."""

    now: float
    running: bool = False
    tested: frozenset[str] = frozenset()  # MailboxSync names the running validation has tested
    failures: int = 0  # failed validations in a row: the retry backs off (logins lock accounts)
    next_at: float = 0.0  # no earlier retry of a failed validation
    trigger: tuple[int, str | None] | None = None  # (generation, retry token) last tested
    # A validation that just finished: its scratch status (scan + Validated), or crashed=True.
    result: MailMigrationStatus | None = None
    crashed: bool = False


@dataclass(frozen=True)
class ValidationPlan:
    start: bool = False
    cancel: bool = False
    failures: int = 0
    next_at: float = 0.0
    trigger: tuple[int, str | None] | None = None
    retry_in: float | None = None  # set when the finished validation failed: seconds until the next
    folded: bool = False  # the finished validation's result is in this plan's status: forget the task


@dataclass(frozen=True)
class CutoverHold:
    """The DnsCutover that references this MailMigration, as far as the final sync cares."""

    name: str
    phase: str | None = None
    switched_at: datetime | None = None  # the MX swap (DnsCutover status.switchedAt)
    drain_until: datetime | None = None  # old MX may still get mail until then (status.drainUntil)


@dataclass
class Snapshot:
    name: str
    generation: int
    spec: MailMigrationSpec
    status: MailMigrationStatus
    mailboxes: Mapping[str, MailboxView]  # by MailboxSync name: the current inventory only
    jobs: Sequence[JobView]
    now: datetime
    approved_annotation: bool = False
    retry_annotation: str | None = None
    created_at: datetime | None = None
    # While validation still runs (no approval needed): the MailboxSyncs tested so far; a batch starts
    # once all its members are tested. None: validation is not running. Replaced by what `validation`
    # decides when that is given.
    validated_names: frozenset[str] | None = None
    # The daemon's validation state; None: validation is not scheduled by this pass (unit tests).
    validation: ValidationState | None = None
    # Why the spec cannot run (inventory unreadable, spec check, mailbox conflict): blocks validation.
    problem: Problem | None = None
    inventory_ready: bool = True  # the inventory was read (MailboxSyncs can be ensured, tested)
    cutovers: Sequence[CutoverHold] = ()  # DnsCutovers whose spec.migrationRef names this migration


@dataclass
class Plan:
    status: MailMigrationStatus
    create_jobs: list[JobPlan] = field(default_factory=list)
    stop_jobs: list[str] = field(default_factory=list)  # follower Jobs to delete (follow mode completed)
    prune_jobs: list[str] = field(default_factory=list)  # finished Jobs of old rounds (rounds.prunable_jobs)
    events: list[Event] = field(default_factory=list)
    requeue_after: float = IDLE_REQUEUE
    validation: ValidationPlan | None = None
    ensure_mailboxsyncs: bool = False
