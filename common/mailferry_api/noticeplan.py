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
MAX_DRAFTS = 400
MAX_TEXT = 16384


class NoticeTiming(ApiModel):
    """When a notice goes out, relative to an anchor:

    window:           the cohort's planned migration window (`spec.cohorts[].window`); reminders use a
                      negative offset (-7d, -1d)
    batchStart:       the first time one of the cohort's mailboxes started syncing
    switch:           the DnsCutover's MX switch (`status.switchedAt` of `spec.cutoverRef`)
    mailboxCompleted: per person, when their own mailbox is in sync (MailboxSync phase Synced)
    """

    anchor: Anchor
    offset: SignedDuration = "0s"


class Notice(ApiModel):
    name: NoticeName
    template: SecretKey = Field(
        description="templates ConfigMap keys `<template>.subject` and `<template>.text`"
    )
    cohorts: Annotated[list[CohortName], Field(max_length=MAX_COHORTS)] = Field(
        default=[], description="cohorts that get this notice (empty: every cohort)"
    )
    at: NoticeTiming


class Cohort(ApiModel):
    name: CohortName
    window: datetime | None = Field(default=None, description="planned start of this cohort's window")


class SmtpSubmission(ApiModel):
    """SMTP submission (RFC 6409): STARTTLS on 587 or implicit TLS on 465; never plain text, because
    the login travels on it. The Secret is labelled like the IMAP credentials
    (`app.kubernetes.io/part-of: mailferry`)."""

    host: str = Field(min_length=1, max_length=253, pattern=HOST_PATTERN)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls"] = "starttls"
    tls_verify: bool = True
    secret_ref: SecretRef
    username_key: SecretKey = "username"
    password_key: SecretKey = "password"
    timeout_seconds: int = Field(default=30, ge=1, le=600)


class Sending(ApiModel):
    max_per_run: int = Field(default=100, ge=1, le=10000, description="messages sent per run at most")
    in_doubt_grace: Duration = Field(
        default="10m",
        description="how long a message whose send was interrupted is looked for in the recipient's "
        "mailbox before it is sent again",
    )


class NoticePlanSpec(ApiModel):
    migration_ref: LocalObjectRef
    cutover_ref: LocalObjectRef | None = Field(default=None, description="DnsCutover, for anchor `switch`")
    from_: str = Field(alias="from", min_length=3, max_length=320, description="From: 'Name <addr>'")
    reply_to: str | None = Field(default=None, max_length=320)
    templates_ref: LocalObjectRef = Field(description="ConfigMap with the templates")
    smtp: SmtpSubmission
    cohorts: Annotated[list[Cohort], Field(max_length=MAX_COHORTS, json_schema_extra=list_map("name"))] = []
    notices: Annotated[
        list[Notice], Field(min_length=1, max_length=MAX_NOTICES, json_schema_extra=list_map("name"))
    ]
    sending: Sending = Sending()
    approved_hashes: Annotated[list[DraftHash], Field(max_length=MAX_DRAFTS)] = Field(
        default=[], description="drafts approved for sending, by their exact hash (status.drafts[].hash)"
    )
    suspend: bool = False


class Draft(ApiModel):
    """One notice for one cohort, rendered: what a reviewer reads and approves by `hash`."""

    notice: NoticeName
    cohort: CohortName
    hash: str = Field(default="", max_length=16)
    state: DraftState
    due_at: datetime | None = None
    subject: str = Field(default="", max_length=998)
    text: str = Field(default="", max_length=MAX_TEXT)
    recipients: int = 0
    sent: int = 0
    bounced: int = 0
    in_doubt: int = 0
    reason: str = Field(default="", max_length=128)
    message: str = Field(default="", max_length=1024)


class CohortDelivery(ApiModel):
    cohort: CohortName
    recipients: int = 0
    sent: int = 0
    bounced: int = 0
    batch_started_at: datetime | None = None


class NoticePlanStatus(ApiModel):
    phase: PlanPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions = []
    pending_approvals: int = Field(default=0, description="drafts due or scheduled that wait for approval")
    sent: int = 0
    bounced: int = 0
    drafts: Annotated[list[Draft], Field(max_length=MAX_DRAFTS)] = []
    cohorts: Annotated[list[CohortDelivery], Field(max_length=MAX_COHORTS)] = []
    last_run_time: datetime | None = None
    kopf: dict[str, Any] | None = kopf_status_field()


class NoticePlan(ApiModel):
    spec: NoticePlanSpec
    status: NoticePlanStatus = NoticePlanStatus()
