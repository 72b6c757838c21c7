"""What a SendingCutover decision needs from the world: event totals from Prometheus, the sending records
on every authoritative nameserver (the DnsCutover's probes), the DnsCutover's phase, the provider keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mailferry_api.dnscutover import DNS_PHASES
from mailferry_api.sendingcutover import EventCounts, RecordResult, SendingCutoverSpec

from ..gates import probes
from ..kube import client as kube
from .decide import Observation

EVENTS_METRIC = "mailferry_esp_events_total"
K8S_TIMEOUT = 30


def counts_query(spec: SendingCutoverSpec, kind: str) -> str:
    """Totals over every replica of the ESP endpoint and every provider posting for the domain+stream."""
    return f'sum({EVENTS_METRIC}{{domain="{spec.domain}",stream="{spec.stream}",type="{kind}"}})'


async def event_counts(spec: SendingCutoverSpec) -> tuple[EventCounts | None, str]:
    kinds = ("delivered", "bounced", "complained")
    answers = await asyncio.gather(
        *(probes.probe_prometheus(spec.prometheus.address, counts_query(spec, k)) for k in kinds)
    )
    for answer in answers:
        if answer.refused or answer.error:
            return None, answer.refused or answer.error or ""
    # no series yet (nothing posted for this domain and stream) is zero events, not missing data
    totals = [sum(a.values or ()) for a in answers]
    return EventCounts(delivered=totals[0], bounced=totals[1], complained=totals[2]), ""


def absolute(name: str, zone: str) -> str:
    """A record name as written in spec.records (relative to the zone, or ending in a dot)."""
    if name.endswith("."):
        return name
    if name == zone or name.endswith("." + zone):
        return name + "."
    return f"{name}.{zone}."


async def records(spec: SendingCutoverSpec) -> list[RecordResult]:
    """Each record served exactly by every authoritative nameserver (CNAMEs compared as CNAMEs)."""
    if not spec.records:
        return []
    zone = spec.record_check.zone or spec.domain
    try:
        servers = await probes.resolve_nameservers(spec.record_check.nameservers, zone)
    except Exception as exc:
        return [
            RecordResult(
                name=r.name, type=r.type, verified=False, message=f"nameservers: {type(exc).__name__}"
            )
            for r in spec.records
        ]
    results = []
    for r in spec.records:
        name = absolute(r.name, zone.rstrip("."))
        exp = probes.Expectation(name, r.type, {probes.comparable(r.type, r.value)}, any_of=r.type != "CNAME")
        obs = await probes.probe_dns([exp], servers)
        trouble = [f"{ns}: {why}" for ns, why in obs.unreachable.items()]
        trouble += [f"{ns}: {'; '.join(p)}" for ns, p in obs.problems.items() if p]
        if obs.error:
            trouble.append(obs.error)
        results.append(
            RecordResult(name=r.name, type=r.type, verified=not trouble, message="; ".join(trouble)[:1024])
        )
    return results


async def dns_phase(namespace: str, spec: SendingCutoverSpec) -> tuple[bool, str]:
    if spec.dns_cutover_ref is None:
        return True, ""
    dc = await kube.get_or_none(
        f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/dnscutovers/{spec.dns_cutover_ref}", K8S_TIMEOUT
    )
    if dc is None:
        return False, f"DnsCutover {spec.dns_cutover_ref} (spec.dnsCutoverRef) does not exist"
    phase = (dc.get("status") or {}).get("phase") or "Planned"
    index = DNS_PHASES.index(phase) if phase in DNS_PHASES else -1
    if index < DNS_PHASES.index(spec.required_dns_phase):
        return (
            False,
            f"DnsCutover {spec.dns_cutover_ref} is {phase}, the ramp waits for {spec.required_dns_phase}",
        )
    return True, ""


@dataclass(frozen=True)
class Keys:
    new: str | None
    old: str | None
    problem: str = ""


async def provider_keys(namespace: str, spec: SendingCutoverSpec) -> Keys:
    found: list[str | None] = []
    problems = []
    for field, ref in (("provider", spec.provider), ("previousProvider", spec.previous_provider)):
        secret = await kube.read_secret_values(namespace, ref.secret_name)
        value = None if secret is None else secret.values.get(ref.secret_key)
        if secret is not None and secret.refused is not None:
            problems.append(f"spec.{field}: {secret.refused.message}")
        elif value is None:
            problems.append(f"spec.{field}: Secret {ref.secret_name} has no key {ref.secret_key}")
        found.append(value)
    return Keys(found[0], found[1], "; ".join(problems))


async def observe(namespace: str, spec: SendingCutoverSpec) -> tuple[Observation, list[RecordResult]]:
    (counts, error), checked, (phase_ok, phase_message) = await asyncio.gather(
        event_counts(spec), records(spec), dns_phase(namespace, spec)
    )
    bad = [f"{r.name} {r.type}: {r.message}" for r in checked if not r.verified]
    obs = Observation(
        counts=counts,
        metrics_error=error,
        records_ok=not bad,
        records_message="; ".join(bad)[:1024],
        dns_phase_ok=phase_ok,
        dns_phase_message=phase_message,
    )
    return obs, checked
