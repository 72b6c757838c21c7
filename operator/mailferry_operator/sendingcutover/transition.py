"""From a decision to the next status (pure): step, weight, baseline, phase, conditions, history, Events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailferry_api.common import ConditionStatus
from mailferry_api.conditions import get_condition, set_condition, with_ready
from mailferry_api.sendingcutover import (
    Measurement,
    RecordResult,
    SendingCutoverSpec,
    SendingCutoverStatus,
    SendingHistoryEntry,
    SendingPhase,
)

from .decide import Observation, Outcome, weights

MAX_HISTORY = 20
WARNING_DECISIONS = ("StepBack", "HardStop")


@dataclass
class Transition:
    status: SendingCutoverStatus
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _phase(spec: SendingCutoverSpec, status: SendingCutoverStatus, outcome: Outcome) -> SendingPhase:
    if status.hard_stopped_ack is not None and status.hard_stopped_ack == spec.hard_stop_ack:
        return "HardStopped"
    if status.history and status.history[-1].decision == "RollBack":
        return "RolledBack"  # until the next move forward
    if status.weight >= 100:
        return "Complete"
    if status.step == 0 and outcome.decision == "Hold":
        return "Pending"
    return "Ramping" if outcome.moves or outcome.reason in ("TooFewEvents", "MinDuration") else "Holding"


def next_status(
    name: str,
    spec: SendingCutoverSpec,
    before: SendingCutoverStatus,
    outcome: Outcome,
    obs: Observation,
    checked: list[RecordResult],
    now: datetime,
    generation: int | None,
    problem: tuple[str, str] | None = None,
) -> Transition:
    status = before.model_copy(deep=True)
    t = Transition(status)
    ws = weights(spec)

    def cond(type_: str, value: ConditionStatus, reason: str, message: str = "") -> None:
        status.conditions = set_condition(status.conditions, type_, value, reason, message, generation, now)

    if outcome.rates is not None:
        r = outcome.rates
        status.last_measurement = Measurement(
            events=r.events, bounce_rate=r.bounce_rate, complaint_rate=r.complaint_rate, time=now
        )
    if outcome.moves:
        status.history = [
            *status.history,
            SendingHistoryEntry(
                time=now,
                decision=outcome.decision,
                from_weight=ws[before.step],
                to_weight=ws[outcome.to_step],
                reason=outcome.reason,
                message=outcome.message[:1024],
            ),
        ][-MAX_HISTORY:]
        status.step, status.weight = outcome.to_step, ws[outcome.to_step]
        status.step_started_at = now
        status.baseline = obs.counts  # None (no metrics): set on the first round that has them
        kind = "Warning" if outcome.decision in WARNING_DECISIONS else "Normal"
        t.events.append((kind, outcome.decision, outcome.message))
    if outcome.decision == "HardStop":
        status.hard_stopped_ack = spec.hard_stop_ack
    elif status.hard_stopped_ack is not None and status.hard_stopped_ack != spec.hard_stop_ack:
        status.hard_stopped_ack = None
        t.events.append(("Normal", "HardStopAcknowledged", "spec.hardStopAck raised: the ramp may resume"))

    status.records = checked
    if spec.records:
        cond(
            "RecordsVerified",
            "True" if obs.records_ok else "False",
            "Verified" if obs.records_ok else "RecordNotServed",
            obs.records_message,
        )
    else:
        cond("RecordsVerified", "True", "NoRecords", "spec.records is empty")
    hard = status.hard_stopped_ack is not None
    cond(
        "HardStopped",
        "True" if hard else "False",
        "HardStop" if hard else "NotStopped",
        outcome.message if outcome.decision == "HardStop" else "",
    )
    if outcome.decision == "RollBack":
        cond("RolledBack", "True", "TargetLowered", outcome.message)
    elif outcome.decision == "Advance":
        cond("RolledBack", "False", "Advancing")
    passed = outcome.decision == "Advance" or outcome.reason == "AtTarget"
    previous = get_condition(status.conditions, "GatesPassed")
    cond("GatesPassed", "True" if passed else "False", outcome.reason, outcome.message)
    if not outcome.moves and previous is not None and previous.reason != outcome.reason and not passed:
        t.events.append(("Normal", outcome.reason, outcome.message))  # a new reason to wait, once
    if problem is not None:
        stalled = get_condition(status.conditions, "Stalled")
        if stalled is None or stalled.status != "True" or stalled.reason != problem[0]:
            t.events.append(("Warning", problem[0], problem[1]))
        cond("Stalled", "True", *problem)
    elif hard:
        cond("Stalled", "True", "HardStop", "hard stop: raise spec.hardStopAck to resume")
    else:
        cond("Stalled", "False", "Progressing")
    status.conditions = with_ready(
        status.conditions, ("RecordsVerified",), "AtTarget" if passed else outcome.reason, "", generation, now
    )
    status.phase = _phase(spec, status, outcome)
    status.observed_generation = generation
    return t
