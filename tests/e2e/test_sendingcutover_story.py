"""The sending half of a migration, end to end: the DnsCutover reaches Switched (the test writes its status:
no DnsCutover controller runs here), the SendingCutover that waits for it ramps to 100 % on signed ESP
events (real endpoint, real Prometheus), the application's key is swapped, and rolling back both (the
DnsCutover's targetPhase and the SendingCutover's targetWeight lowered, as a Git revert would) puts the
old provider's key back in one write. Next to it, SendingCutovers the schema cannot refuse.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.esp import EspEndpoint
from fixtures.kubeapi import KubeAPI, _namespace
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "sending"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import cutover_manifest, powerdns_provider
from sending_harness import (
    SendingOperator,
    app_secret,
    at_weight,
    condition,
    esp_stack,
    events_for,
    expect_secret,
    manifest,
    provider_keys,
    secret,
    wait_sc,
    waiting_for,
)

DOMAIN = "story.example.com"


@pytest.fixture(scope="module")
def esp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EspEndpoint, Prometheus]]:
    yield from esp_stack(tmp_path_factory, "sending-story", DOMAIN)


@pytest.fixture(scope="module")
def sending_ns(kube: KubeAPI, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _namespace(kube, request)


@pytest.fixture(scope="module")
def operator(
    kube: KubeAPI, sending_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SendingOperator]:
    """One operator for the module's tests (each uses objects of its own in the namespace)."""
    provider_keys(kube, sending_ns)
    op = SendingOperator(kube, sending_ns, tmp_path_factory.mktemp("sending-operator")).start()
    yield op
    op.stop()


def set_dns_phase(kube: KubeAPI, namespace: str, phase: str) -> None:
    patch = json.dumps({"status": {"phase": phase}})
    kube.kubectl(
        "patch", "dnscutover", "dns", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )


def test_dns_switch_ramp_key_swap_and_rollback_of_both(
    kube: KubeAPI, sending_ns: str, operator: SendingOperator, esp: tuple[EspEndpoint, Prometheus]
) -> None:
    endpoint, prom = esp
    namespace, op = sending_ns, operator
    records = {"mx": [{"host": "mx1.dest.test", "priority": 10}]}
    dns = cutover_manifest("dns", DOMAIN, powerdns_provider("http://127.0.0.1:1"), "Switched", records)
    kube.apply(dns, namespace=namespace)
    set_dns_phase(kube, namespace, "Staged")
    spec = manifest(
        "story",
        DOMAIN,
        prom.url,
        dnsCutoverRef="dns",
        ramp=[{"weight": 25, "minDuration": "1s"}, {"weight": 100}],
        warmup={"minEvents": 40},
    )
    kube.apply(spec, namespace=namespace)

    def wait(check: Any, what: str) -> dict[str, Any]:
        return wait_sc(kube, namespace, "story", check, what, op)

    obj = wait(waiting_for("DnsCutoverNotReady"), "the ramp waits for the MX switch")
    assert "is Staged" in condition(obj, "GatesPassed")["message"]
    expect_secret(kube, namespace, 0, primary_new=False)  # the application starts on the old provider

    set_dns_phase(kube, namespace, "Switched")
    wait(at_weight(25), "first step after the switch")
    expect_secret(kube, namespace, 25, primary_new=False)
    endpoint.send("sendgrid", ["delivered"] * 60)
    obj = wait(at_weight(100), "100 % on good rates")
    assert obj["status"]["phase"] == "Complete" and condition(obj, "Ready")["status"] == "True"
    expect_secret(kube, namespace, 100, primary_new=True)  # the key swap

    # rollback of both, as a revert of the two specs in Git does
    kube.kubectl(
        "patch",
        "dnscutover",
        "dns",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"targetPhase": "Staged"}}',
    )
    set_dns_phase(kube, namespace, "Staged")  # what the DnsCutover controller would do, phase by phase
    kube.kubectl(
        "patch",
        "sendingcutover",
        "story",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"targetWeight": 0}}',
    )
    obj = wait(at_weight(0), "rolled back to the old provider at once")
    assert obj["status"]["phase"] == "RolledBack"
    assert condition(obj, "RolledBack")["status"] == "True"
    assert obj["status"]["history"][-1]["decision"] == "RollBack"
    expect_secret(kube, namespace, 0, primary_new=False)
    # it stays there: nothing moves it forward (or rewrites the Secret) while the target is 0
    rolled_back_at = obj["status"]["history"][-1]["time"]

    def later_round(after: str) -> Any:
        return lambda o: (o["status"].get("lastMeasurement") or {}).get("time", "") > after

    obj = wait(later_round(rolled_back_at), "a round after the rollback")
    revision, measured = obj["status"]["appSecretRevision"], obj["status"]["lastMeasurement"]["time"]
    obj = wait(later_round(measured), "another round")
    assert obj["status"]["weight"] == 0 and obj["status"]["appSecretRevision"] == revision


NOWHERE = "http://127.0.0.1:1"  # no Prometheus: leaving 0 % needs no events


def stalled_for(reason: str) -> object:
    return lambda o: (
        condition(o, "Stalled").get("reason") == reason and condition(o, "Stalled")["status"] == "True"
    )


def test_bad_sending_cutovers_stall_with_a_reason(
    kube: KubeAPI, sending_ns: str, operator: SendingOperator
) -> None:
    """What the schema cannot refuse: Stalled=True with a reason naming what to fix and a Warning Event, the
    ramp never moves and a Secret that is not its own is never touched; a good one next to them ramps."""
    namespace, op = sending_ns, operator
    kube.kubectl("create", "secret", "generic", "not-opted-in", "-n", namespace, "--from-literal=api-key=x")
    secret(
        kube, namespace, "someone-elses", {"token": "theirs"}
    )  # an application Secret mailferry did not write
    kube.apply(
        manifest(
            "falling", "a.example.com", NOWHERE, appSecretName="app-a", ramp=[{"weight": 50}, {"weight": 10}]
        ),
        namespace=namespace,
    )
    kube.apply(
        manifest(
            "no-consent",
            "b.example.com",
            NOWHERE,
            appSecretName="app-b",
            provider={"name": "mailgun", "secretName": "not-opted-in"},
        ),
        namespace=namespace,
    )
    kube.apply(
        manifest("taken", "c.example.com", NOWHERE, appSecretName="someone-elses"), namespace=namespace
    )
    kube.apply(manifest("good", "d.example.com", NOWHERE, appSecretName="app-d"), namespace=namespace)

    obj = wait_sc(kube, namespace, "falling", stalled_for("SpecInvalid"), "falling ramp refused", op)
    assert "must rise" in condition(obj, "Stalled")["message"]
    obj = wait_sc(kube, namespace, "no-consent", stalled_for("KeySecretMissing"), "unlabelled key Secret", op)
    assert "mailferry.io/credentials=true" in condition(obj, "Stalled")["message"]
    obj = wait_sc(kube, namespace, "taken", stalled_for("AppSecretConflict"), "foreign app Secret", op)
    assert "someone-elses" in condition(obj, "Stalled")["message"]
    wait_sc(kube, namespace, "good", at_weight(10), "the good one ramps", op)

    for name in ("falling", "no-consent", "taken"):
        obj = wait_sc(kube, namespace, name, lambda o: True, name, op)
        assert obj["status"]["weight"] == 0 and not obj["status"].get("history"), name
        assert condition(obj, "Ready")["status"] == "False"
        reasons = {r for r, _ in events_for(kube, namespace, name)}
        assert reasons & {"SpecInvalid", "KeySecretMissing", "AppSecretConflict"}, (name, reasons)
    assert app_secret(kube, namespace, "someone-elses") == {"token": "theirs"}
    assert kube.kubectl("get", "secret", "app-a", "app-b", "-n", namespace, check=False).returncode != 0
    assert op.proc is not None and op.proc.running()
