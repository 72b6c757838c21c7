"""What the built-in gates observe (reads only): every IP of every authoritative nameserver of the zone
(from the NS RRset the provider holds, glue from the zone itself), the records asked of each directly
(AA flag checked by gates/probes.py), the zone's SOA negative-caching time, the referenced MailMigration.
"""

from __future__ import annotations

from typing import Any

import dns.asyncresolver
import dns.exception

from mailferry_api.dnscutover import DnsCutoverSpec, DnsPhase, RRset

from ..dns import phases as ph
from ..dns import spec_checks as dns_checks
from ..dns.providers.base import DnsProvider
from ..dns.rrset import parse_record
from ..gates import evaluate as ev
from ..gates import probes
from ..kube import client as kube
from . import snapshot as sn

Servers = list[tuple[str, int]]


async def authoritative(provider: DnsProvider, spec: DnsCutoverSpec) -> Servers:
    """spec.safety.nameservers when given; else every A/AAAA of every name in the zone's NS RRset."""
    zone = provider.zone
    if spec.safety.nameservers:
        return await probes.resolve_nameservers(spec.safety.nameservers, zone)
    ns = await provider.get(zone, "NS")
    if ns is None or not ns.records:
        raise LookupError(f"zone {zone} has no NS RRset at the provider")
    servers: Servers = []
    for record in ns.records:
        host = parse_record("NS", record).target.to_text().lower()  # type: ignore[attr-defined]
        for ip in await _addresses(provider, host):
            servers.append((ip, spec.safety.nameserver_port))
    if not servers:
        raise LookupError(f"no address found for the nameservers of {zone}: {', '.join(ns.records)}")
    return sorted(set(servers))


async def _addresses(provider: DnsProvider, host: str) -> list[str]:
    """Every address of `host`: from the zone itself when it lies inside (glue), else a resolver."""
    out: list[str] = []
    for rtype in ("A", "AAAA"):
        if dns_checks.in_zone(host, provider.zone):
            found = await provider.get(host, rtype)
            out += list(found.records) if found else []
            continue
        try:
            answer = await dns.asyncresolver.resolve(host, rtype, lifetime=5)
            out += [str(r) for r in answer]
        except dns.exception.DNSException:
            continue
    return out


async def _probe(servers: Servers | str, rrsets: list[RRset]) -> ev.DnsObservation:
    if isinstance(servers, str):
        return ev.DnsObservation(error=servers)
    return await probes.probe_dns([probes.Expectation.of(r) for r in rrsets], servers)


async def soa_negative_ttl(provider: DnsProvider) -> int | None:
    """min(SOA TTL, SOA MINIMUM) (RFC 2308 §5): how long a resolver caches "this name does not exist"."""
    soa = await provider.get(provider.zone, "SOA")
    if soa is None or not soa.records:
        return None
    return min(soa.ttl, int(parse_record("SOA", soa.records[0]).minimum))  # type: ignore[attr-defined]


async def migration(namespace: str, name: str) -> sn.MigrationView:
    try:
        obj = await kube.get_or_none(
            f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/mailmigrations/{name}"
        )
    except kube.KubeError as exc:
        error = f"reading MailMigration {name}: HTTP {exc.status}"
        return sn.MigrationView(found=True, lag=ev.LagObservation(found=True, error=error))
    if obj is None:
        return sn.MigrationView(found=False)
    status: dict[str, Any] = obj.get("status") or {}
    in_sync = status.get("phase") in ("InSync", "Completing", "Completed") or any(
        c.get("type") == "InSync" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    lag = status.get("lag") or {}
    if "maxSeconds" not in lag:
        view = ev.LagObservation(found=True)
    else:
        pending = int(lag.get("pendingMessages", 0) or 0)
        view = ev.LagObservation(
            found=True,
            max_seconds=int(lag["maxSeconds"]),
            pending_messages=pending,
            mode=str(lag.get("mode") or "rounds"),  # follow mode: the followers' lag (docs/follow.md)
        )
    return sn.MigrationView(found=True, phase=status.get("phase"), in_sync=in_sync, lag=view)


async def observe_builtin(provider: DnsProvider, snap: sn.Snapshot, nxt: DnsPhase | None) -> None:
    """Fill the snapshot's built-in observations the next step needs (nothing for a skipped gate)."""
    spec = snap.spec
    wanted = [g for g in (sn.builtin_gates(spec, nxt) if nxt else []) if not sn.skipped(spec, g)]
    mx_pending = (
        snap.status.switched_at is None
        and ph.phase_index(snap.phase) >= ph.phase_index("Switched")
        and not sn.skipped(spec, "recordsServed")
    )
    if not wanted and not mx_pending:
        return
    servers: Servers | str
    try:
        servers = await authoritative(provider, spec)
    except Exception as exc:  # resolver and provider failures of many kinds
        servers = f"finding the authoritative nameservers: {type(exc).__name__} {exc}"[:300]
    inp = sn.inputs(snap)
    if "recordsServed" in wanted:
        snap.served = await _probe(servers, sn.written(inp, snap.phase, snap.stage))
    if "dkimVerified" in wanted:
        dkim = [r for (name, _), r in ph.desired(inp, "Staged").items() if "._domainkey." in name]
        snap.dkim_served = await _probe(servers, dkim)
    if "oldTtl" in wanted and sn.created_names(inp, snap.phase, snap.stage):
        snap.soa_negative_ttl = await soa_negative_ttl(provider)
    if "migrationInSync" in wanted and spec.migration_ref is not None:
        snap.migration = await migration(snap.namespace, spec.migration_ref.name)
    if mx_pending:
        mx = ph.desired(inp, snap.phase, snap.stage)[(inp.names.apex, "MX")]
        snap.mx_served = await _probe(servers, [mx])
