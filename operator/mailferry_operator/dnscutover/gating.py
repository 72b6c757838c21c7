"""The gates of the next step, evaluated from the snapshot (pure): gates/evaluate.py's rules fed with
what observe.py measured, each gate continuing from its previous status."""

from __future__ import annotations

from mailferry_api.dnscutover import DnsCutoverStatus, DnsPhase, Gate, GateStatus

from ..dns import phases as ph
from ..gates import evaluate as ev
from . import snapshot as sn


def evaluate_gates(
    snap: sn.Snapshot, status: DnsCutoverStatus, target: DnsPhase, inp: ph.Inputs
) -> list[GateStatus]:
    """`status` is the step's draft (timestamps it just set count)."""
    previous = {g.name: g for g in status.gates if g.phase == target}
    results: list[GateStatus] = []
    for gate in sn.gates_for(snap.spec, target):
        st = previous.get(gate.name)
        if st is None or st.type != gate.type:
            st = ev.fresh(gate, target)
        results.append(_evaluate(snap, status, gate, st, target, inp))
    return results


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
