"""NoticePlan: the notices sent to the people of one MailMigration, by cohort, each draft approved by hash.

A sibling of the MailMigration (not fields on it) because its status has a different writer: the
MailMigration's reconcile loop writes its status as a whole, so a second writer there would race it;
and approving a notice (a spec edit here) must not count as a change of the migration (no new
generation, no re-validation of every mailbox). It also lets RBAC separate who approves notices
from who runs the migration, and Argo CD sync the approvals on their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from .common import (
    HOST_PATTERN,
    ApiModel,
    Conditions,
    Duration,
    LocalObjectRef,
    SecretKey,
    SecretRef,
    kopf_status_field,
    list_map,
)
from .imap import ImapEndpoint

# A cohort: the inventory's `cohort` column (a department, "pilot", shared-mailbox owners), else the batch.
CohortName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=40)]
NoticeName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=40)]
DraftHash = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
SignedDuration = Annotated[str, Field(pattern=r"^-?([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$", max_length=32)]

Anchor = Literal["window", "batchStart", "switch", "mailboxCompleted"]
DraftState = Literal["Scheduled", "AwaitingApproval", "Sending", "Sent", "Refused"]
PlanPhase = Literal["AwaitingApproval", "Scheduled", "Sending", "Sent", "Stalled"]

MAX_NOTICES = 32
MAX_COHORTS = 100
# Drafts live in status (one object, under etcd's 1.5 MiB): 100 drafts of at most 8 KiB of text each.
MAX_DRAFTS = 100
MAX_TEXT = 8192


class NoticeTiming(ApiModel):
    """When a notice goes out, relative to an anchor:

    window:           the cohort's planned migration window (`spec.cohorts[].window`); reminders use a
                      negative offset (-7d, -1d)
    batchStart:       the first time one of the cohort's mailboxes started syncing
    switch:           the DnsCutover's MX switch (`status.switchedAt` of `spec.cutoverRef`)
    mailboxCompleted: per person, when their own mailbox is in sync (MailboxSync phase Synced)
    """

    anchor: Anchor
    """What the time is relative to."""
    offset: SignedDuration = "0s"
    """Offset from the anchor (negative: before)."""


class Notice(ApiModel):
    name: NoticeName
    """Notice name."""
    template: SecretKey = Field(
        description="templates ConfigMap keys `<template>.subject` and `<template>.text`"
    )
    cohorts: Annotated[list[CohortName], Field(max_length=MAX_COHORTS)] = Field(
        default=[], description="cohorts that get this notice (empty: every cohort)"
    )
    at: NoticeTiming
    """When to send it."""


class Cohort(ApiModel):
    name: CohortName
    """Cohort name (the inventory's cohort column)."""
    window: datetime | None = Field(default=None, description="planned start of this cohort's window")


class SmtpSubmission(ApiModel):
    """SMTP submission (RFC 6409): STARTTLS on 587 or implicit TLS on 465; never plain text, because
    the login travels on it. The Secret must be labelled like the IMAP credentials
    (`mailferry.io/credentials: "true"`, the owner's consent: kube.consent), else SecretNotPermitted."""

    host: str = Field(min_length=1, max_length=253, pattern=HOST_PATTERN)
    """SMTP submission server."""
    port: int = Field(default=587, ge=1, le=65535)
    """Its port (587 starttls, 465 tls)."""
    security: Literal["starttls", "tls"] = "starttls"
    """starttls or tls."""
    tls_verify: bool = True
    """Verify the server certificate."""
    secret_ref: SecretRef
    """Secret holding the login (labelled mailferry.io/credentials=true)."""
    username_key: SecretKey = "username"
    """Key of the user name."""
    password_key: SecretKey = "password"
    """Key of the password."""
    timeout_seconds: int = Field(default=30, ge=1, le=600)
    """Seconds per SMTP exchange."""


class Sending(ApiModel):
    max_per_run: int = Field(default=100, ge=1, le=10000, description="messages sent per run at most")
    in_doubt_grace: Duration = Field(
        default="10m",
        description="how long a message whose send was interrupted is looked for in the recipient's "
        "mailbox before it is sent again",
    )


class Replies(ApiModel):
    """The mailbox notices come back to. Its address is each notice's envelope sender (Return-Path: where
    mail servers send delivery status notifications, RFC 3464) and, unless spec.replyTo is set, its
    Reply-To (where people acknowledge by replying). The operator reads it over IMAP, read-only, new
    messages only (by UID), and counts bounces and acknowledgements per cohort. The IMAP Secret must be
    labelled mailferry.io/credentials=true, like every Secret the operator reads."""

    address: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+$")
    """The mailbox's address: envelope sender of every notice, and Reply-To unless spec.replyTo is set."""
    imap: ImapEndpoint
    """The IMAP server holding the mailbox, and how to log in (auth.secretRef)."""
    username: str = Field(min_length=1, max_length=320)
    """IMAP login of the mailbox."""
    secret_key: SecretKey | None = None
    """Secret key of the password (auth method password); default: the username with '@' as '_'."""
    folder: str = Field(default="INBOX", min_length=1, max_length=255)
    """Folder to read."""
    max_message_bytes: int = Field(default=262144, ge=4096, le=10485760)
    """Larger messages are not read (counted as unmatched): a bounce or a reply to a notice is small."""
    max_per_run: int = Field(default=500, ge=1, le=10000)
    """Messages read per run at most (the rest in the next runs)."""
    interval: Duration = "1m"
    """How often the mailbox is read (each read is an IMAP login)."""


class NoticePlanSpec(ApiModel):
    """Notices to the people migrated: cohorts, templates, timing, SMTP, approved drafts."""

    migration_ref: LocalObjectRef
    """The MailMigration whose people get the notices."""
    cutover_ref: LocalObjectRef | None = Field(default=None, description="DnsCutover, for anchor `switch`")
    from_: str = Field(alias="from", min_length=3, max_length=320, description="From: 'Name <addr>'")
    reply_to: str | None = Field(default=None, max_length=320)
    """Reply-To: address (default: replies.address when replies is set)."""
    replies: Replies | None = None
    """The mailbox bounces and replies come back to: counted per cohort (bounced, acknowledged)."""
    templates_ref: LocalObjectRef = Field(description="ConfigMap with the templates")
    smtp: SmtpSubmission
    """How to send."""
    cohorts: Annotated[list[Cohort], Field(max_length=MAX_COHORTS, json_schema_extra=list_map("name"))] = []
    """Groups of people, with their migration windows."""
    notices: Annotated[
        list[Notice], Field(min_length=1, max_length=MAX_NOTICES, json_schema_extra=list_map("name"))
    ]
    """The notices and when each goes out."""
    sending: Sending = Sending()
    """Pace and retries."""
    approved_hashes: Annotated[list[DraftHash], Field(max_length=4 * MAX_DRAFTS)] = Field(
        default=[], description="drafts approved for sending, by their exact hash (status.drafts[].hash)"
    )
    suspend: bool = False
    """Send nothing."""


class Draft(ApiModel):
    """One notice for one cohort, rendered: what a reviewer reads and approves by `hash`."""

    notice: NoticeName
    """Notice name."""
    cohort: CohortName
    """Cohort name."""
    hash: str = Field(default="", max_length=16)
    """Hash of the rendered draft: approve it by adding it to spec.approvedHashes."""
    state: DraftState
    """Where the draft stands."""
    due_at: datetime | None = None
    """When it is due."""
    subject: str = Field(default="", max_length=998)
    """Rendered subject."""
    text: str = Field(default="", max_length=MAX_TEXT)
    """Rendered text."""
    recipients: int = 0
    """People it goes to."""
    sent: int = 0
    """Sent."""
    bounced: int = 0
    """Bounced: refused during the SMTP transaction, or later by a delivery status notification."""
    acknowledged: int = 0
    """Recipients who replied to it (once each)."""
    awaiting_since: datetime | None = None
    """Since when this hash waits for approval."""
    in_doubt: int = 0
    """Sends whose outcome is unknown (never repeated blindly)."""
    reason: str = Field(default="", max_length=128)
    """Why it is in this state, as one word."""
    message: str = Field(default="", max_length=1024)
    """Why, in words."""


class CohortDelivery(ApiModel):
    cohort: CohortName
    """Cohort name."""
    recipients: int = 0
    """People in the cohort."""
    sent: int = 0
    """Sent."""
    bounced: int = 0
    """Bounced (during the SMTP transaction or later by a delivery status notification)."""
    acknowledged: int = 0
    """Recipients who replied (once per recipient and notice)."""
    bounced_percent: str = Field(default="", max_length=8)
    """bounced / (sent + bounced), e.g. 2.5%."""
    acknowledged_percent: str = Field(default="", max_length=8)
    """acknowledged / sent, e.g. 40.0%."""
    batch_started_at: datetime | None = None
    """When the current batch started."""


class RepliesRead(ApiModel):
    """Where reading spec.replies stands: the checkpoint (UIDVALIDITY and the last UID read) and what the
    messages read were. Written with the plan's status after the ledgers, so a crash in between re-reads
    messages whose effect is already in the ledger (idempotent: counts come from the ledger)."""

    mailbox: str = Field(default="", max_length=1024)
    """Which folder the checkpoint is for (username@host:port/folder): another one is read from the start."""
    uid_validity: int | None = None
    """UIDVALIDITY of the folder read."""
    last_uid: int = 0
    """Highest UID read."""
    bounces: int = 0
    """Delivery status notifications matched to a notice."""
    acknowledgements: int = 0
    """Replies matched to a notice and its recipient."""
    auto_replies: int = 0
    """Automatic replies (vacation, out of office): not acknowledgements."""
    unmatched: int = 0
    """Messages that match no notice (or are too large, or unreadable)."""
    last_read_time: datetime | None = None
    """When the folder was last read."""
    error: str = Field(default="", max_length=256)
    """Why the last read failed (empty: it worked)."""


class NoticePlanStatus(ApiModel):
    """Drafts and deliveries (written by the operator)."""

    phase: PlanPhase | None = None
    """The plan's phase."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: Conditions = []
    """Ready and the plan's own conditions."""
    pending_approvals: int = Field(default=0, description="drafts due or scheduled that wait for approval")
    sent: int = 0
    """Notices sent."""
    bounced: int = 0
    """Notices bounced."""
    acknowledged: int = 0
    """Notices acknowledged by their recipient."""
    replies: RepliesRead | None = None
    """Reading spec.replies: checkpoint and counts."""
    drafts: Annotated[list[Draft], Field(max_length=MAX_DRAFTS)] = []
    """Rendered drafts, with their hashes and states."""
    cohorts: Annotated[list[CohortDelivery], Field(max_length=MAX_COHORTS)] = []
    """Delivery per cohort."""
    last_run_time: datetime | None = None
    """When the plan last ran."""
    kopf: dict[str, Any] | None = kopf_status_field()


class NoticePlan(ApiModel):
    spec: NoticePlanSpec
    status: NoticePlanStatus = NoticePlanStatus()
