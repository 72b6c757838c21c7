"""MailboxSync: one mailbox, with its per-folder UID checkpoints in status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from .common import ApiModel, Conditions, ErrorInfo, K8sName, LocalObjectRef, SecretKey, kopf_status_field
from .groupware import KINDS, CollectionKind, Collections, CollectionTotals, Content, Groupware, ItemErrors
from .imap import ImapEndpoint, SyncOptions

MailboxPhase = Literal["Pending", "Syncing", "Synced", "Throttled", "Failed"]
MAILBOX_CONDITIONS = ("Ready", "Synced", "Stalled", "Throttled", "DeletionsHeld")
MAX_FOLDERS = 1000
# A sequence set of ranges: one range per stretch of copies not interrupted by mail delivered to the
# destination directly; bounded so that status stays small.
MAX_OWNED_CHARS = 16384
# A folder lists at most this many refused keywords (status stays small whatever the source holds).
MAX_REFUSED_KEYWORDS = 32
# One bucket per hour of the last day, plus the hour in progress.
MAX_USAGE_BUCKETS = 25


class MailboxSide(ApiModel):
    endpoint: ImapEndpoint
    """The IMAP server."""
    username: str = Field(min_length=1, max_length=320)
    """The mailbox's login on that server."""


class MailboxSyncSpec(SyncOptions):
    """One mailbox: both sides and what to copy (created by its MailMigration)."""

    source: MailboxSide
    """Where the mail comes from."""
    destination: MailboxSide
    """Where the mail goes."""
    secret_key: SecretKey | None = None
    """Key of the mailbox's password in each side's Secret."""
    migration_ref: LocalObjectRef | None = None
    """The MailMigration this mailbox belongs to."""
    suspend: bool = False
    """Do not sync this mailbox."""
    content: Content = ["mail"]
    """What to move: mail, contacts, calendars."""
    groupware: Groupware | None = None
    """Where contacts and calendars are."""

    def groupware_kinds(self) -> list[CollectionKind]:
        """The kinds of collection to copy: those `content` names, once `groupware` says where they are."""
        if self.groupware is None:
            return []
        return [k for k in KINDS if k in self.content]


class FolderCheckpoint(ApiModel):
    """Where the copy of one source folder stands. `lastUid`: highest source UID known on the destination."""

    name: str = Field(max_length=1024, description="source folder name (decoded)")
    destination: str | None = Field(default=None, max_length=1024)
    """Destination folder name."""
    uid_validity: int | None = Field(default=None, ge=0)
    """Source UIDVALIDITY the UIDs below refer to."""
    last_uid: int = Field(default=0, ge=0)
    """Highest source UID known to be on the destination."""
    uid_next: int | None = Field(default=None, ge=0)
    """Source UIDNEXT at the last sync (unchanged: nothing new)."""
    highest_mod_seq: int | None = Field(default=None, ge=0)
    """Source HIGHESTMODSEQ at the last sync (CONDSTORE), for flag changes."""
    dest_uid_validity: int | None = Field(
        default=None, ge=0, description="destination folder UIDVALIDITY that `destUidNext` refers to"
    )
    dest_uid_next: int | None = Field(
        default=None,
        ge=0,
        description=(
            "destination UID that divides copies at `floorUid`: copies of source messages above "
            "`floorUid` are at or above it, copies of those at or below it are below it"
        ),
    )
    floor_uid: int | None = Field(
        default=None,
        ge=0,
        description=(
            "source UID (<= `lastUid`) that `destUidNext` belongs to: after an interruption only source "
            "UIDs above it are re-matched, against destination UIDs from `destUidNext` up"
        ),
    )
    owned: str | None = Field(
        default=None,
        max_length=MAX_OWNED_CHARS,
        description=(
            "destination UIDs (IMAP sequence set) of mailferry's own copies in `destination`: only these "
            "are ever removed or moved when the source loses a message (`deletions: mirror`)"
        ),
    )
    owned_uid_validity: int | None = Field(
        default=None, ge=0, description="destination folder UIDVALIDITY that `owned` refers to"
    )
    synced_messages: int | None = Field(
        default=None,
        ge=0,
        description="source messages below `uidNext` when the last round ended: fewer now means expunged",
    )
    messages: int = 0
    """Messages in the source folder."""
    copied: int = 0
    """Messages copied."""
    skipped: int = 0
    """Messages skipped on purpose."""
    failed: int = 0
    """Messages the destination refused."""
    refused_keywords: (
        Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=MAX_REFUSED_KEYWORDS)] | None
    ) = None
    """Keywords the destination folder does not store (no `\\*` in its PERMANENTFLAGS, e.g. Microsoft 365):
    the messages are copied without them; the source keeps them."""
    bytes: int = 0
    """Bytes copied."""
    pending: int = 0
    """Messages still to copy."""
    deleted: int = Field(default=0, description="copies removed because the source expunged the message")
    moved: int = Field(default=0, description="copies moved here because the source moved the message")
    deletions_held: int = Field(
        default=0, description="removals the safety cap holds back (see spec.deletionSafety)"
    )
    last_sync_time: datetime | None = None
    """When the folder last finished a sync."""


class SyncTotals(ApiModel):
    messages: int = 0
    """Messages on the source."""
    copied: int = 0
    """Messages copied."""
    skipped: int = 0
    """Messages skipped on purpose."""
    failed: int = 0
    """Messages the destination refused."""
    deleted: int = 0
    """Copies removed because the source expunged the message."""
    moved: int = 0
    """Copies moved because the source moved the message."""
    bytes: int = 0
    """Bytes copied."""
    expected_bytes: int = 0
    """Bytes on the source."""


class MailboxLag(ApiModel):
    seconds: int = 0
    """Time since the last finished sync."""
    pending_messages: int = 0
    """Messages on the source not yet copied."""


class Throttle(ApiModel):
    reason: str = Field(max_length=256)
    """What the server said (e.g. [THROTTLED], a daily byte budget)."""
    until: datetime | None = None
    """No new connection before this time."""
    count: int = 0
    """Throttle responses so far."""


class UsageBucket(ApiModel):
    """Bytes and messages copied in one clock hour (the window a daily budget is measured over)."""

    start: datetime
    """Start of the hour (UTC)."""
    bytes: int = Field(default=0, ge=0)
    """Bytes copied (downloaded from the source and uploaded to the destination) in that hour."""
    messages: int = Field(default=0, ge=0)
    """Messages copied in that hour."""


class FollowStatus(ApiModel):
    """Live follow mode (the MailMigration's deltaMode: follow): how the follower watches this mailbox,
    when it last confirmed the destination current, and the lag of the copies it made."""

    mode: Literal["notify", "idle", "poll"] = "poll"
    """How changes are seen: notify (IMAP NOTIFY, every folder), idle (IDLE on INBOX + a STATUS sweep of
    the other folders), poll (a delta every poll interval: the server has neither)."""
    job_name: str | None = Field(default=None, max_length=63)
    """The follower Job serving the mailbox."""
    since: datetime | None = None
    """When this follower started serving the mailbox."""
    caught_up_at: datetime | None = None
    """The last time the follower knew the destination current (a delta finished with nothing waiting,
    or a heartbeat while its change feed was live)."""
    heartbeat_seconds: int = Field(default=120, ge=1)
    """How often the follower confirms: a caughtUpAt older than 3 of these means it is not following."""
    last_lag_seconds: float | None = Field(default=None, ge=0)
    """Lag of the last copied message (first seen on the source -> APPEND confirmed on the destination)."""
    p95_lag_seconds: float | None = Field(default=None, ge=0)
    """95th percentile of the lag over the window."""
    window_seconds: int = Field(default=3600, ge=1)
    """The window of the percentile."""
    samples: int = Field(default=0, ge=0)
    """Copies measured in the window."""


class MailboxSyncStatus(ApiModel):
    """Where the mailbox stands: per-folder checkpoints, counts, lag, errors (written by the worker)."""

    phase: MailboxPhase | None = None
    """Pending, Syncing, Synced, Throttled or Failed."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: Conditions = []
    """Ready, Synced, Stalled and Throttled."""
    folders: Annotated[
        list[FolderCheckpoint],
        Field(
            max_length=MAX_FOLDERS,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ] = []
    """One checkpoint per source folder."""
    totals: SyncTotals | None = None
    """Counts over every folder."""
    skip_reasons: dict[str, int] = {}
    """Skipped messages by reason."""
    lag: MailboxLag | None = None
    """How far the destination is behind."""
    round: int = Field(default=0, ge=0, description="the last MailMigration round this mailbox finished")
    job_name: K8sName | None = None
    """The worker Job that last synced this mailbox."""
    attempts: int = 0
    """Failed attempts in a row."""
    last_sync_time: datetime | None = None
    """When the last sync finished."""
    last_error: ErrorInfo | None = None
    """The last error."""
    throttle: Throttle | None = None
    """The server's throttling, when it throttles."""
    usage: list[UsageBucket] | None = Field(default=None, max_length=MAX_USAGE_BUCKETS)
    """What was copied per hour over the last day: the operator subtracts it from the daily budgets
    before it hands the next Jobs their share (docs/providers.md)."""
    eta: datetime | None = None
    """When the copy is expected to be done (budgets, pending messages, observed throughput)."""
    eta_seconds: int | None = Field(default=None, ge=0)
    """Seconds from the last status write until `eta`."""
    eta_reason: str | None = Field(default=None, max_length=64)
    """What bounds the estimate (BudgetBound, MessageRateBound, ThroughputBound, Done) or why there is
    none (NoRateYet)."""
    follow: FollowStatus | None = None
    """Live follow mode: the follower's watch, last confirmation and lag (absent with delta rounds)."""
    flag_errors: int = 0
    """Flag changes the destination refused."""
    collections: Collections = []
    """One checkpoint per address book or calendar."""
    item_errors: ItemErrors = []
    """Contacts or events that could not be copied."""
    collection_totals: CollectionTotals | None = None
    """The collections summed per kind (what the MailMigration adds up)."""
    kopf: dict[str, Any] | None = kopf_status_field()


class MailboxSync(ApiModel):
    spec: MailboxSyncSpec
    status: MailboxSyncStatus = MailboxSyncStatus()
