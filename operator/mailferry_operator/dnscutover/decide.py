"""The DnsCutover phase machine, pure: step(Snapshot) -> Decision.

One step does one thing: create a missing DKIM key, finish the current phase (a crash interrupted it),
roll back one phase, or evaluate the gates of the next step and, when they pass, advance. The actions
come in the order that makes a crash at any point safe; apply.py runs them in that order:

- advancing persists the new phase and a snapshot of every RRset it will change (SaveStatus) before
  the MTA-STS policy and then the records are written, and saves again when done;
- rolling back writes the snapshot's RRsets first and forgets the snapshot only in the SaveStatus after;
- each record write is compared with what the provider holds, so a step repeated after a crash writes
  nothing twice, and gates that already passed are not evaluated again (the phase was saved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mailferry_api.common import MAX_HISTORY, Condition, ConditionStatus, ErrorInfo
from mailferry_api.conditions import get_condition, set_condition, with_ready
from mailferry_api.dnscutover import (
    DNS_CONDITIONS,
    DnsCutoverSpec,
    DnsCutoverStatus,
    DnsHistoryEntry,
    DnsPhase,
    GateStatus,
    MtaStsStatus,
    RRset,
    Snapshot,
)

from ..dns import dkim as dkimlib
from ..dns import phases as ph
from ..dns import spec_checks as dns_checks
from ..dns.rrset import absent, mx_hosts, rrset_equal
from ..gates import evaluate as ev
from ..mtasts import policy as mtasts
from . import snapshot as sn
from .gating import evaluate_gates
from .snapshot import SpecProblem


# ------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class SaveStatus:
    status: DnsCutoverStatus


@dataclass(frozen=True)
class WriteRRset:
    rrset: RRset  # no records: delete the RRset


@dataclass(frozen=True)
class PublishMtaSts:
    config_map: str
    policy: str


@dataclass(frozen=True)
class CreateDkimKey:
    selector: str
    algorithm: Literal["rsa", "ed25519"]
    secret_name: str


@dataclass(frozen=True)
class CountTransition:
    direction: Literal["forward", "rollback"]


@dataclass(frozen=True)
class GateMetrics:
    phase: DnsPhase
    gates: list[GateStatus]


Action = SaveStatus | WriteRRset | PublishMtaSts | CreateDkimKey | CountTransition | GateMetrics


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    status: DnsCutoverStatus  # the status after the step (saved by the caller at the end)
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    again: bool = False  # another step may follow right away


class _Step:
    """The draft of one Decision: a private copy of the status and of the records as written so far."""

    def __init__(self, snap: sn.Snapshot) -> None:
        self.snap = snap
        self.spec = snap.spec
        self.status = snap.status.model_copy(deep=True)
        self.current = dict(snap.current)
        self.actions: list[Action] = []
        self.events: list[Event] = []

    def cond(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(
            self.status.conditions, type_, status, reason, message, self.snap.generation, self.snap.now
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def history(self, from_phase: DnsPhase, to_phase: DnsPhase, reason: str, message: str) -> None:
        entry = DnsHistoryEntry(
            time=self.snap.now,
            from_phase=from_phase,
            to_phase=to_phase,
            reason=reason,
            message=message[:1024],
        )
        self.status.history = [*self.status.history, entry][-MAX_HISTORY:]

    def save(self) -> None:
        self.status.conditions = _ready(self.status.conditions, self.status, self.snap.generation)
        self.actions.append(SaveStatus(self.status.model_copy(deep=True)))

    def inputs(self) -> ph.Inputs:
        return sn.inputs(self.snap, self.current)

    def write(self, rrsets: list[RRset]) -> int:
        """Write each RRset that differs from what the provider holds (as far as this step knows)."""
        written = 0
        for want in rrsets:
            k = (want.name, want.type)
            if rrset_equal(self.current.get(k), want):
                continue
            self.actions.append(WriteRRset(want))
            self.current[k] = want if want.records else None
            written += 1
        return written

    def done(self, again: bool) -> Decision:
        return Decision(status=self.status, actions=self.actions, events=self.events, again=again)


# --------------------------------------------------------------------------------- reconcile frame
def begin(status: DnsCutoverStatus, generation: int) -> DnsCutoverStatus:
    """The status a reconcile starts from: a phase always, and a new spec gives failed gates another try."""
    out = status.model_copy(deep=True)
    if out.phase is None:
        out.phase = "Planned"
    if out.observed_generation != generation:
        out.gates = [g for g in out.gates if g.result != "Failed"]
    return out


def validate(spec: DnsCutoverSpec) -> None:
    """Checks the CRD schema cannot express."""
    if spec.records.dkim:
        sels = spec.records.dkim.selectors
        if any(s.algorithm == "ed25519" for s in sels) and not any(s.algorithm == "rsa" for s in sels):
            raise SpecProblem(
                "InvalidSpec",
                "an ed25519 DKIM selector needs an rsa selector beside it "
                "(RFC 8463; many receivers verify only RSA)",
            )
        names = [s.name for s in sels]
        if len(names) != len(set(names)):
            raise SpecProblem("InvalidSpec", "DKIM selector names must be unique")
    found = dns_checks.spec_problem(spec)
    if found is not None:
        raise SpecProblem(*found)
    if spec.ttl.lowered > spec.ttl.normal:
        raise SpecProblem("InvalidSpec", "ttl.lowered must not exceed ttl.normal")


# ---------------------------------------------------------------------------------------- step
def step(snap: sn.Snapshot) -> Decision:
    s = _Step(snap)
    spec, phase = snap.spec, snap.phase
    _, dkim_status, missing = sn.dkim_records(spec, snap.name, snap.dkim_secrets)
    if missing and sn.needs_dkim(spec, snap.status):
        cfg = spec.records.dkim
        assert cfg is not None
        for sel in cfg.selectors:
            if sel.name in missing:
                s.actions.append(
                    CreateDkimKey(sel.name, sel.algorithm, dkimlib.secret_name(snap.name, sel.name))
                )
        return s.done(again=True)
    s.status.dkim = dkim_status
    if s.status.phase_entered_at is None:  # a new DnsCutover: minDuration counts from its first step
        s.status.phase_entered_at = snap.now
    if sn.rolling_back(spec, snap.status):
        return _dry_rollback(s) if spec.dry_run else _rollback(s)
    if not spec.dry_run:
        if _converge(s, phase, snap.stage):
            return s.done(again=True)  # the gates look at what is served once this is written
        if phase != "Planned" and s.status.ttl_lowered_at is None:
            s.status.ttl_lowered_at = snap.now
        if ph.phase_index(phase) >= ph.phase_index("Switched") and s.status.switched_at is None:
            s.status.switched_at = snap.now
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


def _label(spec: DnsCutoverSpec, phase: DnsPhase, stage: int) -> str:
    if stage == 0:
        return phase
    return f"{phase} (DMARC stage {stage + 1}/{sn.last_stage(spec) + 1})"


def _toward(s: _Step, nxt: DnsPhase, nstage: int) -> Decision:
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
    outcome, message = ev.summarize(s.status.gates)
    s.status.plan = plan
    label = _label(spec, nxt, nstage)
    if outcome == "Failed":
        prev = get_condition(s.status.conditions, "Stalled")
        failed = sorted(g.name for g in s.status.gates if g.result == "Failed")
        if prev is None or prev.status != "True" or prev.reason != "GateFailed" or failed_before != failed:
            s.event("Warning", "GateFailed", f"gates for {label}: {message}")
        s.cond("Stalled", "True", "GateFailed", message)
        s.cond("GatesPassed", "False", "GateFailed", message)
        s.cond("Paused", "False", "GateFailed", "")
        return s.done(again=False)
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
    # Advance: persist the new phase and its snapshot before writing records.
    s.status.phase = nxt
    s.status.dmarc_stage = nstage if nxt == "Enforced" else None
    s.status.phase_entered_at = snap.now
    s.status.gates = []
    if nxt == "Switched":
        s.status.switched_at = None
    s.history(
        phase, nxt, "Advanced" if nstage == 0 else "DmarcStage", f"{label}: {len(plan.changes)} change(s)"
    )
    s.cond("RolledBack", "False", "Advanced", "")
    s.cond("Reconciling", "True", "Progressing", f"writing the records of {label}")
    s.event("Normal", "PhaseChanged", f"{phase} -> {label}: {len(plan.changes)} record change(s)")
    if nstage == 0:
        s.actions.append(CountTransition("forward"))
    if not any(x.phase == nxt for x in s.status.snapshots):
        keys = ph.snapshot_keys(inp, s.current, nxt)
        if keys:
            taken = Snapshot(
                phase=nxt, taken_at=snap.now, rrsets=[s.current.get(k) or absent(*k) for k in keys]
            )
            s.status.snapshots = [*s.status.snapshots, taken]
    s.save()
    _converge(s, nxt, nstage)
    s.status.plan = None
    s.save()
    # ttlLoweredAt / switchedAt are stamped by the next step, after the records are written
    return s.done(again=True)


def _converge(s: _Step, phase: DnsPhase, stage: int) -> int:
    """Make the provider hold desired(phase, stage); first add what it changes to the phase's snapshot."""
    inp = s.inputs()
    want = ph.desired(inp, phase, stage)
    changes = [v for k, v in want.items() if not rrset_equal(s.current.get(k), v)]
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
    _mta_sts(s, inp, phase, stage)
    return s.write(changes)


def _mta_sts(s: _Step, inp: ph.Inputs, phase: str, stage: int) -> None:
    cfg = s.spec.records.mta_sts
    if cfg is None or not cfg.enabled:
        return
    policy = ph.mta_sts_policy(inp, phase, stage)
    if policy is None:
        if s.status.mta_sts is None:
            return
        # Rolled back below Staged: keep serving a policy (senders cache it for max_age), in mode none.
        hosts = [m.host for m in s.spec.records.mx] + mx_hosts(inp.original(inp.names.apex, "MX"))
        policy = mtasts.render("none", hosts, cfg.max_age_seconds)
    s.actions.append(PublishMtaSts(cfg.policy_config_map or f"{s.snap.name}-mta-sts", policy))
    s.status.mta_sts = MtaStsStatus(
        id=mtasts.policy_id(policy),
        mode=mtasts.parse(policy).get("mode", ["none"])[0],
        policy_sha256=mtasts.policy_sha256(policy),
    )


# ------------------------------------------------------------------------------------- rollback
def _dry_rollback(s: _Step) -> Decision:
    phase = s.snap.phase
    snap = next((x for x in s.status.snapshots if x.phase == phase), None)
    s.status.plan = ph.plan(s.inputs(), s.current, phase, ph.prev_phase(phase), 0, s.snap.now)
    if snap is not None:
        s.status.plan.changes = ph.diff(s.current, {(r.name, r.type): r for r in snap.rrsets})
    s.cond("Paused", "True", "DryRun", f"spec.dryRun: would roll back {phase} -> {ph.prev_phase(phase)}")
    return s.done(again=False)


def _rollback(s: _Step) -> Decision:
    """Restore the snapshot of the phase we leave (no gates), then forget it."""
    phase = s.snap.phase
    to = ph.prev_phase(phase)
    snap = next((x for x in s.status.snapshots if x.phase == phase), None)
    written = s.write(list(snap.rrsets)) if snap is not None else 0
    s.status.snapshots = [x for x in s.status.snapshots if x.phase != phase]
    s.status.phase = to
    s.cond("Reconciling", "True", "RollingBack", f"rolling back from {phase} toward {s.spec.target_phase}")
    s.status.phase_entered_at = s.snap.now
    s.status.dmarc_stage = None
    s.status.gates = []
    s.status.plan = None
    if ph.phase_index(to) < ph.phase_index("Switched"):
        s.status.switched_at = None
    if ph.phase_index(to) < ph.phase_index("TTLLowered"):
        s.status.ttl_lowered_at = None
    _mta_sts(s, s.inputs(), to, 0)
    restored = len(snap.rrsets) if snap else 0
    msg = f"rolled back from {phase} to {to}: restored {restored} RRset(s), wrote {written}"
    s.history(phase, to, "RolledBack", msg)
    s.cond("RolledBack", "True", "RolledBack", msg)
    s.event("Normal", "RolledBack", msg)
    s.actions.append(CountTransition("rollback"))
    s.save()
    return s.done(again=True)


# ------------------------------------------------------------------------------ end of reconcile
def problem(
    status: DnsCutoverStatus, reason: str, message: str, generation: int, at: datetime
) -> tuple[DnsCutoverStatus, list[Event]]:
    """A problem stalls the cutover: Stalled with its reason, lastError, and an Event when it is new."""
    out = status.model_copy(deep=True)
    prev = get_condition(out.conditions, "Stalled")
    events = []
    if prev is None or prev.status != "True" or prev.message != message:
        events.append(Event("Warning", reason, message))
    out.conditions = set_condition(out.conditions, "Stalled", "True", reason, message, generation, at)
    out.last_error = ErrorInfo(reason=reason, message=message[:4096], time=at)
    return out, events


def settled(status: DnsCutoverStatus, generation: int) -> DnsCutoverStatus:
    """A reconcile without a problem: lastError cleared, a Stalled that was no gate's is lifted."""
    out = status.model_copy(deep=True)
    out.last_error = None
    stalled = get_condition(out.conditions, "Stalled")
    if stalled is not None and stalled.status == "True" and stalled.reason != "GateFailed":
        out.conditions = set_condition(out.conditions, "Stalled", "False", "AsExpected", "", generation)
    return out


def finish(
    status: DnsCutoverStatus, spec: DnsCutoverSpec, generation: int, had_problem: bool
) -> DnsCutoverStatus:
    """Conditions at the end of a reconcile; Ready the Flux way (Stalled, then Reconciling)."""
    out = status.model_copy(deep=True)
    phase = out.phase or "Planned"
    done = sn.next_step(spec, out) is None and not sn.rolling_back(spec, out)

    def cond(type_: str, st: ConditionStatus, reason: str, message: str = "") -> None:
        out.conditions = set_condition(out.conditions, type_, st, reason, message, generation)

    if done and not spec.dry_run and not had_problem:
        cond("Stalled", "False", "AsExpected", "")
        cond("Paused", "False", "AtTarget", "")
        cond("Reconciling", "False", "AtTargetPhase", f"{phase} is in place")
    elif not done or spec.dry_run:
        cond("Reconciling", "True", "Progressing", f"{phase} -> {spec.target_phase}")
    for c in DNS_CONDITIONS:
        if get_condition(out.conditions, c) is None and c != "Ready":
            cond(c, "False", "AsExpected" if c == "Stalled" else "NotYet", "")
    out.conditions = _ready(out.conditions, out, generation)
    out.observed_generation = generation
    return out


def _ready(conditions: list[Condition], status: DnsCutoverStatus, generation: int) -> list[Condition]:
    phase = status.phase or "Planned"
    return with_ready(conditions, [], "AtTargetPhase", f"{phase} is in place", generation)
