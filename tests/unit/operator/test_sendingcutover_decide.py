"""The ramp decision as a table: every rule of sendingcutover/decide.py, and the order between them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailferry_api.sendingcutover import EventCounts, SendingCutoverSpec
from mailferry_operator.sendingcutover.decide import Observation, State, decide, ramp_problem, since

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=2)
JUST_NOW = NOW - timedelta(minutes=5)


def spec(**extra: Any) -> SendingCutoverSpec:
    base: dict[str, Any] = {
        "domain": "example.com",
        "provider": {"name": "sendgrid", "secretName": "new-key"},
        "previousProvider": {"name": "ses", "secretName": "old-key"},
        "ramp": [{"weight": 10, "minDuration": "1h"}, {"weight": 50, "minDuration": "1h"}, {"weight": 100}],
        "warmup": {"minEvents": 100},
        "prometheus": {"address": "http://prometheus:9090"},
        "appSecretName": "app-sending",
    }
    base.update(extra)
    return SendingCutoverSpec.model_validate(base)


def counts(delivered: float, bounced: float = 0, complained: float = 0) -> EventCounts:
    return EventCounts(delivered=delivered, bounced=bounced, complained=complained)


GOOD = counts(1000, 5, 0)  # 0.5 % bounces, no complaints
CASES: list[tuple[str, dict[str, Any], State, Observation, str, int, str]] = [
    # name, spec changes, state, observation, decision, to step, reason
    (
        "start: no events needed",
        {},
        State(0, None, None, None),
        Observation(None),
        "Advance",
        1,
        "GatesPassed",
    ),
    (
        "start waits for records",
        {},
        State(0, None, None, None),
        Observation(None, records_ok=False, records_message="bounce CNAME missing"),
        "Hold",
        0,
        "RecordsNotVerified",
    ),
    (
        "start waits for the DnsCutover",
        {},
        State(0, None, None, None),
        Observation(None, dns_phase_ok=False),
        "Hold",
        0,
        "DnsCutoverNotReady",
    ),
    (
        "good rates advance",
        {},
        State(1, LONG_AGO, None, None),
        Observation(GOOD),
        "Advance",
        2,
        "GatesPassed",
    ),
    (
        "too few events hold",
        {},
        State(1, LONG_AGO, None, None),
        Observation(counts(50)),
        "Hold",
        1,
        "TooFewEvents",
    ),
    (
        "events before the step do not count",
        {},
        State(1, LONG_AGO, counts(990, 5), None),
        Observation(GOOD),
        "Hold",
        1,
        "TooFewEvents",
    ),
    (
        "minimum duration holds",
        {},
        State(1, JUST_NOW, None, None),
        Observation(GOOD),
        "Hold",
        1,
        "MinDuration",
    ),
    (
        "bounce rate over 2 % holds",
        {},
        State(1, LONG_AGO, None, None),
        Observation(counts(970, 30)),
        "Hold",
        1,
        "BounceRate",
    ),
    (
        "bounce rate at 5 % hard-stops to zero",
        {},
        State(2, JUST_NOW, None, None),
        Observation(counts(950, 50)),
        "HardStop",
        0,
        "HardStop",
    ),
    (
        "hard stop may step back instead",
        {"warmup": {"minEvents": 100, "onHardStop": "StepBack"}},
        State(2, JUST_NOW, None, None),
        Observation(counts(950, 50)),
        "HardStop",
        1,
        "HardStop",
    ),
    (
        "complaint rate over 0.1 % steps back",
        {},
        State(2, LONG_AGO, None, None),
        Observation(counts(1000, 0, 2)),
        "StepBack",
        1,
        "ComplaintRate",
    ),
    (
        "complaint rate at 0.3 % hard-stops",
        {},
        State(2, LONG_AGO, None, None),
        Observation(counts(1000, 0, 3)),
        "HardStop",
        0,
        "HardStop",
    ),
    (
        "no judgement on a few events, however bad",
        {},
        State(2, LONG_AGO, None, None),
        Observation(counts(2, 1, 1)),
        "Hold",
        2,
        "TooFewEvents",
    ),
    (
        "safety runs while paused",
        {"paused": True},
        State(2, LONG_AGO, None, None),
        Observation(counts(900, 100)),
        "HardStop",
        0,
        "HardStop",
    ),
    (
        "paused holds",
        {"paused": True},
        State(1, LONG_AGO, None, None),
        Observation(GOOD),
        "Hold",
        1,
        "Paused",
    ),
    (
        "lowered target rolls back without gates",
        {"targetWeight": 0},
        State(3, LONG_AGO, None, None),
        Observation(None, records_ok=False),
        "RollBack",
        0,
        "TargetLowered",
    ),
    (
        "target between steps: highest step within it",
        {"targetWeight": 60},
        State(3, LONG_AGO, None, None),
        Observation(GOOD),
        "RollBack",
        2,
        "TargetLowered",
    ),
    (
        "at target holds",
        {"targetWeight": 50},
        State(2, LONG_AGO, None, None),
        Observation(GOOD),
        "Hold",
        2,
        "AtTarget",
    ),
    ("at 100 % holds", {}, State(3, LONG_AGO, None, None), Observation(GOOD), "Hold", 3, "AtTarget"),
    (
        "hard stop waits for the acknowledgement",
        {},
        State(0, LONG_AGO, None, 0),
        Observation(None),
        "Hold",
        0,
        "HardStopped",
    ),
    (
        "a raised hardStopAck resumes",
        {"hardStopAck": 1},
        State(0, LONG_AGO, None, 0),
        Observation(None),
        "Advance",
        1,
        "GatesPassed",
    ),
    (
        "no metrics: hold",
        {},
        State(1, LONG_AGO, None, None),
        Observation(None, metrics_error="cannot reach"),
        "Hold",
        1,
        "MetricsUnavailable",
    ),
]


@pytest.mark.parametrize(
    ("changes", "state", "obs", "decision", "to_step", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    changes: dict[str, Any], state: State, obs: Observation, decision: str, to_step: int, reason: str
) -> None:
    out = decide(spec(**changes), state, obs, NOW)
    assert (out.decision, out.to_step, out.reason) == (decision, to_step, reason), out.message


def test_counter_reset_counts_from_zero() -> None:
    assert since(counts(500, 10), counts(20, 1)) == counts(20, 1)
    assert since(counts(500, 10), counts(600, 12)) == counts(100, 2)


def test_ramp_must_rise() -> None:
    bad = spec(ramp=[{"weight": 50}, {"weight": 10}])
    assert ramp_problem(bad) is not None
    assert ramp_problem(spec()) is None
