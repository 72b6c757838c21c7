"""The ramp decision, pure: (spec, status, observation, now) → one Decision. No I/O, no clock.

Order of the rules (the first that applies wins):
1. spec.targetWeight below the current weight → RollBack at once to the highest step within it (no gates:
   sending through the old provider is the state the application came from).
2. with at least warmup.minEvents events since the step began: bounce rate ≥ hard stop or complaint rate ≥
   hard stop → HardStop (weight 0 and the old key, or one step down); complaint rate ≥ max → StepBack.
   These run even when paused, hard-stopped or when DNS no longer verifies: they protect the sender's
   reputation.
3. a hard stop not acknowledged (spec.hardStopAck unchanged) → Hold.
4. nothing more to do (at target, paused, prerequisites missing, too few events, minimum duration not
   over, bounce rate ≥ max) → Hold with that reason.
5. otherwise → Advance one step. Leaving weight 0 needs no events (none can exist yet).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from mailferry_api.sendingcutover import Decision, EventCounts, SendingCutoverSpec

from ..gates.evaluate import parse_duration


@dataclass(frozen=True)
class Observation:
    """What observe.py found; `counts` are the totals now (None: Prometheus gave no answer)."""

    counts: EventCounts | None
    metrics_error: str = ""
    records_ok: bool = True
    records_message: str = ""
    dns_phase_ok: bool = True
    dns_phase_message: str = ""


@dataclass(frozen=True)
class State:
    """The part of status the decision reads."""

    step: int
    started_at: datetime | None
    baseline: EventCounts | None
    hard_stopped_ack: int | None


@dataclass(frozen=True)
class Rates:
    events: float
    bounce_rate: float | None
    complaint_rate: float | None


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    to_step: int
    reason: str
    message: str
    rates: Rates | None = None

    @property
    def moves(self) -> bool:
        return self.decision != "Hold"


def weights(spec: SendingCutoverSpec) -> list[int]:
    """Weight per step: step 0 is 0 %, step n is spec.ramp[n-1]."""
    return [0, *(s.weight for s in spec.ramp)]


def ramp_problem(spec: SendingCutoverSpec) -> str | None:
    """What the schema cannot say: the ramp must rise."""
    ws = weights(spec)
    if any(b <= a for a, b in itertools.pairwise(ws)):
        return f"spec.ramp weights must rise step by step (got {', '.join(map(str, ws[1:]))})"
    return None


def since(baseline: EventCounts | None, now: EventCounts) -> EventCounts:
    """Events since the step began. A total below its baseline means the ingest restarted (counters reset):
    count from zero again, which undercounts and so only ever delays a judgement."""
    base = baseline or EventCounts()

    def delta(current: float, before: float) -> float:
        return current - before if current >= before else current

    return EventCounts(
        delivered=delta(now.delivered, base.delivered),
        bounced=delta(now.bounced, base.bounced),
        complained=delta(now.complained, base.complained),
    )


def rates(counts: EventCounts) -> Rates:
    """Bounce rate over delivered+bounced; complaint rate over delivered (what ESPs report)."""
    events = counts.delivered + counts.bounced
    return Rates(
        events=events,
        bounce_rate=counts.bounced / events if events else None,
        complaint_rate=counts.complained / counts.delivered if counts.delivered else None,
    )


def _target_step(spec: SendingCutoverSpec) -> int:
    """The highest step whose weight is within spec.targetWeight."""
    return max(i for i, w in enumerate(weights(spec)) if w <= spec.target_weight)


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.2f} %"


def decide(spec: SendingCutoverSpec, state: State, obs: Observation, now: datetime) -> Outcome:
    ws = weights(spec)
    step = min(state.step, len(ws) - 1)
    target = _target_step(spec)
    gates = spec.warmup

    def hold(reason: str, message: str, r: Rates | None = None) -> Outcome:
        return Outcome("Hold", step, reason, message, r)

    if target < step:
        return Outcome(
            "RollBack",
            target,
            "TargetLowered",
            f"spec.targetWeight {spec.target_weight} %: weight {ws[step]} % → {ws[target]} %",
        )
    # measured at every step (at 0 % too: late events of a rolled-back ramp show), judged above 0 % only
    r = rates(since(state.baseline, obs.counts)) if obs.counts is not None else None
    if step > 0 and r is not None and r.events >= gates.min_events:
        over_bounce = r.bounce_rate is not None and r.bounce_rate >= gates.bounce_rate_hard_stop
        over_complaint = r.complaint_rate is not None and r.complaint_rate >= gates.complaint_rate_hard_stop
        if over_bounce or over_complaint:
            what = (
                f"bounce rate {_pct(r.bounce_rate)} ≥ {_pct(gates.bounce_rate_hard_stop)}"
                if over_bounce
                else f"complaint rate {_pct(r.complaint_rate)} ≥ {_pct(gates.complaint_rate_hard_stop)}"
            )
            to = 0 if gates.on_hard_stop == "Zero" else step - 1
            return Outcome(
                "HardStop", to, "HardStop", f"{what} over {r.events:.0f} events: weight → {ws[to]} %", r
            )
        if r.complaint_rate is not None and r.complaint_rate >= gates.complaint_rate_max:
            return Outcome(
                "StepBack",
                step - 1,
                "ComplaintRate",
                f"complaint rate {_pct(r.complaint_rate)} ≥ {_pct(gates.complaint_rate_max)} over "
                f"{r.events:.0f} events: weight {ws[step]} % → {ws[step - 1]} %",
                r,
            )

    if state.hard_stopped_ack is not None and state.hard_stopped_ack == spec.hard_stop_ack:
        return hold("HardStopped", "after a hard stop the ramp waits: raise spec.hardStopAck to resume", r)
    if step >= target:
        return hold("AtTarget", f"at {ws[step]} %, spec.targetWeight {spec.target_weight} %", r)
    if spec.paused:
        return hold("Paused", "spec.paused is true", r)
    if not obs.records_ok:
        return hold("RecordsNotVerified", obs.records_message, r)
    if not obs.dns_phase_ok:
        return hold("DnsCutoverNotReady", obs.dns_phase_message, r)
    if step > 0:
        if obs.counts is None:
            return hold("MetricsUnavailable", obs.metrics_error or "no answer from Prometheus", r)
        assert r is not None
        if r.events < gates.min_events:
            return hold(
                "TooFewEvents", f"{r.events:.0f} of {gates.min_events} events since the step began", r
            )
        if r.bounce_rate is not None and r.bounce_rate >= gates.bounce_rate_max:
            return hold("BounceRate", f"bounce rate {_pct(r.bounce_rate)} ≥ {_pct(gates.bounce_rate_max)}", r)
        minimum = parse_duration(spec.ramp[step - 1].min_duration)
        if state.started_at is not None and now - state.started_at < minimum:
            return hold(
                "MinDuration", f"step {step} needs {spec.ramp[step - 1].min_duration} at {ws[step]} %", r
            )
    return Outcome(
        "Advance",
        step + 1,
        "GatesPassed",
        f"weight {ws[step]} % → {ws[step + 1]} % (bounce {_pct(r.bounce_rate if r else None)}, "
        f"complaints {_pct(r.complaint_rate if r else None)})",
        r,
    )
