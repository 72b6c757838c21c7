"""Table tests of the pure DnsCutover step (dnscutover/decide.py): every phase, gate outcome, rollback
and a crash-interrupted phase, with no server. A tiny in-memory zone plays the provider: WriteRRset
actions are applied to it, SaveStatus actions are recorded, and the next step sees both."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailferry_api.conditions import get_condition
from mailferry_api.dnscutover import DnsCutoverSpec, DnsCutoverStatus, RRset
from mailferry_api.problems import Problem
from mailferry_operator.dns import phases as ph
from mailferry_operator.dns.rrset import rrset_equal, txt_values
from mailferry_operator.dnscutover import decide, frame
from mailferry_operator.dnscutover import draft as dc
from mailferry_operator.dnscutover import snapshot as sn
from mailferry_operator.gates import evaluate as ev

D = "example.test."
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD_MX = RRset(name=D, type="MX", ttl=3600, records=["10 mx.old.test."])
OLD_TXT = RRset(name=D, type="TXT", ttl=3600, records=['"v=spf1 include:spf.old.test ~all"', '"MS=ms1234"'])


# The built-in gates, each turned off with who and why: the tests of the phase machine itself.
FAST = {
    "skip": [
        {"gate": g, "by": "unit tests", "reason": "no nameserver here; the built-in gates have tests below"}
        for g in ("minDwell", "recordsServed", "oldTtl", "dkimVerified", "migrationInSync")
    ]
}


def spec(**over: Any) -> DnsCutoverSpec:
    base: dict[str, Any] = {
        "safety": FAST,
        "domain": "example.test",
        "provider": {"type": "powerdns", "secretRef": {"name": "p"}, "powerdns": {"apiUrl": "http://x"}},
        "targetPhase": "Enforced",
        "records": {
            "mx": [{"host": "mx1.dest.test", "priority": 10}],
            "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"]},
            "dmarc": {"rua": ["dmarc@example.test"]},
        },
        "ttl": {"lowered": 60, "normal": 3600},
    }
    base.update(over)
    return DnsCutoverSpec.model_validate(base)


@dataclass
class World:
    """The zone and the stored status as the steps leave them."""

    spec: DnsCutoverSpec
    zone: dict[ph.Key, RRset | None] = field(default_factory=dict)
    status: DnsCutoverStatus = field(default_factory=lambda: DnsCutoverStatus(phase="Planned"))
    now: datetime = T0
    saved: list[DnsCutoverStatus] = field(default_factory=list)

    def snapshot(self, **over: Any) -> sn.Snapshot:
        current = {k: self.zone.get(k) for k in ph.managed_keys(self.spec)}
        for s in self.status.snapshots:
            for r in s.rrsets:
                current.setdefault((r.name, r.type), self.zone.get((r.name, r.type)))
        args: dict[str, Any] = dict(
            namespace="ns",
            name="cut",
            uid="u1",
            generation=1,
            annotations={},
            spec=self.spec,
            status=self.status,
            now=self.now,
            current=current,
        )
        args.update(over)
        return sn.Snapshot(**args)

    def apply(self, d: dc.Decision) -> None:
        for a in d.actions:
            if isinstance(a, dc.WriteRRset):
                self.zone[(a.rrset.name, a.rrset.type)] = a.rrset if a.rrset.records else None
            elif isinstance(a, dc.SaveStatus):
                self.saved.append(a.status)
        self.status = d.status

    def run(self, steps: int = 12, **over: Any) -> list[dc.Decision]:
        """Steps until one says stop (what the handler's loop does)."""
        out = []
        for _ in range(steps):
            d = decide.step(self.snapshot(**over))
            self.apply(d)
            out.append(d)
            if not d.again:
                break
            self.now += timedelta(seconds=1)
        return out


def world(target: str = "Enforced", **over: Any) -> World:
    return World(spec(targetPhase=target, **over), zone={(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT})


def kinds(d: dc.Decision) -> list[str]:
    """The writes of a decision in order (metrics left out)."""
    return [type(a).__name__ for a in d.actions if not isinstance(a, (dc.GateMetrics, dc.CountTransition))]


def cond(status: DnsCutoverStatus, type_: str) -> tuple[str, str]:
    c = get_condition(status.conditions, type_)
    assert c is not None, type_
    return c.status, c.reason


# ------------------------------------------------------------------------------------ phases
@pytest.mark.parametrize(
    ("target", "mx_ttl", "mx", "spf_has_new"),
    [
        ("Planned", 3600, "10 mx.old.test.", False),
        ("TTLLowered", 60, "10 mx.old.test.", False),
        ("Staged", 60, "10 mx.old.test.", True),
        ("Switched", 60, "10 mx1.dest.test.", True),
        ("Enforced", 3600, "10 mx1.dest.test.", True),
    ],
)
def test_each_phase_writes_its_records(target: str, mx_ttl: int, mx: str, spf_has_new: bool) -> None:
    w = world(target)
    w.run(steps=30)
    assert w.status.phase == target
    assert w.zone[(D, "MX")] == RRset(name=D, type="MX", ttl=mx_ttl, records=[mx])
    apex = txt_values(w.zone[(D, "TXT")])
    assert "MS=ms1234" in apex
    assert any("include:spf.dest.test" in v for v in apex) is spf_has_new
    if target == "Enforced":
        assert w.status.dmarc_stage == 2  # every DMARC stage walked
        assert not any("spf.old.test" in v for v in apex)


def test_advancing_saves_phase_and_snapshot_before_any_record() -> None:
    w = world("TTLLowered")
    d = decide.step(w.snapshot())
    assert kinds(d)[0] == "SaveStatus" and "WriteRRset" in kinds(d) and kinds(d)[-1] == "SaveStatus"
    first = next(a for a in d.actions if isinstance(a, dc.SaveStatus))
    assert isinstance(first, dc.SaveStatus) and first.status.phase == "TTLLowered"
    assert [r for s in first.status.snapshots for r in s.rrsets if r.type == "MX"] == [OLD_MX]
    assert any(e.reason == "PhaseChanged" for e in d.events)
    assert dc.CountTransition("forward") in d.actions and d.again


def test_a_phase_a_crash_interrupted_is_finished_without_evaluating_gates() -> None:
    w = world("Staged", gates={"staged": [{"name": "wait", "type": "minDuration", "duration": "1h"}]})
    d = decide.step(w.snapshot())
    w.status = next(a.status for a in d.actions if isinstance(a, dc.SaveStatus))  # crash: no record written
    d = decide.step(w.snapshot())
    assert kinds(d) == ["WriteRRset", "WriteRRset"] and d.again  # MX and apex TXT lowered, nothing else
    assert d.status.gates == []
    w.apply(d)
    d = decide.step(w.snapshot())
    assert not any(isinstance(a, dc.WriteRRset) for a in d.actions)  # nothing written twice
    assert [g.result for g in d.status.gates if not g.builtin] == ["Pending"]


# ------------------------------------------------------------------------------------- gates
LAG_GATE = {"switched": [{"name": "lag", "type": "syncLag", "syncLag": {"maxSeconds": 60}}]}


def at_staged(**over: Any) -> World:
    w = world("Switched", gates=LAG_GATE, migrationRef={"name": "mig"}, **over)
    w.run(steps=20, gate_observations={"lag": ev.LagObservation(found=True, max_seconds=3600)})
    assert w.status.phase == "Staged"
    return w


@pytest.mark.parametrize(
    ("observation", "phase", "result", "stalled", "paused", "event"),
    [
        (ev.LagObservation(found=True, max_seconds=5), "Switched", None, "False", "False", None),
        (ev.LagObservation(found=True, max_seconds=3600), "Staged", "Failed", "True", "False", "GateFailed"),
        (ev.LagObservation(found=True, error="HTTP 500"), "Staged", "Inconclusive", "False", "True", None),
        (ev.LagObservation(found=True), "Staged", "Inconclusive", "False", "True", None),
        (ev.LagObservation(found=False), "Staged", "Failed", "True", "False", "GateFailed"),
    ],
)
def test_gate_outcomes(
    observation: ev.LagObservation,
    phase: str,
    result: str | None,
    stalled: str,
    paused: str,
    event: str | None,
) -> None:
    w = at_staged()
    w.status.gates = []
    w.status.conditions = []
    ds = w.run(gate_observations={"lag": observation})
    assert w.status.phase == phase
    if result is not None:
        assert [g.result for g in w.status.gates if not g.builtin] == [result]
        assert not any(isinstance(a, dc.WriteRRset) for d in ds for a in d.actions)
        assert w.zone[(D, "MX")].records == ["10 mx.old.test."]  # type: ignore[union-attr]
    assert cond(w.status, "Stalled")[0] == stalled
    assert cond(w.status, "Paused")[0] == paused
    assert [e.reason for d in ds for e in d.events if e.type == "Warning"] == ([event] if event else [])


def test_a_failed_gate_is_announced_once() -> None:
    w = at_staged()
    obs = {"lag": ev.LagObservation(found=True, max_seconds=3600)}
    again = decide.step(w.snapshot(gate_observations=obs))
    assert again.events == []  # at_staged already stalled on the same gate


def test_pending_gate_waits() -> None:
    w = world(
        "TTLLowered", gates={"ttlLowered": [{"name": "wait", "type": "minDuration", "duration": "10m"}]}
    )
    w.run()
    assert w.status.phase == "Planned" and cond(w.status, "Paused") == ("True", "WaitingForGates")
    waiting = frame.finish(w.status, w.spec, 1, had_problem=False)
    assert (
        cond(waiting, "Ready") == ("False", "WaitingForGates") and cond(waiting, "Reconciling")[0] == "False"
    )
    w.now = T0 + timedelta(minutes=11)
    w.run()
    assert w.status.phase == "TTLLowered"


def test_manual_approval_by_annotation() -> None:
    w = world("TTLLowered", gates={"ttlLowered": [{"name": "ok", "type": "manualApproval"}]})
    w.run()
    assert w.status.phase == "Planned"
    w.run(annotations={sn.APPROVAL_ANNOTATION: "TTLLowered"})
    assert w.status.phase == "TTLLowered"


def test_a_forward_problem_stops_before_anything_is_written() -> None:
    w = world("TTLLowered")
    with pytest.raises(sn.SpecProblem, match="mig"):
        decide.step(w.snapshot(forward_problem=Problem("MigrationNotFound", "MailMigration mig not found")))


def test_dry_run_plans_without_writing() -> None:
    w = world("Switched", dryRun=True)
    ds = w.run()
    assert not any(isinstance(a, (dc.WriteRRset, dc.SaveStatus)) for d in ds for a in d.actions)
    assert w.status.plan is not None and w.status.plan.to_phase == "TTLLowered"
    assert cond(w.status, "Paused") == ("True", "DryRun")


# ------------------------------------------------------------------------------------ rollback
def test_rollback_restores_each_snapshot_before_forgetting_it() -> None:
    w = world("Switched")
    w.run(steps=30)
    assert w.status.phase == "Switched"
    w.spec = spec(targetPhase="Planned")
    d = decide.step(w.snapshot())
    assert kinds(d)[0] == "WriteRRset" and kinds(d)[-1] == "SaveStatus"  # restore, then forget
    assert d.status.phase == "Staged" and not any(s.phase == "Switched" for s in d.status.snapshots)
    assert d.status.switched_at is None and cond(d.status, "RolledBack")[0] == "True"
    w.apply(d)
    w.run(steps=10)
    assert w.status.phase == "Planned" and w.status.snapshots == []
    assert rrset_equal(w.zone[(D, "MX")], OLD_MX) and rrset_equal(w.zone[(D, "TXT")], OLD_TXT)  # exact
    assert w.status.ttl_lowered_at is None


def test_ready_at_target_is_computed_the_flux_way() -> None:
    w = world("TTLLowered")
    w.run()
    done = frame.finish(w.status, w.spec, 1, had_problem=False)
    assert cond(done, "Ready") == ("True", "AtTargetPhase")
    stalled, _ = frame.problem(done, "ProviderUnreachable", "no answer", 1, T0)
    assert cond(frame.finish(stalled, w.spec, 1, had_problem=True), "Ready") == (
        "False",
        "ProviderUnreachable",
    )


def test_missing_dkim_key_is_created_first() -> None:
    dkim = {"selectors": [{"name": "mf1"}]}
    w = World(
        spec(targetPhase="Staged", records={"mx": [{"host": "mx1.dest.test", "priority": 10}], "dkim": dkim})
    )
    d = decide.step(w.snapshot(dkim_secrets={"mf1": sn.DkimSecret("cut-dkim-mf1", exists=False)}))
    assert d.actions == [dc.CreateDkimKey("mf1", "rsa", "cut-dkim-mf1")] and d.again
