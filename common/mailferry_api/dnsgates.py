"""What holds a DnsCutover phase: the gates of the spec and the built-in safety settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .common import (
    ApiModel,
    Duration,
    list_map,
)
from .dnstypes import BuiltinGate, GateType, HostName


class ThresholdRange(ApiModel):
    min: float | None = None
    """Lowest passing value."""
    max: float | None = None
    """Highest passing value."""


class SyncLagGate(ApiModel):
    max_seconds: int = Field(default=900, ge=0)
    """Largest MailMigration lag that passes."""
    max_pending_messages: int = Field(default=0, ge=0)
    """Most pending messages that pass."""


# host, host:port, [IPv6]:port or a bare IPv6 address
NameserverAddress = Annotated[
    str,
    Field(
        max_length=260,
        pattern=r"^\[[0-9a-fA-F:.]+\](:[0-9]{1,5})?$|^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?\.?(:[0-9]{1,5})?$"
        r"|^[0-9a-fA-F:.]+$",
    ),
]


class DnsRecordGate(ApiModel):
    name: HostName | None = Field(
        default=None, description="relative or absolute; default: every record of the phase"
    )
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS"] | None = None
    """Record type to check; default: every type of the phase."""
    value: str | None = Field(default=None, max_length=4096)
    """Expected value; default: what the phase wrote."""
    nameservers: Annotated[list[NameserverAddress], Field(max_length=16)] = Field(
        default=[], description="host:port to query; default: the zone's NS found via SOA/NS"
    )


class PrometheusGate(ApiModel):
    address: str = Field(pattern=r"^https?://", max_length=2048)
    """Prometheus base URL (must be allowed by the installation)."""
    query: str = Field(min_length=1, max_length=8192)
    """PromQL query returning one value."""
    threshold_range: ThresholdRange
    """Passing range of the value."""
    interval: Duration = "1m"
    """Time between measurements."""
    count: int = Field(default=1, ge=1, le=1000)
    """Measurements to take."""
    failure_limit: int = Field(default=0, ge=0)
    """Failed measurements tolerated."""
    consecutive_success_limit: int = Field(default=1, ge=1)
    """Passing measurements in a row needed."""
    on_no_data: Literal["pass", "fail", "inconclusive"] = "inconclusive"
    """Result when the query returns nothing: pass, fail or inconclusive."""


class Gate(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Gate name, unique in its phase."""
    type: GateType
    """syncLag, dnsRecord, ttlElapsed, prometheus, minDuration or manualApproval."""
    sync_lag: SyncLagGate | None = None
    """Settings for syncLag."""
    dns_record: DnsRecordGate | None = None
    """Settings for dnsRecord."""
    prometheus: PrometheusGate | None = None
    """Settings for prometheus."""
    duration: Duration | None = None
    """Time for minDuration."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'prometheus' || has(self.prometheus)",
                    "message": "prometheus is required for a prometheus gate",
                    "fieldPath": ".prometheus",
                },
                {
                    "rule": "self.type != 'minDuration' || has(self.duration)",
                    "message": "duration is required for a minDuration gate",
                    "fieldPath": ".duration",
                },
            ]
        }
    }


GateList = Annotated[list[Gate], Field(max_length=16, json_schema_extra=list_map("name"))]


class PhaseGates(ApiModel):
    """Gates that must hold before entering each phase."""

    ttl_lowered: GateList = []
    """Gates before entering TTLLowered."""
    staged: GateList = []
    """Gates before entering Staged."""
    switched: GateList = []
    """Gates before entering Switched (the MX swap)."""
    enforced: GateList = []
    """Gates before entering Enforced."""


class BuiltinGateSkip(ApiModel):
    """Turning a built-in gate off is a decision someone takes on purpose: it names who and why, and
    status.gates shows the gate as Skipped with both."""

    gate: BuiltinGate
    """The built-in gate turned off."""
    reason: str = Field(min_length=3, max_length=512)
    """Why."""
    by: str = Field(min_length=1, max_length=128, description="who decided (a person or a team)")


class MinDwell(ApiModel):
    """The least time the cutover stays in a phase before the next step (production defaults)."""

    ttl_lowered: Duration = Field(default="0s", description="the oldTtl gate guards the switch")
    staged: Duration = Field(default="24h", description="DMARC p=none reports and DKIM before the MX swap")
    switched: Duration = Field(default="24h", description="mail flows to the new MX before enforcing")
    enforced: Duration = Field(default="24h", description="between two DMARC stages")


class Safety(ApiModel):
    """The built-in gates and the final-sync drain (DESIGN.md "Cutover safety")."""

    skip: Annotated[list[BuiltinGateSkip], Field(max_length=5, json_schema_extra=list_map("gate"))] = []
    """Built-in gates turned off, each with who and why."""
    min_dwell: MinDwell = MinDwell()
    """Least time per phase."""
    sync_lag: SyncLagGate = Field(
        default=SyncLagGate(), description="migrationInSync: the MailMigration's lag limit before Switched"
    )
    drain_minimum: Duration = Field(
        default="1h", description="drainUntil = switchedAt + max(2 x the MX TTL at the switch, this)"
    )
    drift: Literal["report", "revert"] = Field(
        default="report", description="a managed record changed by someone else: report it, or write it back"
    )
    nameservers: Annotated[list[NameserverAddress], Field(max_length=16)] = Field(
        default=[], description="host[:port] to verify on; default: every IP of every NS of the zone"
    )
    nameserver_port: int = Field(default=53, ge=1, le=65535, description="port of the NS found in the zone")
