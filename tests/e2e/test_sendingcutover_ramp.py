"""A SendingCutover ramp driven by generated, signed ESP events, end to end: the real ESP endpoint, a real
Prometheus scraping it, a real API server, PowerDNS serving the sending records, the operator as a
subprocess that is SIGKILLed and restarted in every step.

The ramp (10 % → 50 % → 100 %, at least 50 events to judge): starts once the records are served; holds
on too few events; advances on good rates; steps back on a complaint spike (0.17 %); reaches 100 % (the
key swap); hard-stops on 5 % bounces (weight 0, the old key back). After every step: the decision in
status history and as an Event, and the application's Secret as the step says, also after the kill.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.esp import EspEndpoint
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "sending"))
from sending_harness import (
    SendingOperator,
    at_weight,
    condition,
    esp_stack,
    events_for,
    expect_secret,
    manifest,
    provider_keys,
    wait_sc,
    waiting_for,
)

_n = itertools.count()
# about two minutes of real timers and restarts: part of `make chaos`, not of `make test`
pytestmark = pytest.mark.skipif(
    not os.environ.get("MAILFERRY_SENDING_KILLS"),
    reason="long scenario: run by `make chaos` (or set MAILFERRY_SENDING_KILLS=1)",
)


@pytest.fixture(scope="module")
def esp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EspEndpoint, Prometheus]]:
    yield from esp_stack(tmp_path_factory, "sending-e2e", "send.example.com")


def sending_zone(pdns: PowerDNS) -> tuple[str, list[dict[str, Any]]]:
    zone = f"send{next(_n)}.test."
    pdns.create_zone(zone, [("@", "MX", 60, ["10 mx.old.test."])])
    pdns.set_rrset(zone, "em123", "CNAME", 300, "u123.wl.sendgrid.net.")
    pdns.set_rrset(zone, "s1._domainkey", "CNAME", 300, "s1.domainkey.u123.wl.sendgrid.net.")
    records = [
        {"name": "em123", "type": "CNAME", "value": "u123.wl.sendgrid.net."},
        {"name": "s1._domainkey", "type": "CNAME", "value": "s1.domainkey.u123.wl.sendgrid.net."},
    ]
    return zone, records


def history(obj: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(h["decision"], h["fromWeight"], h["toWeight"]) for h in obj["status"].get("history", [])]


def test_ramp_driven_by_events_with_an_operator_kill_in_every_step(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, esp: tuple[EspEndpoint, Prometheus], tmp_path: Path
) -> None:
    endpoint, prom = esp
    zone, records = sending_zone(powerdns)
    provider_keys(kube, namespace)
    # one record not served yet: the ramp does not start
    missing = [*records, {"name": "bounce", "type": "CNAME", "value": "feedback.sendgrid.net."}]
    spec = manifest(
        "ramp",
        "send.example.com",
        prom.url,
        records=missing,
        recordCheck={"nameservers": [f"{powerdns.host}:{powerdns.port}"], "zone": zone.rstrip(".")},
    )
    op = SendingOperator(kube, namespace, tmp_path).start()
    kube.apply(spec, namespace=namespace)
    name = "ramp"

    def wait(check: Any, what: str, timeout: float = 60) -> dict[str, Any]:
        return wait_sc(kube, namespace, name, check, what, op, timeout)

    obj = wait(waiting_for("RecordsNotVerified"), "held for the missing bounce CNAME")
    assert condition(obj, "RecordsVerified")["status"] == "False"
    assert "bounce" in condition(obj, "RecordsVerified")["message"]
    assert obj["status"]["weight"] == 0
    powerdns.set_rrset(zone, "bounce", "CNAME", 300, "feedback.sendgrid.net.")

    obj = wait(at_weight(10), "first step once every record is served")
    assert history(obj) == [("Advance", 0, 10)]
    expect_secret(kube, namespace, 10, primary_new=False)
    op.restart()
    expect_secret(kube, namespace, 10, primary_new=False)

    # too few events: hold
    endpoint.send("generic", ["delivered"] * 20)
    obj = wait(
        lambda o: waiting_for("TooFewEvents")(o) and o["status"]["lastMeasurement"]["events"] == 20,
        "held on 20 of 50 events",
    )
    assert obj["status"]["weight"] == 10
    # good rates: advance (one request, so one scrape sees all of it)
    endpoint.send("generic", ["delivered"] * 78 + ["bounced"])
    obj = wait(at_weight(50), "advance on good rates")
    assert history(obj)[-1] == ("Advance", 10, 50)
    expect_secret(kube, namespace, 50, primary_new=False)
    op.restart()
    expect_secret(kube, namespace, 50, primary_new=False)

    # a complaint spike (1 in 600: 0.17 % ≥ 0.1 %, < 0.3 %): one step back
    endpoint.send("generic", ["delivered"] * 600 + ["complained"])
    obj = wait(lambda o: history(o)[-1][0] == "StepBack", "step back on complaints")
    assert history(obj)[-1] == ("StepBack", 50, 10)
    assert obj["status"]["weight"] == 10
    expect_secret(kube, namespace, 10, primary_new=False)
    op.restart()
    expect_secret(kube, namespace, 10, primary_new=False)

    # the spike is behind the new step's baseline: good events take it up again, then to 100 % (key swap)
    endpoint.send("generic", ["delivered"] * 100)
    wait(at_weight(50), "advance again after the step back")
    endpoint.send("generic", ["delivered"] * 100)
    obj = wait(at_weight(100), "advance to 100 %")
    assert obj["status"]["phase"] == "Complete"
    expect_secret(kube, namespace, 100, primary_new=True)
    op.restart()
    expect_secret(kube, namespace, 100, primary_new=True)

    # 5 % hard bounces: hard stop, weight 0, the old key back
    endpoint.send("generic", ["delivered"] * 95 + ["bounced"] * 5)
    obj = wait(lambda o: o["status"].get("phase") == "HardStopped", "hard stop at 5 % bounces")
    assert history(obj)[-1] == ("HardStop", 100, 0)
    assert condition(obj, "HardStopped")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "False"
    expect_secret(kube, namespace, 0, primary_new=False)
    op.restart()
    expect_secret(kube, namespace, 0, primary_new=False)
    obj = wait(lambda o: o["status"].get("phase") == "HardStopped", "still stopped after the restart")
    assert obj["status"]["weight"] == 0

    assert history(obj) == [
        ("Advance", 0, 10),
        ("Advance", 10, 50),
        ("StepBack", 50, 10),
        ("Advance", 10, 50),
        ("Advance", 50, 100),
        ("HardStop", 100, 0),
    ]
    reasons = [r for r, _ in events_for(kube, namespace, name)]
    for decision in ("Advance", "StepBack", "HardStop"):
        assert decision in reasons, reasons
    # the operator never logged a key
    assert "provider-key" not in op.log_text()
    op.stop()
