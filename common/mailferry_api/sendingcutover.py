"""SendingCutover: an application's transactional mail moved to a new sending provider by a gated ramp.

A resource of its own rather than a part of DnsCutover: it has another owner (the application team
holds the provider keys), another life (sending may move while mailboxes stay, and its ramp runs
for weeks after the MX swap), another decision (a share of traffic judged on bounce and complaint
rates, not ordered DNS phases) and another output (a Secret the application reads). It points at the
DnsCutover of its domain with `dnsCutoverRef` when the ramp must wait for that switch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from .common import (
    DOMAIN_PATTERN,
    ApiModel,
    Conditions,
    Duration,
    K8sName,
    SecretKey,
    kopf_status_field,
)
from .dnscutover import DNS_PHASES, DnsPhase, HostName

SENDING_CONDITIONS = ("Ready", "RecordsVerified", "GatesPassed", "Stalled", "HardStopped", "RolledBack")
EspProvider = Literal["ses", "sendgrid", "mailgun", "postmark", "generic"]
RecordType = Literal["CNAME", "TXT", "MX"]
HardStopAction = Literal["Zero", "StepBack"]
SendingPhase = Literal["Pending", "Ramping", "Holding", "Complete", "HardStopped", "RolledBack"]
Decision = Literal["Advance", "Hold", "StepBack", "HardStop", "RollBack"]
STREAM_PATTERN = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"


class ProviderKey(ApiModel):
    """A sending provider and where its API key lives (a Secret the application team owns)."""

    name: EspProvider
    """The email sending provider (ESP)."""
    secret_name: K8sName
    """Secret holding its API key."""
    secret_key: SecretKey = "api-key"
    """Key of the API key in that Secret."""


class SendingRecord(ApiModel):
    """One record the provider asks for (return-path/bounce CNAME, DKIM CNAME, verification TXT).
    Written by whoever runs the zone (or a DnsCutover); this resource only checks that every
    authoritative nameserver serves it."""

    name: HostName
    """Owner name."""
    type: RecordType = "CNAME"
    """Record type."""
    value: str = Field(min_length=1, max_length=2048)
    """Expected value."""


class RampStep(ApiModel):
    weight: int = Field(
        ge=1, le=100, description="percent of the application's mail sent by the new provider"
    )
    min_duration: Duration = Field(default="1h", description="least time at this step before the next")


class WarmupGates(ApiModel):
    """Thresholds anchored on what mailbox providers and ESPs enforce (complaints under 0.1 %, never 0.3 %;
    hard bounces under 2 %, 5 % a hard stop). Rates are over the events since the step began."""

    min_events: int = Field(default=500, ge=1, description="no judgement on fewer delivered+bounced events")
    complaint_rate_max: float = Field(
        default=0.001, ge=0, le=1, description="to advance; at or above: step back"
    )
    complaint_rate_hard_stop: float = Field(default=0.003, ge=0, le=1)
    """Complaint rate at which sending steps back at once."""
    bounce_rate_max: float = Field(default=0.02, ge=0, le=1, description="to advance; at or above: hold")
    bounce_rate_hard_stop: float = Field(default=0.05, ge=0, le=1)
    """Bounce rate at which sending steps back at once."""
    on_hard_stop: HardStopAction = Field(
        default="Zero", description="Zero: weight 0 and the old key back; StepBack: one step down"
    )


class PrometheusSource(ApiModel):
    address: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    """Prometheus base URL with the ESP event counters (must be allowed)."""


class RecordCheck(ApiModel):
    nameservers: Annotated[list[str], Field(max_length=16)] = Field(
        default=[], description="host[:port] of the authoritative servers (default: the zone's NS RRset)"
    )
    zone: HostName | None = Field(default=None, description="zone of the records (default: spec.domain)")


class SendingCutoverSpec(ApiModel):
    """The sending side of one domain: records checked, a ramp judged on ESP events, and the Secret the
    application reads its provider, key and weight from."""

    domain: str = Field(pattern=DOMAIN_PATTERN, max_length=253)
    """The sending domain."""
    stream: str = Field(default="default", pattern=STREAM_PATTERN, max_length=63)
    """Message stream (e.g. transactional), one cutover per stream."""
    provider: ProviderKey
    """The new ESP."""
    previous_provider: ProviderKey
    """The old ESP (the rollback target)."""
    records: Annotated[list[SendingRecord], Field(max_length=32)] = []
    """DNS records the new ESP needs (checked before the first step)."""
    record_check: RecordCheck = RecordCheck()
    """Where to check those records."""
    dns_cutover_ref: K8sName | None = Field(default=None, description="DnsCutover to wait for")
    required_dns_phase: DnsPhase = "Switched"
    """DnsCutover phase to wait for."""
    ramp: Annotated[list[RampStep], Field(min_length=1, max_length=20)]
    """Steps of the warm-up: share of mail sent through the new ESP, and the least time per step."""
    target_weight: int = Field(default=100, ge=0, le=100, description="lower it to roll back at once")
    paused: bool = False
    """Hold at the current step."""
    warmup: WarmupGates = WarmupGates()
    """Warm-up gates: complaint and bounce rates."""
    prometheus: PrometheusSource
    """Where the event counters are."""
    app_secret_name: K8sName = Field(description="the Secret the operator writes for the application")
    hard_stop_ack: int = Field(
        default=0,
        ge=0,
        description="raise it to resume the ramp after a hard stop (the value it had is recorded)",
    )

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.provider.secretName != self.appSecretName"
                    " && self.previousProvider.secretName != self.appSecretName",
                    "message": "appSecretName must not be a provider key Secret: the operator writes it",
                    "fieldPath": ".appSecretName",
                },
            ]
        }
    }


class EventCounts(ApiModel):
    """ESP events for the domain and stream (sums of the ingest counters)."""

    delivered: float = 0
    """Delivered events."""
    bounced: float = 0
    """Bounce events."""
    complained: float = 0
    """Complaint events."""


class Measurement(ApiModel):
    events: float = 0
    """Events in the measurement."""
    bounce_rate: float | None = None
    """Bounces per delivered+bounced."""
    complaint_rate: float | None = None
    """Complaints per delivered."""
    time: datetime | None = None
    """When measured."""


class SendingHistoryEntry(ApiModel):
    time: datetime
    """When."""
    decision: Decision
    """advance, hold, stepBack, hardStop or rollBack."""
    from_weight: int = Field(ge=0, le=100)
    """Share before."""
    to_weight: int = Field(ge=0, le=100)
    """Share after."""
    reason: str = Field(max_length=128)
    """Why, as one word."""
    message: str = Field(default="", max_length=1024)
    """Why, in words."""


class RecordResult(ApiModel):
    name: str = Field(max_length=253)
    """Owner name."""
    type: RecordType
    """Record type."""
    verified: bool = False
    """Served as expected."""
    message: str = Field(default="", max_length=1024)
    """What was found."""


class SendingCutoverStatus(ApiModel):
    """Where the ramp stands (written by the operator)."""

    phase: SendingPhase | None = None
    """The cutover's phase."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: Conditions = []
    """Ready and the cutover's own conditions."""
    step: int = Field(default=0, ge=0, description="0: not started; n: spec.ramp[n-1]")
    weight: int = Field(default=0, ge=0, le=100)
    """Share (percent) sent through the new ESP now."""
    step_started_at: datetime | None = None
    """When the current step started."""
    baseline: EventCounts | None = None
    """Event counters at the start of the step."""
    last_measurement: Measurement | None = None
    """The last rates measured."""
    hard_stopped_ack: int | None = Field(default=None, description="spec.hardStopAck when the hard stop came")
    records: Annotated[list[RecordResult], Field(max_length=32)] = []
    """Record checks."""
    app_secret_revision: int = Field(default=0, ge=0)
    """Revision of the Secret written for the application."""
    history: Annotated[list[SendingHistoryEntry], Field(max_length=20)] = []
    """The latest ramp decisions."""
    kopf: dict[str, Any] | None = kopf_status_field()


class SendingCutover(ApiModel):
    spec: SendingCutoverSpec
    status: SendingCutoverStatus = SendingCutoverStatus()


__all__ = ["DNS_PHASES", "SendingCutover", "SendingCutoverSpec", "SendingCutoverStatus"]
