"""Gate evaluation alone (pure): observations in, GateStatus out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailferry_api.dnscutover import Gate
from mailferry_operator.gates import evaluate as ev

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def gate(**kw: object) -> Gate:
    return Gate.model_validate(kw)


def prom(**kw: object) -> Gate:
    cfg = {"address": "http://p", "query": "q", "thresholdRange": {"max": 0.02}, **kw}
    return gate(name="bounces", type="prometheus", prometheus=cfg)


def test_parse_duration() -> None:
    assert ev.parse_duration("1h30m") == timedelta(minutes=90)
    assert ev.parse_duration("500ms") == timedelta(milliseconds=500)


def test_sync_lag() -> None:
    g = gate(name="lag", type="syncLag", syncLag={"maxSeconds": 60, "maxPendingMessages": 5})
    st = ev.fresh(g, "Switched")
    assert ev.sync_lag(g, st, ev.LagObservation(True, 30, 2), T0).result == "Passed"
    over = ev.sync_lag(g, st, ev.LagObservation(True, 120, 0), T0)
    assert (
        over.result == "Failed"
        and "120s" in over.message
        and over.measurements[-1].value == "lag 120s, 0 pending"
    )
    assert ev.sync_lag(g, st, ev.LagObservation(True, 10, 6), T0).result == "Failed"
    assert ev.sync_lag(g, st, ev.LagObservation(True), T0).result == "Inconclusive"
    assert ev.sync_lag(g, st, ev.LagObservation(False), T0).result == "Failed"


def test_dns_record_every_nameserver() -> None:
    g = gate(name="dns", type="dnsRecord")
    st = ev.fresh(g, "Switched")
    ok = ev.DnsObservation(problems={"ns1": [], "ns2": []}, checked=3)
    assert ev.dns_record(g, st, ok, T0).result == "Passed"
    one_missing = ev.DnsObservation(problems={"ns1": [], "ns2": ["mf1._domainkey.x. TXT missing"]}, checked=3)
    res = ev.dns_record(g, st, one_missing, T0)
    assert res.result == "Failed" and "ns2" in res.message and "ns1:" not in res.message
    down = ev.DnsObservation(problems={"ns1": []}, unreachable={"ns2": "timeout"})
    assert ev.dns_record(g, st, down, T0).result == "Inconclusive"


def test_ttl_elapsed_and_min_duration() -> None:
    g = gate(name="ttl", type="ttlElapsed")
    st = ev.fresh(g, "Staged")
    assert ev.ttl_elapsed(st, T0, 300, T0 + timedelta(seconds=299)).result == "Pending"
    assert ev.ttl_elapsed(st, T0, 300, T0 + timedelta(seconds=300)).result == "Passed"
    assert ev.ttl_elapsed(st, None, 300, T0).result == "Pending"
    m = gate(name="soak", type="minDuration", duration="10m")
    assert ev.min_duration(m, ev.fresh(m, "Enforced"), T0, T0 + timedelta(minutes=9)).result == "Pending"
    assert ev.min_duration(m, ev.fresh(m, "Enforced"), T0, T0 + timedelta(minutes=10)).result == "Passed"


def test_manual_approval() -> None:
    g = gate(name="ok", type="manualApproval")
    st = ev.fresh(g, "Switched")
    assert ev.manual_approval(st, "Switched", None, T0).result == "Pending"
    assert ev.manual_approval(st, "Switched", "Staged", T0).result == "Pending"
    assert ev.manual_approval(st, "Switched", "Switched", T0).result == "Passed"
    assert ev.manual_approval(st, "Switched", "Enforced", T0).result == "Passed"


def test_prometheus_count_and_consecutive_successes() -> None:
    g = prom(count=3, consecutiveSuccessLimit=2, failureLimit=1, interval="30s")
    st = ev.fresh(g, "Enforced")
    assert ev.prometheus_due(g, st, T0)
    st = ev.prometheus(g, st, ev.PromObservation([0.01]), T0)
    assert st.result == "Pending" and st.successes == 1
    assert not ev.prometheus_due(g, st, T0 + timedelta(seconds=10))
    assert ev.prometheus_due(g, st, T0 + timedelta(seconds=30))
    st = ev.prometheus(g, st, ev.PromObservation([0.05]), T0 + timedelta(seconds=30))
    assert st.result == "Pending" and st.failures == 1 and st.consecutive_successes == 0
    st = ev.prometheus(g, st, ev.PromObservation([0.0]), T0 + timedelta(seconds=60))
    assert st.result == "Pending"  # 3 measurements but only 1 success in a row
    st = ev.prometheus(g, st, ev.PromObservation([0.0]), T0 + timedelta(seconds=90))
    assert st.result == "Passed" and len(st.measurements) == 4
    assert not ev.prometheus_due(g, st, T0 + timedelta(hours=1))


def test_prometheus_failure_limit_and_no_data() -> None:
    g = prom()
    st = ev.prometheus(g, ev.fresh(g, "Switched"), ev.PromObservation([0.03]), T0)
    assert st.result == "Failed" and "0.03" in st.message and "failureLimit 0" in st.message
    nd = ev.prometheus(g, ev.fresh(g, "Switched"), ev.PromObservation([]), T0)
    assert nd.result == "Inconclusive" and nd.message == "the query returned no data"
    assert (
        ev.prometheus(prom(onNoData="fail"), ev.fresh(g, "Staged"), ev.PromObservation(None), T0).result
        == "Failed"
    )
    assert (
        ev.prometheus(prom(onNoData="pass"), ev.fresh(g, "Staged"), ev.PromObservation(None), T0).result
        == "Passed"
    )
    assert (
        ev.prometheus(g, ev.fresh(g, "Staged"), ev.PromObservation(error="HTTP 500"), T0).result
        == "Inconclusive"
    )
    assert (
        ev.prometheus(
            prom(thresholdRange={"min": 0.9}), ev.fresh(g, "Staged"), ev.PromObservation([0.5]), T0
        ).result
        == "Failed"
    )


def test_summarize_failed_beats_inconclusive_beats_waiting() -> None:
    g = gate(name="a", type="minDuration", duration="1s")
    s = ev.fresh(g, "Staged")
    passed = s.model_copy(update={"result": "Passed"})
    failed = s.model_copy(update={"result": "Failed", "name": "f", "message": "bad"})
    inc = s.model_copy(update={"result": "Inconclusive", "name": "i"})
    pending = s.model_copy(update={"result": "Pending", "name": "p"})
    assert ev.summarize([passed])[0] == "Passed"
    assert ev.summarize([])[0] == "Passed"
    assert ev.summarize([passed, pending])[0] == "Waiting"
    assert ev.summarize([pending, inc])[0] == "Inconclusive"
    assert ev.summarize([inc, failed])[0] == "Failed"
    assert ev.summarize([inc, failed])[1] == "f: bad"
