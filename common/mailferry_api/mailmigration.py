"""MailMigration: one migration of one domain's mailboxes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from .common import (
    HOST_PATTERN,
    MAX_ERRORS,
    QUANTITY_PATTERN,
    ApiModel,
    Conditions,
    Duration,
    History,
    K8sName,
    SecretKey,
    SecretRef,
    kopf_status_field,
    list_map,
)
from .groupware import CollectionTotals, Content, Groupware
from .imap import ImapEndpoint, OAuth2, SyncOptions

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
RoundKind = Literal["bulk", "delta", "final", "follow"]
DeltaMode = Literal["rounds", "follow"]


class MailboxEntry(ApiModel):
    source: str = Field(min_length=3, max_length=320, pattern=r"^[^\s@]+@[^\s@]+$|^[^\s@]+$")
    """Login (usually the address) of the mailbox on the source."""
    destination: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^[^\s@]+(@[^\s@]+)?$"
    )
    """Login on the destination; default: the source login."""
    secret_key: SecretKey | None = None
    """Key in the Secrets holding this mailbox's passwords; default: the login with '@' as '_'."""
    cohort: str | None = Field(
        default=None,
        max_length=40,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="who this mailbox's person is grouped with for notices (NoticePlan); default: the batch",
    )


class InventoryDiscover(ApiModel):
    """Discovery by the operator: it lists the tenant's mailboxes, aliases and groups (Google Admin SDK
    Directory API or Microsoft Graph) into the inventoryRef ConfigMap, which it owns, and waits until a
    person approves that content by its hash (`approvedHash`). docs/providers.md."""

    provider: Literal["google", "microsoft365"]
    """google (a service account with domain-wide delegation acting as `admin`) or microsoft365 (an Entra
    ID app's client credentials with User.Read.All, Group.Read.All, MailboxSettings.Read)."""
    secret_ref: SecretRef
    """The Secret with the OAuth2 keys (labelled mailferry.io/credentials=true)."""
    oauth2: OAuth2 = OAuth2()
    """Key names, clientId/tenantId and tokenUrl as on the mail side (provider and scope are set here)."""
    admin: str | None = Field(default=None, max_length=320, pattern=r"^[^\s@]+@[^\s@]+$")
    """google: the administrator the service account acts as."""
    customer: str = Field(default="my_customer", max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    """google: the customer ID."""
    domain: str | None = Field(default=None, max_length=253, pattern=HOST_PATTERN)
    """google: only this domain of the customer."""
    destination_domain: str | None = Field(default=None, max_length=253, pattern=HOST_PATTERN)
    """Rewrite each address to this domain for the destination login."""
    include_suspended: bool = False
    """Also migrate suspended (disabled) accounts; shared, room and equipment mailboxes always are."""
    api_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    """API base override (default: the provider's public one); must be under egress.allowedUrls."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.provider != 'google' || has(self.admin)",
                    "message": "admin is required for provider google",
                    "fieldPath": ".admin",
                },
                {
                    "rule": "self.provider != 'microsoft365' || "
                    "(has(self.oauth2.clientId) && has(self.oauth2.tenantId))",
                    "message": "oauth2.clientId and oauth2.tenantId are required for provider microsoft365",
                    "fieldPath": ".oauth2",
                },
            ]
        }
    }


class InventoryRef(ApiModel):
    """A ConfigMap key holding the mailboxes.

    CSV: `source,destination[,secretKey]` per line; JSON: `[{source, destination, secretKey}]`.
    """

    name: K8sName
    """ConfigMap name."""
    key: SecretKey = "mailboxes"
    """Key of the ConfigMap holding the list."""
    format: InventoryFormat = "auto"
    """csv, json, or auto (by content)."""
    discover: InventoryDiscover | None = None
    """Let the operator write this ConfigMap from Google Workspace or Microsoft 365 (then review it)."""
    approved_hash: str | None = Field(default=None, max_length=71, pattern=r"^sha256:[0-9a-f]{64}$")
    """The ConfigMap content a person approved (`kubectl mailferry approve inventory NAME`). When set, or
    with `discover`, nothing is validated or copied while the ConfigMap's content hash differs."""


class Approval(ApiModel):
    required: bool = False
    """Scan first, then wait for `approved` before copying anything."""
    approved: bool = False
    """Set to true after reviewing status.scan (`kubectl mailferry approve migration NAME`)."""


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
    """Resources the worker container asks for (cpu, memory, ephemeral-storage)."""
    limits: Annotated[dict[str, Quantity], Field(max_length=8)] = {}
    """Most the worker container may use."""


class WorkerSpec(ApiModel):
    # No schema defaults for these two: the API server would store them, and the installation's image
    # (chart image.*, upgrades) and ServiceAccount would never reach the Jobs. The operator fills them in.
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Worker image; default: the operator's installation (the chart's image.*, MAILFERRY_WORKER_IMAGE), so
    upgrades reach the Jobs."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Always, IfNotPresent or Never."""
    service_account_name: K8sName | None = None
    """ServiceAccount of the worker pods; default: the installation's (mailferry-worker)."""
    resources: ResourceRequirements | None = None
    """Requests and limits of the worker container."""
    mailbox_concurrency: int = Field(default=4, ge=1, le=64)
    """Mailboxes one worker Job copies at once."""
    active_deadline_seconds: int = Field(default=21600, ge=60)
    """A Job running longer is stopped by Kubernetes (its checkpoints stay)."""
    backoff_limit: int = Field(default=2, ge=0, le=20)
    """Pod retries of one Job before it counts as failed."""


class SideBudget(ApiModel):
    """What one side takes from this whole migration at once, over every mailbox and Job (a shared
    server's or tenant's limits). Per-mailbox limits are `source.limits`/`destination.limits`."""

    connections: int | None = Field(default=None, ge=1, le=10000)
    """IMAP connections open at once on this side: caps the Jobs running and the mailboxes each copies."""
    bytes_per_day: int | None = Field(default=None, ge=1)
    """Bytes copied per 24 hours over every mailbox; the last day's copies count against it."""
    messages_per_second: float | None = Field(default=None, ge=0.01, le=100000)
    """Messages per second over every mailbox."""


class Budgets(ApiModel):
    """Budgets shared by every Job of the migration; each Job is handed its part (docs/providers.md)."""

    source: SideBudget = SideBudget()
    """What the source side allows the whole migration."""
    destination: SideBudget = SideBudget()
    """What the destination side allows the whole migration."""


class MailMigrationSpec(SyncOptions):
    """What to migrate and how: endpoints, mailboxes, folder rules, batching, approval, the worker."""

    source: ImapEndpoint
    """The IMAP server mail is copied from."""
    destination: ImapEndpoint
    """The IMAP server mail is copied to."""
    # A map list: a mailbox listed twice is rejected, and server-side apply merges entries by source.
    mailboxes: (
        Annotated[list[MailboxEntry], Field(max_length=1000, json_schema_extra=list_map("source"))] | None
    ) = None
    """The mailboxes, inline (up to 1,000); or use inventoryRef."""
    inventory_ref: InventoryRef | None = None
    """A ConfigMap listing the mailboxes (CSV or JSON), for long lists."""
    content: Content = Field(default=["mail"], description="what to move: mail, contacts, calendars")
    groupware: Groupware | None = Field(default=None, description="where contacts and calendars are")
    batch_size: int = Field(default=10, ge=1, le=1000)
    """Mailboxes per worker Job."""
    delta_batch_size: int | None = Field(default=None, ge=1, le=1000)
    """Mailboxes per worker Job in the rounds after the bulk copy (delta, final, follow); unset: batchSize.
    A delta round over thousands of unchanged mailboxes spends much of each Job on starting it, so larger
    Jobs there make the round cheaper. A round keeps the size it started with (status.round.batchSize)."""
    max_concurrent_jobs: int = Field(default=2, ge=1, le=200)
    """Worker Jobs running at once."""
    budgets: Budgets = Budgets()
    """Connections, bytes per day and messages per second shared by every Job, per side."""
    delta_interval: Duration = "15m"
    """Time between delta rounds once the bulk copy is done (e.g. 15m)."""
    delta_mode: DeltaMode = "rounds"
    """After the bulk copy: rounds (a delta round of Jobs every deltaInterval) or follow (long-running
    follower Jobs, one per batch, that watch the source with IMAP NOTIFY or IDLE and copy each change as
    it happens; a server with neither is polled every deltaInterval). docs/follow.md."""
    noop_status_interval: Duration = "0s"
    """How often a mailbox that a delta round proves unchanged rewrites its MailboxSync status. 0s
    (default): every round. With e.g. 1h it is rewritten only once its last write is older than 30-60 min
    (spread by name); in between, its round's Job completing is the proof: the migration's round and lag
    count it, the MailboxSync keeps its last write. For thousands of mailboxes, where a status write
    costs the API server more than the whole IMAP check (docs/job-contract.md)."""
    approval: Approval = Approval()
    """Review the scan before copying."""
    suspend: bool = False
    """Start no new worker Jobs (running ones finish)."""
    complete: bool = False
    """Run one final delta round, then stop (cannot be unset)."""
    retry_failed: str | None = Field(
        default=None,
        max_length=63,
        description="Change this value to retry every mailbox that failed.",
    )
    worker: WorkerSpec = WorkerSpec()
    """The worker Jobs: image, ServiceAccount, resources, concurrency."""

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
                {
                    # The worker Job mounts one Secret per side (docs/job-contract.md).
                    "rule": "!has(self.groupware) || !has(self.groupware.source.auth) || "
                    "self.groupware.source.auth.secretRef.name == self.source.auth.secretRef.name",
                    "message": "groupware.source.auth.secretRef must name the source's Secret",
                    "fieldPath": ".groupware.source.auth.secretRef",
                },
                {
                    "rule": "!has(self.groupware) || !has(self.groupware.destination.auth) || "
                    "self.groupware.destination.auth.secretRef.name == self.destination.auth.secretRef.name",
                    "message": "groupware.destination.auth.secretRef must name the destination's Secret",
                    "fieldPath": ".groupware.destination.auth.secretRef",
                },
            ]
        }
    }


class InventoryError(ApiModel):
    line: int = Field(ge=0)
    """Line (CSV) or index (JSON) of the row."""
    reason: str = Field(max_length=256)
    """Why the row was refused."""


class InventoryStatus(ApiModel):
    total: int = 0
    """Rows read."""
    valid: int = 0
    """Rows accepted."""
    invalid: int = 0
    """Rows refused (see errors)."""
    errors: Annotated[list[InventoryError], Field(max_length=MAX_ERRORS)] = []
    """The first refused rows, with the reason."""


class DiscoveryStatus(ApiModel):
    """The last discovery the operator ran for spec.inventoryRef.discover, and the content to review."""

    contents_hash: str | None = None
    """The ConfigMap's content hash now: set spec.inventoryRef.approvedHash to it after reviewing."""
    approved: bool = False
    """spec.inventoryRef.approvedHash matches the ConfigMap's content."""
    discovered_at: datetime | None = None
    """When the operator last wrote the ConfigMap."""
    mailboxes: int = 0
    """Mailboxes written to the inventory."""
    aliases: int = 0
    """Aliases to recreate on the destination before the MX swap (recreate.json)."""
    groups: int = 0
    """Groups and distribution lists to recreate (recreate.json)."""
    skipped: int = 0
    """Accounts left out (guests, no mailbox; suspended unless includeSuspended)."""


class MailboxError(ApiModel):
    mailbox: str = Field(max_length=320)
    """Source login of the mailbox."""
    side: Literal["source", "destination", "both"] | None = None
    """source, destination or both."""
    reason: str = Field(max_length=128)
    """The problem, as one CamelCase word."""
    message: str = Field(default="", max_length=1024)
    """The problem, in words."""


class ScanStatus(ApiModel):
    mailboxes: int = 0
    """Mailboxes scanned."""
    reachable: int = 0
    """Mailboxes whose source and destination logins worked."""
    folders: int = 0
    """Folders to copy."""
    messages: int = 0
    """Messages to copy."""
    bytes: int = 0
    """Bytes to copy."""
    largest_mailbox: str | None = Field(default=None, max_length=320)
    """Source login of the largest mailbox (a per-mailbox daily budget makes it the last to finish)."""
    largest_mailbox_bytes: int = 0
    """Its bytes."""
    completed_at: datetime | None = None
    """When the scan finished."""
    errors: Annotated[list[MailboxError], Field(max_length=MAX_ERRORS)] = []
    """Per-mailbox problems found by the scan."""


class Totals(ApiModel):
    expected_messages: int = 0
    """Messages on the source (to be copied)."""
    copied_messages: int = 0
    """Messages copied."""
    skipped_messages: int = 0
    """Messages skipped on purpose (duplicates, too large, before importSince)."""
    failed_messages: int = 0
    """Messages the destination refused."""
    deleted_messages: int = 0
    """Copies removed because the source expunged the message (`deletions: mirror`)."""
    moved_messages: int = 0
    """Copies moved on the destination because the source moved the message."""
    expected_bytes: int = 0
    """Bytes on the source."""
    copied_bytes: int = 0
    """Bytes copied."""


class Lag(ApiModel):
    max_seconds: int = 0
    """Largest time since a mailbox's last finished sync; in follow mode, the largest follow lag (p95
    of first seen -> APPEND) of a mailbox whose follower confirmed it lately, else the time since that
    mailbox was last known current."""
    pending_messages: int = 0
    """Messages on the source not yet on the destination."""
    mode: DeltaMode = "rounds"
    """follow when a followed mailbox's lag is in maxSeconds (the followers' measurement), else rounds."""


class JobCounts(ApiModel):
    active: int = 0
    """Worker Jobs running."""
    succeeded: int = 0
    """Worker Jobs finished."""
    failed: int = 0
    """Worker Jobs failed."""


class MailboxCounts(ApiModel):
    total: int = 0
    """Mailboxes of the migration."""
    synced: int = 0
    """Mailboxes whose last round finished."""
    syncing: int = 0
    """Mailboxes being copied now."""
    pending: int = 0
    """Mailboxes waiting for a Job."""
    failed: int = 0
    """Mailboxes whose copy failed (`kubectl mailferry retry`)."""


class RoundStatus(ApiModel):
    number: int = 0
    """Round number (1: the bulk copy)."""
    kind: RoundKind = "bulk"
    """bulk, delta, final or follow (follower Jobs that run until stopped)."""
    started_at: datetime | None = None
    """When the round started."""
    completed_at: datetime | None = None
    """When every mailbox finished the round."""
    batch_size: int | None = Field(default=None, ge=1, le=1000)
    """Mailboxes per worker Job in this round, fixed when it started: a spec changed mid-round must not
    shift its batches (Jobs are matched to batches by number)."""


class CutoverHoldStatus(ApiModel):
    """The DnsCutover referencing this migration, as far as the final sync waits for it."""

    name: K8sName
    """The DnsCutover."""
    phase: str | None = Field(default=None, max_length=32)
    """Its phase."""
    switched_at: datetime | None = None
    """When it swapped the MX records."""
    drain_until: datetime | None = None
    """Until when mail may still arrive at the old provider."""
    holds: str = Field(
        default="no",
        max_length=64,
        description="until when the final delta round waits for the cutover: `until the MX switch`, "
        "`until <drainUntil>`, or `no`",
    )


class SideBudgetUse(ApiModel):
    connections: int = 0
    """IMAP connections the running Jobs may open on this side."""
    bytes_per_day: int | None = None
    """Sum of the running Jobs' daily byte shares on this side (at most the budget minus the last day's
    copies)."""
    messages_per_second: float | None = None
    """Sum of the running Jobs' message-rate shares on this side."""


class BudgetStatus(ApiModel):
    """How the running Jobs share the budgets, and what waits for them."""

    source: SideBudgetUse = SideBudgetUse()
    """The source side's budget in use."""
    destination: SideBudgetUse = SideBudgetUse()
    """The destination side's budget in use."""
    bytes_last_day: int = 0
    """Bytes copied over every mailbox in the last 24 hours."""
    held_jobs: int = 0
    """Jobs due that wait for budget."""
    reason: str | None = Field(default=None, max_length=64)
    """Why they wait: ConnectionBudget, ByteBudgetSpent, MessageBudgetSpent or MailboxBudgetSpent."""
    message: str | None = Field(default=None, max_length=1024)
    """Why they wait, in words, and until when."""


class MailMigrationStatus(ApiModel):
    """Where the migration stands (written by the operator)."""

    phase: MigrationPhase | None = None
    """Validating, AwaitingApproval, Syncing, InSync, Completing, Completed, Failed or Suspended."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: Conditions = []
    """Ready, Validated, Approved, BulkCopied, InSync and Stalled, each with a reason and message."""
    inventory: InventoryStatus | None = None
    """What the inventory ConfigMap held."""
    discovery: DiscoveryStatus | None = None
    """spec.inventoryRef.discover: what was found and the hash to approve."""
    scan: ScanStatus | None = None
    """What the scan found (review it before approving)."""
    totals: Totals | None = None
    """Messages and bytes, expected and copied, over every mailbox."""
    lag: Lag | None = None
    """How far the destination is behind the source."""
    jobs: JobCounts | None = None
    """Worker Jobs by state."""
    mailboxes: MailboxCounts | None = None
    """Mailboxes by state."""
    round: RoundStatus | None = None
    """The current (or last) round."""
    progress: str | None = Field(default=None, max_length=32, description="copied/expected, for kubectl")
    eta: datetime | None = None
    """When the copy is expected to be done, from the scan, the budgets and the throughput seen so far."""
    eta_seconds: int | None = Field(default=None, ge=0)
    """Seconds from the last status write until `eta`."""
    eta_reason: str | None = Field(default=None, max_length=64)
    """What bounds the estimate (BudgetBound, MessageRateBound, ThroughputBound, Done) or why there is
    none (NotScanned, NoRateYet)."""
    budget: BudgetStatus | None = None
    """How the Jobs share spec.budgets and the per-mailbox limits."""
    retried_failed: str | None = Field(default=None, max_length=63)
    """The spec.retryFailed value last acted on."""
    completed_at: datetime | None = None
    """When the migration completed."""
    failed_mailboxes: Annotated[list[MailboxError], Field(max_length=MAX_ERRORS)] = []
    """Mailboxes that failed, with the reason."""
    cutover: CutoverHoldStatus | None = None
    """The DnsCutover the final sync waits for."""
    history: History = []
    """The latest phase transitions."""
    collection_totals: CollectionTotals | None = None
    """Contacts and calendars of every mailbox, summed per kind."""
    kopf: dict[str, Any] | None = kopf_status_field()


class MailMigration(ApiModel):
    spec: MailMigrationSpec
    status: MailMigrationStatus = MailMigrationStatus()
