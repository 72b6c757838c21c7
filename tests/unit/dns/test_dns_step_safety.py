"""The cutover safety of the pure step (DESIGN.md "Cutover safety"), without servers: built-in gates that
hold a DnsCutover with no `gates`, Skipped with who/why, switchedAt/drainUntil, foreign TXT values that
survive every phase and rollback, drift reported and not written back, MTA-STS rollback senders see."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_dns_step import OLD_MX, OLD_TXT, T0, D, World, cond, kinds, spec

from mailferry_api.conditions import get_condition
from mailferry_api.dnscutover import DnsCutoverStatus, RRset
from mailferry_operator.dns.rrset import rrset_equal, txt_values
from mailferry_operator.dnscutover import decide, frame
from mailferry_operator.dnscutover import draft as dc
from mailferry_operator.dnscutover import snapshot as sn
from mailferry_operator.gates import evaluate as ev
from mailferry_operator.mtasts import policy as mtasts

SERVED = ev.DnsObservation(problems={"127.0.0.1:53": [], "127.0.0.2:53": []}, checked=1)
NOT_YET = ev.DnsObservation(problems={"127.0.0.1:53": [], "127.0.0.2:53": ["example.test. MX differs"]})
DKIM = {"selectors": [{"name": "dest1", "source": "cname", "cnameTarget": "dest1.dkim.dest.test"}]}
RECORDS = {
    "mx": [{"host": "mx1.dest.test", "priority": 10}],
    "spf": {"include": ["spf.dest.test"]},
    "dkim": DKIM,
}
ALL_SEEN: dict[str, Any] = {
    "served": SERVED,
    "dkim_served": SERVED,
    "mx_served": SERVED,
    "soa_negative_ttl": 300,
}


def safe_world(target: str = "Switched", **over: Any) -> World:
    """A DnsCutover with no gates and no safety field: the production defaults."""
    w = World(spec(targetPhase=target, **({"safety": {}, "records": RECORDS} | over)))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    return w


def builtin(w: World) -> dict[str, str]:
    return {g.name: g.result for g in w.status.gates if g.builtin}


def test_no_gates_still_waits_for_verification_dwell_and_the_old_ttl() -> None:
    w = safe_world()
    w.run(**ALL_SEEN | {"served": None})
    assert w.status.phase == "TTLLowered" and builtin(w)["recordsServed"] == "Inconclusive"
    assert w.status.ttl_lowered_at is None  # not counted before every nameserver serves the lowered TTL
    w.now += timedelta(minutes=5)
    w.run(**ALL_SEEN)
    lowered = w.status.ttl_lowered_at
    assert w.status.phase == "Staged" and lowered is not None and lowered >= T0 + timedelta(minutes=5)
    w.now += timedelta(minutes=1)
    w.run(**ALL_SEEN)
    assert w.status.phase == "Staged"
    assert builtin(w) == {
        "minDwell": "Pending",  # Staged >= 24h by default
        "recordsServed": "Passed",
        "oldTtl": "Pending",
        "dkimVerified": "Passed",
    }
    w.now = lowered + timedelta(hours=24, seconds=70)
    w.run(**ALL_SEEN | {"mx_served": NOT_YET})
    assert w.status.phase == "Switched"
    held = w.status.history[-1].message
    assert "held by minDwell" in held and "oldTtl" in held


def test_dkim_of_the_destination_must_be_published() -> None:
    w = safe_world(records={"mx": [{"host": "mx1.dest.test", "priority": 10}]})
    w.status = w.status.model_copy(update={"phase": "Staged", "phase_entered_at": T0, "ttl_lowered_at": T0})
    w.now = T0 + timedelta(days=2)
    w.run(**ALL_SEEN)
    assert w.status.phase == "Staged" and builtin(w)["dkimVerified"] == "Failed"
    assert cond(w.status, "Stalled") == ("True", "GateFailed")


def test_migration_must_be_in_sync_before_the_switch() -> None:
    w = safe_world(migrationRef={"name": "mig"})
    w.status = w.status.model_copy(update={"phase": "Staged", "phase_entered_at": T0, "ttl_lowered_at": T0})
    w.now = T0 + timedelta(days=2)
    lag = ev.LagObservation(found=True, max_seconds=10)
    w.run(**ALL_SEEN, migration=sn.MigrationView(found=True, phase="Syncing", lag=lag))
    assert w.status.phase == "Staged" and builtin(w)["migrationInSync"] == "Pending"
    w.run(**ALL_SEEN, migration=sn.MigrationView(found=True, phase="InSync", in_sync=True, lag=lag))
    assert w.status.phase == "Switched"


def test_a_skipped_gate_says_who_and_why() -> None:
    skip = [{"gate": "minDwell", "by": "ops@example.test", "reason": "a test zone nobody uses"}]
    w = World(spec(targetPhase="Staged", records=RECORDS))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=30)
    w.spec = spec(targetPhase="Switched", records=RECORDS, safety={"skip": skip})
    w.status = w.status.model_copy(update={"ttl_lowered_at": T0})
    w.now = T0 + timedelta(minutes=10)
    d = decide.step(w.snapshot(**ALL_SEEN))  # the old TTL (3600 s) still holds it
    dwell = next(g for g in d.status.gates if g.name == "minDwell")
    assert (
        dwell.result == "Skipped" and dwell.message == "skipped by ops@example.test: a test zone nobody uses"
    )
    w.apply(d)
    w.now = T0 + timedelta(hours=1, minutes=1)
    w.run(**ALL_SEEN)
    assert w.status.phase == "Switched"


def test_switched_at_when_every_server_serves_the_mx_and_drain_until_after() -> None:
    w = safe_world()
    w.spec = spec(
        targetPhase="Switched", records=RECORDS
    )  # the built-in gates skipped, but for recordsServed
    w.spec.safety.skip = [s for s in w.spec.safety.skip if s.gate != "recordsServed"]
    w.run(steps=30, **ALL_SEEN | {"mx_served": NOT_YET})
    assert w.status.phase == "Switched" and w.status.switched_at is None and w.status.drain_until is None
    w.now += timedelta(minutes=1)
    w.run(**ALL_SEEN)
    assert w.status.switched_at == w.now
    # the MX TTL in force at the switch was the lowered 60 s: the 1 h drain minimum wins
    assert w.status.drain_until == w.now + timedelta(hours=1)
    w.spec = spec(targetPhase="Staged", records=RECORDS)
    w.run(**ALL_SEEN)
    assert w.status.phase == "Staged" and w.status.switched_at is None and w.status.drain_until is None


def test_drain_is_twice_the_mx_ttl_when_longer_than_the_minimum() -> None:
    w = World(spec(targetPhase="Switched", records=RECORDS, ttl={"lowered": 3600, "normal": 7200}))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=30, **ALL_SEEN)
    assert w.status.drain_until is not None and w.status.switched_at is not None
    assert w.status.drain_until - w.status.switched_at == timedelta(hours=2)


def test_foreign_txt_added_mid_cutover_survives_forward_and_rollback() -> None:
    w = World(spec(targetPhase="Staged"))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=30)
    apex = w.zone[(D, "TXT")]
    assert apex is not None
    w.zone[(D, "TXT")] = apex.model_copy(
        update={"records": [*apex.records, '"google-site-verification=xyz"']}
    )
    w.spec = spec(targetPhase="Enforced")
    w.run(steps=30)
    assert w.status.phase == "Enforced" and "google-site-verification=xyz" in txt_values(w.zone[(D, "TXT")])
    w.spec = spec(targetPhase="Planned")
    w.run(steps=30)
    assert w.status.phase == "Planned"
    assert sorted(txt_values(w.zone[(D, "TXT")])) == sorted(
        [*txt_values(OLD_TXT), "google-site-verification=xyz"]
    )
    assert rrset_equal(w.zone[(D, "MX")], OLD_MX)


def test_drift_is_reported_not_written_back() -> None:
    w = World(spec(targetPhase="TTLLowered"))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run()
    w.status.observed_generation = 1
    w.zone[(D, "MX")] = RRset(name=D, type="MX", ttl=60, records=["10 mx.someone-else.test."])
    d = decide.step(w.snapshot())
    assert kinds(d) == [] and d.status.drifted == [f"{D} MX"]
    assert cond(d.status, "Drifted")[0] == "True" and cond(d.status, "Paused")[1] == "Drifted"
    assert [e.reason for e in d.events] == ["Drifted"]
    w.apply(d)
    assert decide.step(w.snapshot()).events == []  # announced once
    w.spec.safety.drift = "revert"
    d = decide.step(w.snapshot())
    assert "WriteRRset" in kinds(d) and any(e.reason == "DriftReverted" for e in d.events)


def test_a_spec_change_is_no_drift() -> None:
    w = World(spec(targetPhase="TTLLowered"))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run()
    w.status.observed_generation = 1
    w.spec = spec(targetPhase="TTLLowered", ttl={"lowered": 120, "normal": 3600})
    d = decide.step(w.snapshot(generation=2))
    assert "WriteRRset" in kinds(d) and d.status.drifted == []


def test_mta_sts_rollback_serves_mode_none_under_a_new_id_and_keeps_the_txt() -> None:
    records = {**RECORDS, "mtaSts": {"maxAgeSeconds": 86400}}
    w = World(spec(targetPhase="Enforced", records=records))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=40)
    name = "_mta-sts." + D
    enforce_id = w.status.mta_sts.id if w.status.mta_sts else ""
    assert w.status.mta_sts is not None and w.status.mta_sts.mode == "enforce"
    assert w.status.mta_sts.enforce_cached_until is not None
    w.spec = spec(targetPhase="Planned", records=records)
    ds = w.run(steps=40)
    assert w.status.phase == "Planned"
    published = [a.policy for d in ds for a in d.actions if isinstance(a, dc.PublishMtaSts)]
    assert mtasts.parse(published[-1])["mode"] == ["none"]
    txt = w.zone[(name, "TXT")]
    assert txt is not None and txt_values(txt) == [mtasts.txt_value(published[-1])]  # kept, new id
    assert enforce_id not in txt_values(txt)[0]
    assert w.status.mta_sts.mode == "none" and w.status.mta_sts.longest_max_age_seconds == 604800
    for d in ds:  # the policy is served before the TXT id announcing it changes
        order = kinds(d)
        if "WriteRRset" in order and "PublishMtaSts" in order:
            assert order.index("PublishMtaSts") < order.index("WriteRRset")
    assert "WriteRRset" not in kinds(decide.step(w.snapshot()))  # at Planned the kept TXT is no drift


# ----------------------------------------------------------------- a stalled retry does not flap
@pytest.mark.parametrize(
    ("generation", "stalled_by", "ready_while_writing"),
    [
        (1, "ConfigMapConflict", {"False"}),  # the same generation retried: Stalled, Ready=False throughout
        (2, "ConfigMapConflict", {"Unknown"}),  # a new spec makes progress: Reconciling, Ready=Unknown
        (1, "GateFailed", {"Unknown"}),  # the gate that stalled it passed: progress
    ],
)
def test_a_stalled_retry_keeps_ready_false_while_it_writes(
    generation: int, stalled_by: str, ready_while_writing: set[str]
) -> None:
    w = World(spec(targetPhase="Staged", records={**RECORDS, "mtaSts": {}}))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=1)  # TTLLowered
    stalled, _ = frame.problem(w.status, stalled_by, "ConfigMap cut-mta-sts is another object's", 1, T0)
    w.status = frame.finish(stalled, w.spec, 1, had_problem=True)
    assert cond(w.status, "Ready") == ("False", stalled_by) and cond(w.status, "Reconciling")[0] == "False"
    d = decide.step(w.snapshot(generation=generation))  # the retry advances to Staged, then its write fails
    saves = [a.status for a in d.actions if isinstance(a, dc.SaveStatus)]
    assert saves and saves[0].phase == "Staged"
    assert {cond(st, "Ready")[0] for st in saves} == ready_while_writing
    if ready_while_writing == {"False"}:
        assert all(cond(st, "Stalled") == ("True", stalled_by) for st in saves)
        assert all(get_condition(st.conditions, "Reconciling").status != "True" for st in saves)  # type: ignore[union-attr]
    # the handler ends it from the last saved status: Stalled again, Ready False, phase kept
    again, _ = frame.problem(
        saves[-1], stalled_by, "ConfigMap cut-mta-sts is another object's", generation, T0
    )
    end = frame.finish(again, w.spec, generation, had_problem=True)
    assert (
        end.phase == "Staged" and cond(end, "Ready")[0] == "False" and cond(end, "Reconciling")[0] == "False"
    )


# ---------------------------------------------------- the old MX leave MTA-STS after the drain only
def _switched_with_mta_sts(target: str = "Switched") -> World:
    records = {**RECORDS, "mtaSts": {"maxAgeSeconds": 86400}}
    w = World(spec(targetPhase=target, records=records))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=40, **ALL_SEEN)
    assert w.status.phase == target and w.status.drain_until is not None
    return w


def _policies(ds: list[dc.Decision]) -> list[str]:
    return [a.policy for d in ds for a in d.actions if isinstance(a, dc.PublishMtaSts)]


@pytest.mark.parametrize(
    ("after_drain", "old_mx_listed"),
    [(timedelta(seconds=-1), True), (timedelta(0), False), (timedelta(days=3), False)],
)
@pytest.mark.parametrize("target", ["Switched", "Enforced"])
def test_the_old_mx_leave_the_mta_sts_policy_once_the_switch_drained(
    target: str, after_drain: timedelta, old_mx_listed: bool
) -> None:
    w = _switched_with_mta_sts(target)
    mta = w.status.mta_sts
    assert mta is not None and w.status.drain_until is not None
    txt = w.zone[("_mta-sts." + D, "TXT")]
    assert txt is not None and txt_values(txt) == [f"v=STSv1; id={mta.id}"]
    w.now = w.status.drain_until + after_drain
    ds = w.run(**ALL_SEEN)
    assert w.status.drifted == [] and cond(w.status, "Drifted")[0] == "False"  # the clock is no drift
    mta_now = w.status.mta_sts
    assert mta_now is not None and (mta_now.id == mta.id) is old_mx_listed
    policy = _policies(ds)[-1]
    assert ("mx: mx.old.test" in policy) is old_mx_listed and "mx: mx1.dest.test" in policy
    assert mtasts.policy_id(policy) == mta_now.id
    txt = w.zone[("_mta-sts." + D, "TXT")]
    assert txt is not None and txt_values(txt) == [f"v=STSv1; id={mta_now.id}"]  # the TXT id follows
    if not old_mx_listed:
        d = next(d for d in ds if any(isinstance(a, dc.WriteRRset) for a in d.actions))
        # (the phase's snapshot may first gain the TXT) the policy's expiry stored, served, announced
        assert (
            kinds(d)[-3:] == ["SaveStatus", "PublishMtaSts", "WriteRRset"]
            and kinds(d).count("WriteRRset") == 1
        )
        assert "WriteRRset" not in kinds(decide.step(w.snapshot(**ALL_SEEN)))  # written once


# ------------------------------------------- `_mta-sts` stays while a sender may hold a policy
@pytest.mark.parametrize(
    ("left", "longest"),
    [("Enforced", 604800), ("Switched", 86400), ("Staged", 86400)],
)
def test_mta_sts_stays_until_every_policy_a_sender_may_hold_expired(left: str, longest: int) -> None:
    records = {**RECORDS, "mtaSts": {"maxAgeSeconds": 86400}}
    w = World(spec(targetPhase=left, records=records))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    w.run(steps=40, **ALL_SEEN)
    w.now += timedelta(hours=5)  # the last policy served is served until the rollback
    w.spec = spec(targetPhase="Planned", records=records)
    rolled_at = w.now
    w.run(steps=40)
    name = "_mta-sts." + D
    mta = w.status.mta_sts
    assert w.status.phase == "Planned" and mta is not None and mta.mode == "none"
    assert mta.longest_max_age_seconds == longest
    until = mta.enforce_cached_until
    assert until is not None and rolled_at <= until - timedelta(seconds=longest) <= w.now  # from the rollback
    for at, kept in (
        (until - timedelta(seconds=1), True),
        (until, False),
        (until + timedelta(days=1), False),
    ):
        probe = World(w.spec, zone=dict(w.zone), status=w.status.model_copy(deep=True), now=at)
        ds = probe.run()
        assert (probe.zone.get((name, "TXT")) is not None) is kept, at
        assert (probe.status.mta_sts is not None) is kept and probe.status.drifted == []
        assert not _policies(ds) or kept  # nothing new is published once it went
        if not kept:
            assert rrset_equal(probe.zone[(D, "MX")], OLD_MX) and probe.zone[(D, "TXT")] == OLD_TXT
            # a crash after the delete, before the status: the next step only forgets it
            crashed = World(w.spec, zone=dict(probe.zone), status=w.status.model_copy(deep=True), now=at)
            d = decide.step(crashed.snapshot())
            assert "WriteRRset" not in kinds(d) and d.status.mta_sts is None


def test_the_expiry_is_stored_before_a_sender_can_fetch_a_policy() -> None:
    """Each policy published is, by then, in a stored status with until when it may be cached."""
    records = {**RECORDS, "mtaSts": {"maxAgeSeconds": 86400}}
    w = World(spec(targetPhase="Enforced", records=records))
    w.zone = {(D, "MX"): OLD_MX, (D, "TXT"): OLD_TXT}
    stored: DnsCutoverStatus | None = None
    published = 0
    for d in w.run(steps=40, **ALL_SEEN):
        for a in d.actions:
            if isinstance(a, dc.SaveStatus):
                stored = a.status
            elif isinstance(a, dc.PublishMtaSts):
                published += 1
                assert stored is not None and stored.mta_sts is not None
                assert stored.mta_sts.policy_sha256 == mtasts.policy_sha256(a.policy)
                assert stored.mta_sts.enforce_cached_until is not None
        stored = d.status  # the handler stores it at the end of the reconcile
    assert published >= 4  # testing at Staged and Switched, enforce at each DMARC stage
