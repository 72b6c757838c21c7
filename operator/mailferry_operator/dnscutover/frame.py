"""The frame of a reconcile around its steps (pure): the status it starts from, the spec checks the
schema cannot express, a problem, and the conditions at the end (Ready the Flux way)."""

from __future__ import annotations

from datetime import datetime

from mailferry_api.common import ConditionStatus, ErrorInfo
from mailferry_api.conditions import get_condition, set_condition
from mailferry_api.dnscutover import DNS_CONDITIONS, DnsCutoverSpec, DnsCutoverStatus

from ..dns import spec_checks as dns_checks
from . import snapshot as sn
from .draft import Event, ready
from .snapshot import SpecProblem


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
    """Conditions at the end of a reconcile; Ready the Flux way: Stalled, then Reconciling (a step is
    being written; never while stalled), then GatesPassed (False while the next step waits for its gates)."""
    out = status.model_copy(deep=True)
    phase = out.phase or "Planned"
    done = sn.next_step(spec, out) is None and not sn.rolling_back(spec, out)

    def cond(type_: str, st: ConditionStatus, reason: str, message: str = "") -> None:
        out.conditions = set_condition(out.conditions, type_, st, reason, message, generation)

    waiting = get_condition(out.conditions, "Paused")
    if done and not spec.dry_run and not had_problem:
        cond("Stalled", "False", "AsExpected", "")
        cond("Paused", "False", "AtTarget", "")
        cond("Reconciling", "False", "AtTargetPhase", f"{phase} is in place")
    elif had_problem:
        # stalled: retried on the next pass, which is no progress (Ready stays False, never Unknown)
        stalled = get_condition(out.conditions, "Stalled")
        cond("Reconciling", "False", stalled.reason if stalled else "Stalled", "retried on the next pass")
    elif waiting is not None and waiting.status == "True":
        # nothing is being written: the cutover waits (gates, drift, dry run), and Ready says for what
        cond("Reconciling", "False", waiting.reason, waiting.message)
        if waiting.reason in ("Drifted", "DryRun"):
            cond("GatesPassed", "False", waiting.reason, waiting.message)
    elif not done:
        cond("Reconciling", "True", "Progressing", f"{phase} -> {spec.target_phase}")
    for c in DNS_CONDITIONS:
        if get_condition(out.conditions, c) is None and c != "Ready":
            cond(c, "False", "AsExpected" if c == "Stalled" else "NotYet", "")
    out.conditions = ready(out.conditions, out, generation)
    out.observed_generation = generation
    return out
