"""The gates of the next step, evaluated from the snapshot (pure): gates/evaluate.py's rules fed with
what observe.py measured, each gate continuing from its previous status. The built-in gates come first
(DESIGN.md "Cutover safety"); one named in spec.safety.skip shows as Skipped with who and why."""

from __future__ import annotations

from datetime import datetime, timedelta

from mailferry_api.dnscutover import DnsCutoverStatus, DnsPhase, Gate, GateStatus, GateType

from ..dns import phases as ph
from ..gates import evaluate as ev
from . import snapshot as sn


def evaluate_gates(
    snap: sn.Snapshot, status: DnsCutoverStatus, target: DnsPhase, inp: ph.Inputs
) -> list[GateStatus]:
    """`status` is the step's draft (timestamps it just set count)."""
    previous = {g.name: g for g in status.gates if g.phase == target}
    results: list[GateStatus] = []
    for name in sn.builtin_gates(snap.spec, target):
        gate = _builtin_gate(name)
        before = previous.get(name) or ev.fresh(gate, target).model_copy(update={"builtin": True})
        results.append(_held(before, _builtin(snap, status, name, gate, before, inp), snap.now))
    for gate in sn.gates_for(snap.spec, target):
        found = previous.get(gate.name)
        st = (
            found
            if found is not None and found.type == gate.type and not found.builtin
            else ev.fresh(gate, target)
        )
        results.append(_held(st, _evaluate(snap, status, gate, st, target, inp), snap.now))
    return results


def _held(before: GateStatus, after: GateStatus, now: datetime) -> GateStatus:
    """How long the gate has held the step: from its first evaluation until it passed."""
    first = before.first_evaluated or now
    held = (
        before.held_seconds if before.result in ("Passed", "Skipped") else int((now - first).total_seconds())
    )
    return after.model_copy(update={"first_evaluated": first, "held_seconds": held})


_BUILTIN_TYPES: dict[str, GateType] = {
    "minDwell": "minDuration",
    "recordsServed": "dnsRecord",
    "oldTtl": "ttlElapsed",
    "dkimVerified": "dnsRecord",
    "migrationInSync": "syncLag",
}


def _builtin_gate(name: str) -> Gate:
    # built-in names are camelCase on purpose: a spec gate's name (lower-case, hyphens) never clashes
    return Gate.model_construct(name=name, type=_BUILTIN_TYPES[name])


def _builtin(
    snap: sn.Snapshot, status: DnsCutoverStatus, name: str, gate: Gate, st: GateStatus, inp: ph.Inputs
) -> GateStatus:
    t, spec, phase = snap.now, snap.spec, snap.phase
    skip = next((s for s in spec.safety.skip if s.gate == name), None)
    if skip is not None:
        return ev.skipped(st, f"skipped by {skip.by}: {skip.reason}", t)
    if name == "minDwell":
        dwell = spec.safety.min_dwell
        need = {"TTLLowered": dwell.ttl_lowered, "Staged": dwell.staged, "Switched": dwell.switched}.get(
            phase, dwell.enforced if phase == "Enforced" else "0s"
        )
        return ev.min_duration(gate.model_copy(update={"duration": need}), st, status.phase_entered_at, t)
    if name == "recordsServed":
        if not sn.written(inp, phase, snap.stage):
            return ev.passed(st, f"{phase} writes no record", t)
        return ev.dns_record(gate, st, snap.served or _not_asked(), t)
    if name == "dkimVerified":
        if spec.records.dkim is None:
            return ev.failed(
                st,
                "spec.records.dkim names no selector of the destination: mail signed by it would fail DKIM "
                "after the switch (add one, or skip dkimVerified in spec.safety.skip with a reason)",
                t,
            )
        return ev.dns_record(gate, st, snap.dkim_served or _not_asked(), t)
    if name == "oldTtl":
        return _old_ttl(snap, status, st, inp)
    return _migration_in_sync(snap, gate, st)


def _not_asked() -> ev.DnsObservation:
    return ev.DnsObservation(error="the authoritative nameservers were not asked")


def _old_ttl(snap: sn.Snapshot, status: DnsCutoverStatus, st: GateStatus, inp: ph.Inputs) -> GateStatus:
    """The old TTL since the lowering was seen everywhere; and, for names Staged created, the zone's
    negative-caching time (RFC 2308) since they were written."""
    waits: list[tuple[datetime | None, int]] = [(status.ttl_lowered_at, ph.old_ttl(inp))]
    if sn.created_names(inp, snap.phase, snap.stage):
        if snap.soa_negative_ttl is None:
            return ev.inconclusive(st, "the zone's SOA (negative-caching time) could not be read", snap.now)
        waits.append((status.phase_entered_at, snap.soa_negative_ttl))
    if any(since is None for since, _ in waits):
        return ev.ttl_elapsed(st, None, 0, snap.now)
    since, ttl = max(waits, key=lambda w: w[0] + timedelta(seconds=w[1]))  # type: ignore[operator]
    return ev.ttl_elapsed(st, since, ttl, snap.now)


def _migration_in_sync(snap: sn.Snapshot, gate: Gate, st: GateStatus) -> GateStatus:
    m, t = snap.migration, snap.now
    ref = snap.spec.migration_ref.name if snap.spec.migration_ref else "?"
    if m is None or (m.lag is None and m.found):
        return ev.inconclusive(st, f"MailMigration {ref} was not read", t)
    if not m.found:
        return ev.failed(st, f"MailMigration {ref} (spec.migrationRef) does not exist", t)
    if not m.in_sync:
        return ev.pending(st, f"MailMigration {ref} is {m.phase or 'new'}, not InSync yet", t)
    assert m.lag is not None
    return ev.sync_lag(gate.model_copy(update={"sync_lag": snap.spec.safety.sync_lag}), st, m.lag, t)


def _evaluate(
    snap: sn.Snapshot, status: DnsCutoverStatus, gate: Gate, st: GateStatus, target: DnsPhase, inp: ph.Inputs
) -> GateStatus:
    t, phase, obs = snap.now, snap.phase, snap.gate_observations.get(gate.name)
    if gate.type == "minDuration":
        return ev.min_duration(gate, st, status.phase_entered_at, t)
    if gate.type == "manualApproval":
        return ev.manual_approval(st, target, sn.approved(snap.spec, snap.annotations), t)
    if gate.type == "ttlElapsed":
        if ph.phase_index(phase) >= ph.phase_index("Switched"):
            return ev.ttl_elapsed(st, status.switched_at, snap.spec.ttl.lowered, t)
        if phase == "Planned":
            return st.model_copy(
                update={"result": "Passed", "message": "no TTL lowered yet", "last_evaluated": t}
            )
        return ev.ttl_elapsed(st, status.ttl_lowered_at, ph.old_ttl(inp), t)
    if gate.type == "syncLag":
        if snap.spec.migration_ref is None or not isinstance(obs, ev.LagObservation):
            return ev.sync_lag(gate, st, ev.LagObservation(found=False), t).model_copy(
                update={"message": "a syncLag gate needs spec.migrationRef"}
            )
        return ev.sync_lag(gate, st, obs, t)
    if gate.type == "prometheus":
        return ev.prometheus(gate, st, obs, t) if isinstance(obs, ev.PromObservation) else st
    if gate.type == "dnsRecord":
        if not isinstance(obs, ev.DnsObservation):
            obs = ev.DnsObservation(error="the nameservers were not asked")
        return ev.dns_record(gate, st, obs, t)
    return st
