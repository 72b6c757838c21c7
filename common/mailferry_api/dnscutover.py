"""DnsCutover: the DNS side of one domain, moved in gated phases."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, JsonValue

from .common import (
    DOMAIN_PATTERN,
    ApiModel,
    Conditions,
    Duration,
    ErrorInfo,
    K8sName,
    LocalObjectRef,
    SecretKey,
    SecretRef,
    kopf_status_field,
    list_map,
)

DNS_PHASES = ("Planned", "TTLLowered", "Staged", "Switched", "Enforced")
DnsPhase = Literal["Planned", "TTLLowered", "Staged", "Switched", "Enforced"]
DNS_CONDITIONS = ("Ready", "Reconciling", "GatesPassed", "Paused", "Stalled", "RolledBack")
ProviderType = Literal["rfc2136", "powerdns", "cloudflare", "route53"]
GateType = Literal["syncLag", "dnsRecord", "ttlElapsed", "prometheus", "minDuration", "manualApproval"]
GateResult = Literal["Pending", "Passed", "Failed", "Inconclusive"]
DmarcPolicy = Literal["none", "quarantine", "reject"]
# DNS owner names and targets: underscores are legal in DNS (`_dmarc`, `_domainkey`, `_mta-sts`).
HostName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9*_]([-A-Za-z0-9._]*[A-Za-z0-9])?\.?$")
]


class Rfc2136Provider(ApiModel):
    server: str = Field(min_length=1, max_length=253)
    port: int = Field(default=53, ge=1, le=65535)
    tsig_key_name: str | None = Field(
        default=None, max_length=253, pattern=r"^[A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9_])?\.?$"
    )
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha512", "hmac-sha1", "hmac-md5"] = "hmac-sha256"
    tsig_secret_key: SecretKey = "tsig-secret"


class PowerDnsProvider(ApiModel):
    api_url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    server_id: str = Field(default="localhost", max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    api_key_key: SecretKey = "api-key"


class CloudflareProvider(ApiModel):
    zone_id: str | None = Field(default=None, max_length=64)
    api_url: str = Field(default="https://api.cloudflare.com/client/v4", pattern=r"^https?://")
    api_token_key: SecretKey = "api-token"


class Route53Provider(ApiModel):
    hosted_zone_id: str = Field(min_length=1, max_length=64)
    region: str = Field(default="us-east-1", max_length=32)
    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    access_key_id_key: SecretKey = "aws-access-key-id"
    secret_access_key_key: SecretKey = "aws-secret-access-key"


_PROVIDER_RULES: list[JsonValue] = [
    {
        "rule": f"self.type != '{t}' || has(self.{t})",
        "message": f"provider.{t} is required when type is {t}",
        "fieldPath": f".{t}",
    }
    for t in ("rfc2136", "powerdns", "route53")
]
_PROVIDER_RULES.append(
    {
        "rule": "self.type == 'rfc2136' || has(self.secretRef)",
        "message": "provider.secretRef is required for this provider type",
        "fieldPath": ".secretRef",
    }
)


class DnsProvider(ApiModel):
    type: ProviderType
    secret_ref: SecretRef | None = None
    zone: HostName | None = Field(default=None, description="zone apex; defaults to spec.domain")
    rfc2136: Rfc2136Provider | None = None
    powerdns: PowerDnsProvider | None = None
    cloudflare: CloudflareProvider | None = None
    route53: Route53Provider | None = None

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _PROVIDER_RULES})


class MxRecord(ApiModel):
    host: HostName
    priority: int = Field(ge=0, le=65535)


class SpfTarget(ApiModel):
    include: Annotated[list[HostName], Field(max_length=10)] = []
    remove_include: Annotated[list[HostName], Field(max_length=10)] = []
    all: Literal["-all", "~all", "?all"] = "~all"

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
    source: Literal["generate", "cname", "txt"] = "generate"
    algorithm: Literal["rsa", "ed25519"] = "rsa"
    cname_target: HostName | None = None
    public_key: str | None = Field(default=None, max_length=4096)

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
    keep_selectors: Annotated[list[str], Field(max_length=16)] = []


class DmarcStage(ApiModel):
    policy: DmarcPolicy
    testing: bool = False
    pct: int | None = Field(default=None, ge=0, le=100, description="legacy; RFC 9989 drops pct")


# A report address (mailto: is added when missing) or URL: one URI, so no ',' ';' or spaces, which would
# end the tag and let the rest be read as other tags of the record.
ReportUri = Annotated[str, Field(min_length=3, max_length=512, pattern=r"^[^\s,;]+$")]


class Dmarc(ApiModel):
    rua: Annotated[list[ReportUri], Field(max_length=8)] = []
    stages: Annotated[list[DmarcStage], Field(min_length=1, max_length=8)] = [
        DmarcStage(policy="quarantine", testing=True),
        DmarcStage(policy="quarantine"),
        DmarcStage(policy="reject"),
    ]

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
    max_age_seconds: int = Field(default=86400, ge=3600, le=31557600)
    enforced_max_age_seconds: int = Field(default=604800, ge=86400, le=31557600)
    # RFC 8461 mx patterns: a host name or "*." + one; a line break would inject policy lines
    mx: Annotated[
        list[
            Annotated[
                str, Field(max_length=253, pattern=r"^(\*\.)?[A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9])?\.?$")
            ]
        ],
        Field(max_length=16),
    ] = []
    policy_config_map: K8sName | None = None
    policy_url: str | None = Field(
        default=None, pattern=r"^https?://", description="override for the gate's fetch"
    )


class TlsRpt(ApiModel):
    rua: Annotated[list[ReportUri], Field(min_length=1, max_length=8)]


class TargetRecords(ApiModel):
    mx: Annotated[list[MxRecord], Field(min_length=1, max_length=16, json_schema_extra=list_map("host"))]
    spf: SpfTarget = SpfTarget()
    dkim: Dkim | None = None
    dmarc: Dmarc = Dmarc()
    mta_sts: MtaSts | None = None
    tls_rpt: TlsRpt | None = None


class Ttls(ApiModel):
    lowered: int = Field(default=300, ge=30, le=86400)
    normal: int = Field(default=3600, ge=60, le=604800)

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


class ThresholdRange(ApiModel):
    min: float | None = None
    max: float | None = None


class SyncLagGate(ApiModel):
    max_seconds: int = Field(default=900, ge=0)
    max_pending_messages: int = Field(default=0, ge=0)


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
    value: str | None = Field(default=None, max_length=4096)
    nameservers: Annotated[list[NameserverAddress], Field(max_length=16)] = Field(
        default=[], description="host:port to query; default: the zone's NS found via SOA/NS"
    )


class PrometheusGate(ApiModel):
    address: str = Field(pattern=r"^https?://", max_length=2048)
    query: str = Field(min_length=1, max_length=8192)
    threshold_range: ThresholdRange
    interval: Duration = "1m"
    count: int = Field(default=1, ge=1, le=1000)
    failure_limit: int = Field(default=0, ge=0)
    consecutive_success_limit: int = Field(default=1, ge=1)
    on_no_data: Literal["pass", "fail", "inconclusive"] = "inconclusive"


class Gate(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    type: GateType
    sync_lag: SyncLagGate | None = None
    dns_record: DnsRecordGate | None = None
    prometheus: PrometheusGate | None = None
    duration: Duration | None = None

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
    staged: GateList = []
    switched: GateList = []
    enforced: GateList = []


class DnsCutoverSpec(ApiModel):
    domain: str = Field(
        min_length=3,
        max_length=253,
        pattern=DOMAIN_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "domain is immutable"}]
        },
    )
    provider: DnsProvider
    migration_ref: LocalObjectRef | None = None
    target_phase: DnsPhase = "Planned"
    dry_run: bool = False
    approved_phase: DnsPhase | None = Field(
        default=None, description="manualApproval gates pass up to this phase"
    )
    records: TargetRecords
    ttl: Ttls = Ttls()
    gates: PhaseGates = PhaseGates()


class Measurement(ApiModel):
    time: datetime
    value: str = Field(max_length=512)


class GateStatus(ApiModel):
    phase: DnsPhase
    name: str = Field(max_length=63)
    type: GateType
    result: GateResult = "Pending"
    message: str = Field(default="", max_length=2048)
    successes: int = 0
    failures: int = 0
    consecutive_successes: int = 0
    measurements: Annotated[list[Measurement], Field(max_length=10)] = []
    last_evaluated: datetime | None = None


class RRset(ApiModel):
    name: str = Field(max_length=253)
    type: str = Field(max_length=16)
    ttl: int = Field(default=0, ge=0)
    records: Annotated[list[str], Field(max_length=64)] = []


class RecordChange(ApiModel):
    action: Literal["create", "replace", "delete"]
    name: str = Field(max_length=253)
    type: str = Field(max_length=16)
    before: RRset | None = None
    after: RRset | None = None


class Plan(ApiModel):
    from_phase: DnsPhase
    to_phase: DnsPhase
    changes: Annotated[list[RecordChange], Field(max_length=64)] = []
    computed_at: datetime | None = None


class Snapshot(ApiModel):
    """The RRsets as they were before the operator entered `phase`. Absent ones have no records."""

    phase: DnsPhase
    taken_at: datetime
    rrsets: Annotated[list[RRset], Field(max_length=64)] = []


class DkimKeyStatus(ApiModel):
    selector: str = Field(max_length=63)
    algorithm: Literal["rsa", "ed25519"]
    secret_name: K8sName | None = None
    public_key_sha256: str | None = Field(default=None, max_length=64)


class MtaStsStatus(ApiModel):
    id: str = Field(max_length=32)
    mode: Literal["none", "testing", "enforce"]
    policy_sha256: str = Field(max_length=64)


class DnsHistoryEntry(ApiModel):
    time: datetime
    from_phase: DnsPhase
    to_phase: DnsPhase
    reason: str = Field(max_length=128)
    message: str = Field(default="", max_length=1024)


class DnsCutoverStatus(ApiModel):
    phase: DnsPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions = []
    phase_entered_at: datetime | None = None
    ttl_lowered_at: datetime | None = None
    switched_at: datetime | None = None
    dmarc_stage: int | None = Field(default=None, ge=0)
    gates: Annotated[list[GateStatus], Field(max_length=64)] = []
    plan: Plan | None = None
    snapshots: Annotated[list[Snapshot], Field(max_length=8)] = []
    dkim: Annotated[list[DkimKeyStatus], Field(max_length=8)] = []
    mta_sts: MtaStsStatus | None = None
    history: Annotated[list[DnsHistoryEntry], Field(max_length=20)] = []
    last_error: ErrorInfo | None = None
    kopf: dict[str, Any] | None = kopf_status_field()


class DnsCutover(ApiModel):
    spec: DnsCutoverSpec
    status: DnsCutoverStatus = DnsCutoverStatus()
