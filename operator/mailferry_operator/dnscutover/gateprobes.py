"""What the spec's gates of the next step observe (reads only): the nameservers a dnsRecord gate names
(or the zone's), the MTA-STS policy as served, Prometheus, the MailMigration's lag."""

from __future__ import annotations

from mailferry_api.conditions import now
from mailferry_api.dnscutover import DnsPhase, Gate

from ..dns import phases as ph
from ..dns.rrset import fqdn, split_txt
from ..gates import evaluate as ev
from ..gates import probes
from ..mtasts import policy as mtasts
from . import snapshot as sn
from . import verify
from .snapshot import SpecProblem


def _as_record(rtype: str, value: str) -> str:
    if rtype == "TXT" and not value.startswith('"'):
        return split_txt(value)
    return value


def _expectations(snap: sn.Snapshot, gate: Gate, inp: ph.Inputs) -> list[probes.Expectation]:
    want = ph.desired(inp, snap.phase, snap.stage)
    cfg = gate.dns_record
    if cfg is None or cfg.name is None:
        return [probes.Expectation.of(r) for r in want.values()]
    name = fqdn(cfg.name, snap.spec.domain)
    rtype = (cfg.type or "TXT").upper()
    if cfg.value is not None:
        return [
            probes.Expectation(
                name, rtype, {probes.comparable(rtype, _as_record(rtype, cfg.value))}, any_of=True
            )
        ]
    rr = want.get((name, rtype))
    if rr is None:
        raise SpecProblem(
            "InvalidGate",
            f"gate {gate.name}: {name} {rtype} is not a record mailferry manages; give dnsRecord.value",
        )
    return [probes.Expectation.of(rr)]


async def _dns_record(snap: sn.Snapshot, gate: Gate, inp: ph.Inputs) -> ev.DnsObservation:
    cfg = gate.dns_record
    spec = snap.spec
    zone = fqdn(spec.provider.zone or spec.domain)
    try:
        servers = await probes.resolve_nameservers(cfg.nameservers if cfg else [], zone)
    except Exception as exc:  # resolver failures of many kinds
        which = ", ".join(cfg.nameservers) if cfg and cfg.nameservers else f"of zone {zone}"
        return ev.DnsObservation(error=f"finding nameservers ({which}): {type(exc).__name__} {exc}"[:300])
    obs = await probes.probe_dns(_expectations(snap, gate, inp), servers)
    mcfg = spec.records.mta_sts
    policy = ph.mta_sts_policy(inp, snap.phase, snap.stage)
    if (cfg is None or cfg.name is None) and mcfg is not None and mcfg.enabled and policy is not None:
        url = mcfg.policy_url or mtasts.url(spec.domain)
        text, err = await probes.fetch_policy(url)
        problems = probes.compare_policy(policy, text)
        if err:
            problems = [f"{problems[0]} ({err})"]
        obs.problems.setdefault(url, []).extend(problems)
    return obs


async def observe_gate(namespace: str, snap: sn.Snapshot, gate: Gate, nxt: DnsPhase) -> sn.GateObservation:
    if gate.type == "syncLag" and snap.spec.migration_ref is not None:
        found = await verify.migration(namespace, snap.spec.migration_ref.name)
        return found.lag if found.found and found.lag is not None else ev.LagObservation(found=False)
    if gate.type == "prometheus":
        previous = next((g for g in snap.status.gates if g.name == gate.name and g.phase == nxt), None)
        if (
            previous is not None
            and previous.type == gate.type
            and not ev.prometheus_due(gate, previous, now())
        ):
            return None
        assert gate.prometheus is not None
        return await probes.probe_prometheus(gate.prometheus.address, gate.prometheus.query)
    if gate.type == "dnsRecord":
        return await _dns_record(snap, gate, sn.inputs(snap))
    return None  # the others need nothing but the status and the clock
