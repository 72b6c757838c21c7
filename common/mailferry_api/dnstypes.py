"""The small DnsCutover vocabulary (phases, conditions, gate names, host names) shared by its models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

DNS_PHASES = ("Planned", "TTLLowered", "Staged", "Switched", "Enforced")
DnsPhase = Literal["Planned", "TTLLowered", "Staged", "Switched", "Enforced"]
DNS_CONDITIONS = ("Ready", "Reconciling", "GatesPassed", "Paused", "Stalled", "RolledBack", "Drifted")
ProviderType = Literal["rfc2136", "powerdns", "cloudflare", "route53"]
GateType = Literal["syncLag", "dnsRecord", "ttlElapsed", "prometheus", "minDuration", "manualApproval"]
GateResult = Literal["Pending", "Passed", "Failed", "Inconclusive", "Skipped"]
# The gates every DnsCutover has, spec or not (DESIGN.md "Cutover safety"); off only by spec.safety.skip.
BuiltinGate = Literal["minDwell", "recordsServed", "oldTtl", "migrationInSync", "dkimVerified"]
DmarcPolicy = Literal["none", "quarantine", "reject"]
# DNS owner names and targets: underscores are legal in DNS (`_dmarc`, `_domainkey`, `_mta-sts`).
HostName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9*_]([-A-Za-z0-9._]*[A-Za-z0-9])?\.?$")
]
