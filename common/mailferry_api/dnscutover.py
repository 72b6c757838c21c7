"""DnsCutover: the DNS side of one domain, moved in gated phases."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .common import (
    DOMAIN_PATTERN,
    ApiModel,
    Conditions,
    ErrorInfo,
    K8sName,
    LocalObjectRef,
    kopf_status_field,
    list_map,
)
from .dnsgates import (
    BuiltinGateSkip,
    DnsRecordGate,
    Gate,
    MinDwell,
    PhaseGates,
    PrometheusGate,
    Safety,
    SyncLagGate,
    ThresholdRange,
)
from .dnsproviders import CloudflareProvider, DnsProvider, PowerDnsProvider, Rfc2136Provider, Route53Provider
from .dnstypes import (
    DNS_CONDITIONS,
    DNS_PHASES,
    BuiltinGate,
    DmarcPolicy,
    DnsPhase,
    GateResult,
    GateType,
    HostName,
    ProviderType,
)

__all__ = [
    "DNS_CONDITIONS",
    "DNS_PHASES",
    "BuiltinGate",
    "BuiltinGateSkip",
    "CloudflareProvider",
    "DmarcPolicy",
    "DnsPhase",
    "DnsProvider",
    "DnsRecordGate",
    "Gate",
    "GateResult",
    "GateType",
    "HostName",
    "MinDwell",
    "PhaseGates",
    "PowerDnsProvider",
    "PrometheusGate",
    "ProviderType",
    "Rfc2136Provider",
    "Route53Provider",
    "Safety",
    "SyncLagGate",
    "ThresholdRange",
]


class MxRecord(ApiModel):
    host: HostName
    """Mail exchanger host name."""
    priority: int = Field(ge=0, le=65535)
    """MX preference (lower is preferred)."""


class SpfTarget(ApiModel):
    include: Annotated[list[HostName], Field(max_length=10)] = []
    """include: mechanisms to add (the new provider's)."""
    remove_include: Annotated[list[HostName], Field(max_length=10)] = []
    """include: mechanisms to remove at Enforced (the old provider's)."""
    all: Literal["-all", "~all", "?all"] = "~all"
    """The all qualifier of the merged record."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.include) || !has(self.removeInclude) || "
                    "self.include.all(h, !(h in self.removeInclude))",
                    "message": "a host cannot be in both include and removeInclude",
                    "fieldPath": ".removeInclude",
                }
            ]
        }
    }


class DkimSelector(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")
    """Selector (the <name>._domainkey label)."""
    source: Literal["generate", "cname", "txt"] = "generate"
    """generate (the operator makes the key, RSA-2048), cname (to the provider) or txt (a given key)."""
    algorithm: Literal["rsa", "ed25519"] = "rsa"
    """rsa, or ed25519 only as a second signature beside RSA."""
    cname_target: HostName | None = None
    """CNAME target (source cname)."""
    public_key: str | None = Field(default=None, max_length=4096)
    """Base64 public key (source txt)."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.source != 'cname' || has(self.cnameTarget)",
                    "message": "cnameTarget is required for source cname",
                    "fieldPath": ".cnameTarget",
                },
                {
                    "rule": "self.source != 'txt' || has(self.publicKey)",
                    "message": "publicKey is required for source txt",
                    "fieldPath": ".publicKey",
                },
            ]
        }
    }


class Dkim(ApiModel):
    selectors: Annotated[
        list[DkimSelector], Field(min_length=1, max_length=8, json_schema_extra=list_map("name"))
    ]
    """The new provider's selectors."""
    keep_selectors: Annotated[list[str], Field(max_length=16)] = []
    """Old selectors kept until the rollback window closes."""


class DmarcStage(ApiModel):
    policy: DmarcPolicy
    """none, quarantine or reject."""
    testing: bool = False
    """t=y: test mode (RFC 9989)."""
    pct: int | None = Field(default=None, ge=0, le=100, description="legacy; RFC 9989 drops pct")


# A report address (mailto: is added when missing) or URL: one URI, so no ',' ';' or spaces, which would
# end the tag and let the rest be read as other tags of the record.
ReportUri = Annotated[str, Field(min_length=3, max_length=512, pattern=r"^[^\s,;]+$")]


class Dmarc(ApiModel):
    rua: Annotated[list[ReportUri], Field(max_length=8)] = []
    """Aggregate report addresses (mailto: added when missing)."""
    stages: Annotated[list[DmarcStage], Field(min_length=1, max_length=8)] = [
        DmarcStage(policy="quarantine", testing=True),
        DmarcStage(policy="quarantine"),
        DmarcStage(policy="reject"),
    ]
    """Policies published in turn at Enforced, each stronger or equal."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "self.stages.map(s, s.policy == 'none' ? 0 : (s.policy == 'quarantine' ? 1 : 2))"
                        ".isSorted()"
                    ),
                    "message": "DMARC stages must not weaken: none, then quarantine, then reject",
                    "fieldPath": ".stages",
                }
            ]
        }
    }


class MtaSts(ApiModel):
    enabled: bool = True
    """Publish MTA-STS (policy testing at Staged, enforce at Enforced)."""
    max_age_seconds: int = Field(default=86400, ge=3600, le=31557600)
    """max_age during the migration (short, so a rollback takes effect)."""
    enforced_max_age_seconds: int = Field(default=604800, ge=86400, le=31557600)
    """max_age once enforced."""
    # RFC 8461 mx patterns: a host name or "*." + one; a line break would inject policy lines
    mx: Annotated[
        list[
            Annotated[
                str, Field(max_length=253, pattern=r"^(\*\.)?[A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9])?\.?$")
            ]
        ],
        Field(max_length=16),
    ] = []
    """Extra mx patterns for the policy (the MX hosts are added)."""
    policy_config_map: K8sName | None = None
    """ConfigMap the operator writes the policy file into (served by the chart's MTA-STS server)."""
    policy_url: str | None = Field(
        default=None, pattern=r"^https?://", description="override for the gate's fetch"
    )


class TlsRpt(ApiModel):
    rua: Annotated[list[ReportUri], Field(min_length=1, max_length=8)]
    """TLS report addresses (mailto: or https:)."""


class TargetRecords(ApiModel):
    mx: Annotated[list[MxRecord], Field(min_length=1, max_length=16, json_schema_extra=list_map("host"))]
    """The new MX records."""
    spf: SpfTarget = SpfTarget()
    """SPF changes."""
    dkim: Dkim | None = None
    """DKIM selectors to publish."""
    dmarc: Dmarc = Dmarc()
    """DMARC reports and stages."""
    mta_sts: MtaSts | None = None
    """MTA-STS policy."""
    tls_rpt: TlsRpt | None = None
    """TLS-RPT reporting."""


class Ttls(ApiModel):
    lowered: int = Field(default=300, ge=30, le=86400)
    """TTL (seconds) of the records while the cutover runs."""
    normal: int = Field(default=3600, ge=60, le=604800)
    """TTL (seconds) once done."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.lowered <= self.normal",
                    "message": "ttl.lowered must not exceed ttl.normal",
                    "fieldPath": ".lowered",
                }
            ]
        }
    )


class DnsCutoverSpec(ApiModel):
    """The domain's DNS cutover: provider, target records, the phase to move toward, gates."""

    domain: str = Field(
        min_length=3,
        max_length=253,
        pattern=DOMAIN_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "domain is immutable"}]
        },
    )
    """The domain whose mail moves; immutable."""
    provider: DnsProvider
    """The DNS provider to write to."""
    migration_ref: LocalObjectRef | None = None
    """The MailMigration whose lag gates the MX swap and whose final sync waits for it."""
    target_phase: DnsPhase = "Planned"
    """Planned, TTLLowered, Staged, Switched or Enforced; lower it to roll back."""
    dry_run: bool = False
    """Compute status.plan, write nothing."""
    approved_phase: DnsPhase | None = Field(
        default=None, description="manualApproval gates pass up to this phase"
    )
    records: TargetRecords
    """The records to publish."""
    ttl: Ttls = Ttls()
    """TTLs during and after the cutover."""
    gates: PhaseGates = PhaseGates()
    """Extra gates per phase, beside the built-in ones."""
    safety: Safety = Safety()
    """Built-in gates, minimum dwell, final-sync drain and drift handling."""


class Measurement(ApiModel):
    time: datetime
    """When measured."""
    value: str = Field(max_length=512)
    """The measured value."""


class GateStatus(ApiModel):
    phase: DnsPhase
    """The phase the gate guards."""
    name: str = Field(max_length=63)
    """Gate name."""
    type: GateType
    """Gate type."""
    result: GateResult = "Pending"
    """Pending, Passed, Failed, Inconclusive (or Skipped for a built-in gate turned off)."""
    message: str = Field(default="", max_length=2048)
    """The last evaluation, in words."""
    successes: int = 0
    """Passing evaluations."""
    failures: int = 0
    """Failing evaluations."""
    consecutive_successes: int = 0
    """Passing evaluations in a row."""
    measurements: Annotated[list[Measurement], Field(max_length=10)] = []
    """The latest measurements."""
    last_evaluated: datetime | None = None
    """When last evaluated."""
    builtin: bool = False
    """A built-in gate (on unless spec.safety.skip names it)."""
    first_evaluated: datetime | None = None
    """When first evaluated."""
    held_seconds: int | None = Field(default=None, description="how long the gate has held the step")


class RecordAttrs(ApiModel):
    """What a provider keeps beside one record's value and TTL (Cloudflare), when not its default: a
    record mailferry removed is re-created with them by a rollback. Records mailferry does not remove
    keep theirs untouched, whatever the snapshot says."""

    record: str = Field(max_length=4096)
    """The record value (presentation format) these belong to."""
    proxied: bool | None = None
    """Cloudflare: the record is proxied."""
    comment: str | None = Field(default=None, max_length=500)
    """Cloudflare: the record's comment."""
    tags: Annotated[list[Annotated[str, Field(max_length=255)]], Field(max_length=100)] = []
    """Cloudflare: the record's tags (name:value)."""
    settings: dict[str, bool] = {}
    """Cloudflare: the record's settings (e.g. flatten_cname, ipv4_only)."""
    auto_ttl: bool = False
    """Cloudflare: the record's TTL is "automatic" (ttl 1, served as 300 s; `ttl` says 300)."""


class RRset(ApiModel):
    name: str = Field(max_length=253)
    """Owner name."""
    type: str = Field(max_length=16)
    """Record type."""
    ttl: int = Field(default=0, ge=0)
    """TTL in seconds."""
    records: Annotated[list[str], Field(max_length=64)] = []
    """Record values."""
    record_ttls: Annotated[list[int], Field(max_length=64)] = []
    """One TTL per record, where the provider keeps them apart (Cloudflare) and they differ; empty: every
    record has `ttl`."""
    record_attrs: Annotated[list[RecordAttrs], Field(max_length=64)] = []
    """Per record, what the provider keeps beside its value (Cloudflare: proxied, comment, tags, settings,
    automatic TTL), where not the default; empty for the other providers."""


class RecordChange(ApiModel):
    action: Literal["create", "replace", "delete"]
    """create, replace or delete."""
    name: str = Field(max_length=253)
    """Owner name."""
    type: str = Field(max_length=16)
    """Record type."""
    before: RRset | None = None
    """The RRset now."""
    after: RRset | None = None
    """The RRset after the step."""


class Plan(ApiModel):
    from_phase: DnsPhase
    """Phase now."""
    to_phase: DnsPhase
    """Phase after the step."""
    changes: Annotated[list[RecordChange], Field(max_length=64)] = []
    """Record changes of the step (a dry-run diff)."""
    computed_at: datetime | None = None
    """When computed."""


class Snapshot(ApiModel):
    """The RRsets as they were before the operator entered `phase`. Absent ones have no records."""

    phase: DnsPhase
    """The phase entered after the snapshot."""
    taken_at: datetime
    """When taken."""
    rrsets: Annotated[list[RRset], Field(max_length=64)] = []
    """The RRsets as they were."""


class DkimKeyStatus(ApiModel):
    selector: str = Field(max_length=63)
    """Selector."""
    algorithm: Literal["rsa", "ed25519"]
    """rsa or ed25519."""
    secret_name: K8sName | None = None
    """Secret holding the generated private key."""
    public_key_sha256: str | None = Field(default=None, max_length=64)
    """SHA-256 of the published public key."""


class MtaStsStatus(ApiModel):
    id: str = Field(max_length=32)
    """Policy id published in _mta-sts."""
    mode: Literal["none", "testing", "enforce"]
    """none, testing or enforce."""
    policy_sha256: str = Field(max_length=64)
    """SHA-256 of the policy file."""
    longest_max_age_seconds: int = Field(default=0, description="the longest max_age ever published")
    enforce_cached_until: datetime | None = Field(
        default=None,
        description="a sender may hold a policy it fetched (testing or enforce: the last one served, for "
        "the longest max_age) until then: _mta-sts and a mode none policy stay until this instant, then "
        "_mta-sts is deleted (RFC 8461 8.3)",
    )


class DnsHistoryEntry(ApiModel):
    time: datetime
    """When."""
    from_phase: DnsPhase
    """Phase left."""
    to_phase: DnsPhase
    """Phase entered."""
    reason: str = Field(max_length=128)
    """Why, as one word."""
    message: str = Field(default="", max_length=1024)
    """Why, in words."""


class DnsCutoverStatus(ApiModel):
    """Where the cutover stands: phase, gate results, plan, snapshots (written by the operator)."""

    phase: DnsPhase | None = None
    """The phase the records are in now."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: Conditions = []
    """Ready, GatesPassed, Paused, Stalled and RolledBack."""
    phase_entered_at: datetime | None = None
    """When the current phase was entered."""
    ttl_lowered_at: datetime | None = None
    """When the TTLs were lowered."""
    switched_at: datetime | None = Field(
        default=None, description="when the MX swap was seen on every authoritative nameserver"
    )
    drain_until: datetime | None = Field(
        default=None,
        description="switchedAt + max(2 x the MX TTL at the switch, spec.safety.drainMinimum): a "
        "MailMigration naming this cutover runs its final delta round after it",
    )
    records_written: bool | None = Field(
        default=None, description="every record of the phase was written: a difference now is drift"
    )
    drifted: Annotated[list[str], Field(max_length=32)] = []
    """Managed records someone else changed."""
    dmarc_stage: int | None = Field(default=None, ge=0)
    """Index of the DMARC stage published."""
    gates: Annotated[list[GateStatus], Field(max_length=64)] = []
    """Gate results, with their last measurements."""
    plan: Plan | None = None
    """The next step's record changes."""
    snapshots: Annotated[list[Snapshot], Field(max_length=8)] = []
    """Records as they were before each phase (a rollback restores them)."""
    dkim: Annotated[list[DkimKeyStatus], Field(max_length=8)] = []
    """Generated DKIM keys."""
    mta_sts: MtaStsStatus | None = None
    """The MTA-STS policy published."""
    history: Annotated[list[DnsHistoryEntry], Field(max_length=20)] = []
    """The latest phase transitions."""
    last_error: ErrorInfo | None = None
    """The last error."""
    kopf: dict[str, Any] | None = kopf_status_field()


class DnsCutover(ApiModel):
    spec: DnsCutoverSpec
    status: DnsCutoverStatus = DnsCutoverStatus()
