"""MailboxSync: one mailbox, with its per-folder UID checkpoints in status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from .common import ApiModel, Conditions, ErrorInfo, K8sName, LocalObjectRef, SecretKey, kopf_status_field
from .groupware import Collections, Content, Groupware, ItemErrors
from .imap import ImapEndpoint, SyncOptions

MailboxPhase = Literal["Pending", "Syncing", "Synced", "Throttled", "Failed"]
MAILBOX_CONDITIONS = ("Ready", "Synced", "Stalled", "Throttled", "DeletionsHeld")
MAX_FOLDERS = 1000
# A sequence set of ranges: one range per stretch of copies not interrupted by mail delivered to the
# destination directly; bounded so that status stays small.
MAX_OWNED_CHARS = 16384


class MailboxSide(ApiModel):
    endpoint: ImapEndpoint
    username: str = Field(min_length=1, max_length=320)


class MailboxSyncSpec(SyncOptions):
    source: MailboxSide
    destination: MailboxSide
    secret_key: SecretKey | None = None
    migration_ref: LocalObjectRef | None = None
    suspend: bool = False
    content: Content = ["mail"]
    groupware: Groupware | None = None


class FolderCheckpoint(ApiModel):
    """Where the copy of one source folder stands. `lastUid`: highest source UID known on the destination."""

    name: str = Field(max_length=1024, description="source folder name (decoded)")
    destination: str | None = Field(default=None, max_length=1024)
    uid_validity: int | None = Field(default=None, ge=0)
    last_uid: int = Field(default=0, ge=0)
    uid_next: int | None = Field(default=None, ge=0)
    highest_mod_seq: int | None = Field(default=None, ge=0)
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
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    pending: int = 0
    deleted: int = Field(default=0, description="copies removed because the source expunged the message")
    moved: int = Field(default=0, description="copies moved here because the source moved the message")
    deletions_held: int = Field(
        default=0, description="removals the safety cap holds back (see spec.deletionSafety)"
    )
    last_sync_time: datetime | None = None


class SyncTotals(ApiModel):
    messages: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    moved: int = 0
    bytes: int = 0
    expected_bytes: int = 0


class MailboxLag(ApiModel):
    seconds: int = 0
    pending_messages: int = 0


class Throttle(ApiModel):
    reason: str = Field(max_length=256)
    until: datetime | None = None
    count: int = 0


class MailboxSyncStatus(ApiModel):
    phase: MailboxPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions = []
    folders: Annotated[
        list[FolderCheckpoint],
        Field(
            max_length=MAX_FOLDERS,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ] = []
    totals: SyncTotals | None = None
    skip_reasons: dict[str, int] = {}
    lag: MailboxLag | None = None
    round: int = Field(default=0, ge=0, description="the last MailMigration round this mailbox finished")
    job_name: K8sName | None = None
    attempts: int = 0
    last_sync_time: datetime | None = None
    last_error: ErrorInfo | None = None
    throttle: Throttle | None = None
    flag_errors: int = 0
    collections: Collections = []
    item_errors: ItemErrors = []
    kopf: dict[str, Any] | None = kopf_status_field()


class MailboxSync(ApiModel):
    spec: MailboxSyncSpec
    status: MailboxSyncStatus = MailboxSyncStatus()
