"""MailMigration: one migration of one domain's mailboxes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from .common import (
    MAX_ERRORS,
    QUANTITY_PATTERN,
    ApiModel,
    Conditions,
    Duration,
    History,
    K8sName,
    SecretKey,
    kopf_status_field,
    list_map,
)
from .groupware import Content, Groupware
from .imap import ImapEndpoint, SyncOptions

MigrationPhase = Literal[
    "Validating",
    "AwaitingApproval",
    "Syncing",
    "InSync",
    "Completing",
    "Completed",
    "Failed",
    "Suspended",
]
MIGRATION_CONDITIONS = ("Ready", "Validated", "Approved", "BulkCopied", "InSync", "Stalled")
InventoryFormat = Literal["auto", "csv", "json"]
RoundKind = Literal["bulk", "delta", "final"]


class MailboxEntry(ApiModel):
    source: str = Field(min_length=3, max_length=320, pattern=r"^[^\s@]+@[^\s@]+$|^[^\s@]+$")
    destination: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^[^\s@]+(@[^\s@]+)?$"
    )
    secret_key: SecretKey | None = None
    cohort: str | None = Field(
        default=None,
        max_length=40,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="who this mailbox's person is grouped with for notices (NoticePlan); default: the batch",
    )


class InventoryRef(ApiModel):
    """A ConfigMap key holding the mailboxes.

    CSV: `source,destination[,secretKey]` per line; JSON: `[{source, destination, secretKey}]`.
    """

    name: K8sName
    key: SecretKey = "mailboxes"
    format: InventoryFormat = "auto"


class Approval(ApiModel):
    required: bool = False
    approved: bool = False


# A Kubernetes resource.Quantity: `100m`, `512Mi` or a bare number.
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]


class ResourceRequirements(ApiModel):
    """corev1.ResourceRequirements for the worker container (cpu, memory, ephemeral-storage)."""

    requests: Annotated[dict[str, Quantity], Field(max_length=8)] = {}
    limits: Annotated[dict[str, Quantity], Field(max_length=8)] = {}


class WorkerSpec(ApiModel):
    # No schema defaults for these two: the API server would store them, and the installation's image
    # (chart image.*, upgrades) and ServiceAccount would never reach the Jobs. The operator fills them in.
    image: str | None = Field(default=None, min_length=1, max_length=512)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account_name: K8sName | None = None
    resources: ResourceRequirements | None = None
    mailbox_concurrency: int = Field(default=4, ge=1, le=64)
    active_deadline_seconds: int = Field(default=21600, ge=60)
    backoff_limit: int = Field(default=2, ge=0, le=20)


class MailMigrationSpec(SyncOptions):
    source: ImapEndpoint
    destination: ImapEndpoint
    # A map list: a mailbox listed twice is rejected, and server-side apply merges entries by source.
    mailboxes: (
        Annotated[list[MailboxEntry], Field(max_length=1000, json_schema_extra=list_map("source"))] | None
    ) = None
    inventory_ref: InventoryRef | None = None
    content: Content = Field(default=["mail"], description="what to move: mail, contacts, calendars")
    groupware: Groupware | None = Field(default=None, description="where contacts and calendars are")
    batch_size: int = Field(default=10, ge=1, le=1000)
    max_concurrent_jobs: int = Field(default=2, ge=1, le=200)
    delta_interval: Duration = "15m"
    approval: Approval = Approval()
    suspend: bool = False
    complete: bool = False
    retry_failed: str | None = Field(
        default=None,
        max_length=63,
        description="Change this value to retry every mailbox that failed.",
    )
    worker: WorkerSpec = WorkerSpec()

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.mailboxes) != has(self.inventoryRef)",
                    "message": "set exactly one of mailboxes or inventoryRef",
                },
                {
                    "rule": "!has(oldSelf.complete) || !oldSelf.complete || self.complete",
                    "message": "complete cannot be unset once set",
                    "fieldPath": ".complete",
                },
                {
                    "rule": "has(self.groupware) || !self.content.exists(c, c != 'mail')",
                    "message": "groupware is required when content includes contacts or calendars",
                    "fieldPath": ".groupware",
                },
            ]
        }
    }


class InventoryError(ApiModel):
    line: int = Field(ge=0)
    reason: str = Field(max_length=256)


class InventoryStatus(ApiModel):
    total: int = 0
    valid: int = 0
    invalid: int = 0
    errors: Annotated[list[InventoryError], Field(max_length=MAX_ERRORS)] = []


class MailboxError(ApiModel):
    mailbox: str = Field(max_length=320)
    side: Literal["source", "destination", "both"] | None = None
    reason: str = Field(max_length=128)
    message: str = Field(default="", max_length=1024)


class ScanStatus(ApiModel):
    mailboxes: int = 0
    reachable: int = 0
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    completed_at: datetime | None = None
    errors: Annotated[list[MailboxError], Field(max_length=MAX_ERRORS)] = []


class Totals(ApiModel):
    expected_messages: int = 0
    copied_messages: int = 0
    skipped_messages: int = 0
    failed_messages: int = 0
    expected_bytes: int = 0
    copied_bytes: int = 0


class Lag(ApiModel):
    max_seconds: int = 0
    pending_messages: int = 0


class JobCounts(ApiModel):
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class MailboxCounts(ApiModel):
    total: int = 0
    synced: int = 0
    syncing: int = 0
    pending: int = 0
    failed: int = 0


class RoundStatus(ApiModel):
    number: int = 0
    kind: RoundKind = "bulk"
    started_at: datetime | None = None
    completed_at: datetime | None = None


class CutoverHoldStatus(ApiModel):
    """The DnsCutover referencing this migration, as far as the final sync waits for it."""

    name: K8sName
    phase: str | None = Field(default=None, max_length=32)
    switched_at: datetime | None = None
    drain_until: datetime | None = None
    holds: str = Field(
        default="no",
        max_length=64,
        description="until when the final delta round waits for the cutover: `until the MX switch`, "
        "`until <drainUntil>`, or `no`",
    )


class MailMigrationStatus(ApiModel):
    phase: MigrationPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions = []
    inventory: InventoryStatus | None = None
    scan: ScanStatus | None = None
    totals: Totals | None = None
    lag: Lag | None = None
    jobs: JobCounts | None = None
    mailboxes: MailboxCounts | None = None
    round: RoundStatus | None = None
    progress: str | None = Field(default=None, max_length=32, description="copied/expected, for kubectl")
    retried_failed: str | None = Field(default=None, max_length=63)
    completed_at: datetime | None = None
    failed_mailboxes: Annotated[list[MailboxError], Field(max_length=MAX_ERRORS)] = []
    cutover: CutoverHoldStatus | None = None
    history: History = []
    kopf: dict[str, Any] | None = kopf_status_field()


class MailMigration(ApiModel):
    spec: MailMigrationSpec
    status: MailMigrationStatus = MailMigrationStatus()
