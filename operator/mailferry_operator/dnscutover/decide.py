"""The DnsCutover phase machine, pure: step(Snapshot) -> Decision.

One step does one thing: create a missing DKIM key, finish the current phase (a crash interrupted it),
report drift, roll back one phase, or evaluate the gates of the next step and, when they pass, advance.
The actions come in the order that makes a crash at any point safe; apply.py runs them in that order:

- advancing persists the new phase and a snapshot of every RRset it will change (SaveStatus) before
  the MTA-STS policy and then the records are written, and saves again when done (recordsWritten);
- rolling back serves the policy first, then writes the snapshot's RRsets (values others added to a
  shared RRset kept), and forgets the snapshot only in the SaveStatus after;
- each record write is compared with what the provider holds, so a step repeated after a crash writes
  nothing twice, and gates that already passed are not evaluated again (the phase was saved).

A managed record that differs once its phase was fully written is drift: reported (condition, Event,
metric) and not written back unless spec.safety.drift says "revert"; a spec change is no drift, nor is
what the clock changes: the MTA-STS policy without the old MX once the switch has drained, `_mta-sts`
deleted once every policy a sender may cache has expired (RFC 8461 §8.3).

A retry of the generation a problem stalled stays Stalled (Ready=False) while it runs, whatever it saves
on the way: Ready does not flap to Unknown on every retry; Reconciling is for progress, not for retries.
"""

from __future__ import annotations

from datetime import timedelta

from mailferry_api.conditions import get_condition
from mailferry_api.dnscutover import DnsPhase, MtaStsStatus, RRset, Snapshot

from ..dns import dkim as dkimlib
from ..dns import phases as ph
from ..dns.rrset import absent, rrset_equal, split_txt
from ..gates import evaluate as ev
from ..mtasts import policy as mtasts
from . import snapshot as sn
from .draft import CountTransition, CreateDkimKey, Decision, Draft, GateMetrics, PublishMtaSts
from .gating import evaluate_gates
from .snapshot import SpecProblem


def step(snap: sn.Snapshot) -> Decision:
    s = Draft(snap)
    spec, phase = snap.spec, snap.phase
    _, dkim_status, missing = sn.dkim_records(spec, snap.name, snap.dkim_secrets)
    if missing and sn.needs_dkim(spec, snap.status):
        for sel in spec.records.dkim.selectors if spec.records.dkim else []:
            if sel.name in missing:
                secret = dkimlib.secret_name(snap.name, sel.name)
                s.actions.append(CreateDkimKey(sel.name, sel.algorithm, secret))
        return s.done(again=True)
    s.status.dkim = dkim_status
    if s.status.phase_entered_at is None:  # a new DnsCutover: its dwell counts from its first step
        s.status.phase_entered_at = snap.now
    if sn.rolling_back(spec, snap.status):
        return _dry_rollback(s) if spec.dry_run else _rollback(s)
    if not spec.dry_run:
        _clock_changed(s)
        if _drifted(s):
            return s.done(again=False)
        if _converge(s, phase, snap.stage):
            s.status.records_written = True
            return s.done(again=True)  # the gates look at what is served once this is written
        s.status.records_written = True
        _stamp(s)
    nxt = sn.next_step(spec, snap.status)
    if nxt is None:
        s.status.plan = None
        s.status.gates = []
        s.cond("GatesPassed", "True", "AtTarget", f"at the target phase {spec.target_phase}")
        s.cond("Paused", "False", "AtTarget", "")
        return s.done(again=False)
    if snap.forward_problem is not None:
        raise SpecProblem(snap.forward_problem.reason, snap.forward_problem.message)
    return _toward(s, *nxt)


def _stamp(s: Draft) -> None:
    """ttlLoweredAt once the lowered records are seen everywhere (the recordsServed gate, or at once when
    that gate is skipped); switchedAt and drainUntil once the new MX is seen on every nameserver."""
    snap, st, phase = s.snap, s.status, s.snap.phase
    unverified = sn.skipped(s.spec, "recordsServed")
    if phase != "Planned" and st.ttl_lowered_at is None and (phase != "TTLLowered" or unverified):
        st.ttl_lowered_at = snap.now
    if ph.phase_index(phase) < ph.phase_index("Switched") or st.switched_at is not None:
        return
    if unverified or sn.all_serve(snap.mx_served):
        st.switched_at = snap.now
        before = next((x for x in st.snapshots if x.phase == "Switched"), None)
        old_mx = next((r for r in before.rrsets if r.type == "MX"), None) if before else None
        mx_ttl = old_mx.ttl if old_mx is not None and old_mx.records else s.spec.ttl.lowered
        minimum = ev.parse_duration(s.spec.safety.drain_minimum)
        st.drain_until = snap.now + max(timedelta(seconds=2 * mx_ttl), minimum)
        s.event(
            "Normal",
            "Switched",
            f"the new MX is served by every nameserver; drain until {st.drain_until.isoformat()}",
        )


def _retrying(s: Draft) -> bool:
    """This step belongs to a retry of the generation a problem (not a gate) stalled: Stalled stays True
    until a reconcile ends without the problem (frame.settled), so Ready stays False meanwhile."""
    c = get_condition(s.snap.status.conditions, "Stalled")
    same = s.snap.status.observed_generation == s.snap.generation
    return same and c is not None and c.status == "True" and c.reason != "GateFailed"


def _clock_changed(s: Draft) -> None:
    """The clock changed the MTA-STS policy the phase serves (the switch drained: the old MX leave it;
    every policy a sender may hold expired: `_mta-sts` goes). Planned, not drift: written again."""
    was = s.status.mta_sts
    if was is None:
        return
    policy = ph.mta_sts_policy(s.inputs(), s.snap.phase, s.snap.stage)
    if policy is None:
        moved = sn.mta_sts_expired(s.status, s.snap.now)
    else:
        moved = mtasts.policy_sha256(policy) != was.policy_sha256
    if moved:
        s.status.records_written = False


def _drifted(s: Draft) -> bool:
    """Report the managed records someone else changed after this phase wrote them; True = stop here."""
    snap = s.snap
    changes = _changes(s, snap.phase, snap.stage)
    spec_changed = snap.status.observed_generation != snap.generation
    drift = [] if not s.status.records_written or spec_changed else [f"{r.name} {r.type}" for r in changes]
    if drift and s.spec.safety.drift == "revert":
        s.event("Warning", "DriftReverted", f"wrote back what someone changed: {', '.join(drift)}")
        s.status.drifted = []
        s.status.records_written = False
        return False
    if drift != s.status.drifted:
        if drift:
            s.event(
                "Warning",
                "Drifted",
                f"changed by someone else since {snap.phase} wrote them: {', '.join(drift)}",
            )
        s.status.drifted = drift
    if not drift:
        s.cond("Drifted", "False", "AsWritten", "")
        return False
    message = (
        f"{', '.join(drift)} changed since {snap.phase} wrote them: nothing moves forward and nothing is "
        "written back (put the records back, roll back, or set spec.safety.drift: revert)"
    )
    s.cond("Drifted", "True", "RecordsChanged", message)
    s.cond("Paused", "True", "Drifted", message)
    return True


def _label(s: Draft, phase: DnsPhase, stage: int) -> str:
    if stage == 0:
        return phase
    return f"{phase} (DMARC stage {stage + 1}/{sn.last_stage(s.spec) + 1})"


def _toward(s: Draft, nxt: DnsPhase, nstage: int) -> Decision:
    """Evaluate the next step's gates; advance when all pass."""
    snap, spec, phase = s.snap, s.spec, s.snap.phase
    inp = s.inputs()
    plan = ph.plan(inp, s.current, phase, nxt, nstage, snap.now)
    if s.status.plan is not None and s.status.plan.changes == plan.changes:
        plan.computed_at = s.status.plan.computed_at
    failed_before = sorted(g.name for g in s.status.gates if g.result == "Failed" and g.phase == nxt)
    # status.gates only ever holds the next step's gates: emptied whenever a step is taken or undone
    s.status.gates = evaluate_gates(snap, s.status, nxt, inp)
    s.actions.append(GateMetrics(nxt, s.status.gates))
    served = next((g for g in s.status.gates if g.name == "recordsServed"), None)
    if phase == "TTLLowered" and s.status.ttl_lowered_at is None and served and served.result == "Passed":
        s.status.ttl_lowered_at = snap.now  # the old TTL counts from the moment every server has the new one
    outcome, message = ev.summarize(s.status.gates)
    s.status.plan = plan
    label = _label(s, nxt, nstage)
    if outcome == "Failed":
        prev = get_condition(s.status.conditions, "Stalled")
        failed = sorted(g.name for g in s.status.gates if g.result == "Failed")
        if prev is None or prev.status != "True" or prev.reason != "GateFailed" or failed_before != failed:
            s.event("Warning", "GateFailed", f"gates for {label}: {message}")
        s.cond("Stalled", "True", "GateFailed", message)
        s.cond("GatesPassed", "False", "GateFailed", message)
        s.cond("Paused", "False", "GateFailed", "")
        return s.done(again=False)
    retrying = _retrying(s)
    if not retrying:
        s.cond("Stalled", "False", "AsExpected", "")
    if outcome != "Passed":
        reason = "GatesInconclusive" if outcome == "Inconclusive" else "WaitingForGates"
        s.cond("Paused", "True", reason, message)
        s.cond("GatesPassed", "False", reason, message)
        return s.done(again=False)
    s.cond("GatesPassed", "True", "GatesPassed", message)
    if spec.dry_run:
        s.cond("Paused", "True", "DryRun", f"spec.dryRun: {len(plan.changes)} change(s) planned for {label}")
        return s.done(again=False)
    s.cond("Paused", "False", "Progressing", "")
    held = ", ".join(f"{g.name} {g.held_seconds}s" for g in s.status.gates if g.held_seconds)
    # Advance: persist the new phase and its snapshot before writing records.
    s.status.phase = nxt
    s.status.dmarc_stage = nstage if nxt == "Enforced" else None
    s.status.phase_entered_at = snap.now
    s.status.gates = []
    s.status.records_written = False
    if nxt == "Switched":
        s.status.switched_at = s.status.drain_until = None
    changes = f"{label}: {len(plan.changes)} change(s)" + (f"; held by {held}" if held else "")
    s.history(phase, nxt, "Advanced" if nstage == 0 else "DmarcStage", changes)
    s.cond("RolledBack", "False", "Advanced", "")
    if not retrying:
        s.cond("Reconciling", "True", "Progressing", f"writing the records of {label}")
    s.event("Normal", "PhaseChanged", f"{phase} -> {label}: {len(plan.changes)} record change(s)")
    if nstage == 0:
        s.actions.append(CountTransition("forward"))
    if not any(x.phase == nxt for x in s.status.snapshots):
        keys = ph.snapshot_keys(inp, s.current, nxt)
        if keys:
            rrsets = [s.current.get(k) or absent(*k) for k in keys]
            s.status.snapshots = [*s.status.snapshots, Snapshot(phase=nxt, taken_at=snap.now, rrsets=rrsets)]
    s.save()
    _converge(s, nxt, nstage)
    s.status.plan = None
    s.status.records_written = True
    s.save()
    # ttlLoweredAt / switchedAt are stamped by a later step, once the records are seen
    return s.done(again=True)


def _changes(s: Draft, phase: DnsPhase, stage: int) -> list[RRset]:
    want = ph.desired(s.inputs(), phase, stage)
    return [v for k, v in want.items() if not rrset_equal(s.current.get(k), v)]


def _converge(s: Draft, phase: DnsPhase, stage: int) -> int:
    """Make the provider hold desired(phase, stage); first add what it changes to the phase's snapshot."""
    changes = _changes(s, phase, stage)
    if changes and phase != "Planned":
        snap = next((x for x in s.status.snapshots if x.phase == phase), None)
        have = {(r.name, r.type) for r in snap.rrsets} if snap else set()
        extra = [s.current.get((r.name, r.type)) or absent(r.name, r.type) for r in changes]
        extra = [r for r in extra if (r.name, r.type) not in have]
        if extra:
            if snap is None:
                s.status.snapshots = [
                    *s.status.snapshots,
                    Snapshot(phase=phase, taken_at=s.snap.now, rrsets=extra),
                ]
            else:
                snap.rrsets = [*snap.rrsets, *extra]
            s.save()  # the snapshot is stored before any record of it changes
    # MTA-STS: the policy is served before the TXT id that announces it changes.
    _mta_sts(s, phase, stage)
    return s.write(changes)


def _mta_sts(s: Draft, phase: DnsPhase, stage: int) -> None:
    """Serve `phase`'s policy; status.mtaSts keeps the longest max_age and enforceCachedUntil: a sender
    that fetched any policy but `mode: none` (served until now, or from now) may hold it for that long."""
    cfg = s.spec.records.mta_sts
    before = s.status.mta_sts
    policy = ph.mta_sts_policy(s.inputs(), phase, stage)
    if cfg is None or policy is None:
        if before is not None and sn.mta_sts_expired(s.status, s.snap.now):
            s.status.mta_sts = None  # nothing a sender holds can refer to it: `_mta-sts` is deleted now
        return
    fields = mtasts.parse(policy)
    mode = fields.get("mode", ["none"])[0]
    longest = max(int(fields.get("max_age", ["0"])[0]), before.longest_max_age_seconds if before else 0)
    cached = before.enforce_cached_until if before else None
    if mode != "none" or (before is not None and before.mode != "none"):
        # the longest max_age, not this policy's: an older one fetched with a longer max_age still holds
        cached = max(cached or s.snap.now, s.snap.now + timedelta(seconds=longest))
    s.status.mta_sts = MtaStsStatus(
        id=mtasts.policy_id(policy),
        mode=mode,
        policy_sha256=mtasts.policy_sha256(policy),
        longest_max_age_seconds=longest,
        enforce_cached_until=cached,
    )
    if mode != "none" and (before is None or before.policy_sha256 != s.status.mta_sts.policy_sha256):
        s.save()  # until when it may be cached is stored before any sender can fetch it
    s.actions.append(PublishMtaSts(cfg.policy_config_map or f"{s.snap.name}-mta-sts", policy))


# ------------------------------------------------------------------------------------- rollback
def _dry_rollback(s: Draft) -> Decision:
    phase = s.snap.phase
    snap = next((x for x in s.status.snapshots if x.phase == phase), None)
    s.status.plan = ph.plan(s.inputs(), s.current, phase, ph.prev_phase(phase), 0, s.snap.now)
    if snap is not None:
        s.status.plan.changes = ph.diff(s.current, {(r.name, r.type): r for r in _restore(s, snap)})
    s.cond("Paused", "True", "DryRun", f"spec.dryRun: would roll back {phase} -> {ph.prev_phase(phase)}")
    return s.done(again=False)


def _restore(s: Draft, snap: Snapshot) -> list[RRset]:
    """The snapshot's RRsets, with what others added to a shared RRset kept, and `_mta-sts` announcing
    the policy now served instead of vanishing (a sender may still cache an enforce policy)."""
    inp = s.inputs()
    mta_sts = ph.mta_sts_policy(inp, ph.prev_phase(s.snap.phase), 0)
    out = []
    for r in snap.rrsets:
        if mta_sts is not None and (r.name, r.type) == (inp.names.mta_sts, "TXT"):
            r = RRset(name=r.name, type="TXT", ttl=s.spec.ttl.lowered, records=[mtasts_txt(mta_sts)])
        out.append(ph.keep_foreign(r, s.current.get((r.name, r.type)), s.spec.domain))
    return out


def mtasts_txt(policy: str) -> str:
    return split_txt(mtasts.txt_value(policy))


def _rollback(s: Draft) -> Decision:
    """Restore the snapshot of the phase we leave (no gates), then forget it."""
    phase = s.snap.phase
    to = ph.prev_phase(phase)
    snap = next((x for x in s.status.snapshots if x.phase == phase), None)
    _mta_sts(s, to, 0)  # the policy senders will fetch is served before the TXT id announces it
    written = s.write(_restore(s, snap)) if snap is not None else 0
    s.status.snapshots = [x for x in s.status.snapshots if x.phase != phase]
    s.status.phase = to
    if not _retrying(s):
        toward = f"rolling back from {phase} toward {s.spec.target_phase}"
        s.cond("Reconciling", "True", "RollingBack", toward)
    s.status.phase_entered_at = s.snap.now
    s.status.dmarc_stage = None
    s.status.gates = []
    s.status.plan = None
    s.status.records_written = True
    s.status.drifted = []
    if ph.phase_index(to) < ph.phase_index("Switched"):
        s.status.switched_at = s.status.drain_until = None
    if ph.phase_index(to) < ph.phase_index("TTLLowered"):
        s.status.ttl_lowered_at = None
    restored = len(snap.rrsets) if snap else 0
    msg = f"rolled back from {phase} to {to}: restored {restored} RRset(s), wrote {written}"
    s.history(phase, to, "RolledBack", msg)
    s.cond("RolledBack", "True", "RolledBack", msg)
    s.event("Normal", "RolledBack", msg)
    s.actions.append(CountTransition("rollback"))
    s.save()
    return s.done(again=True)
