"""The sending half of a migration, end to end: the DnsCutover reaches Switched (the test writes its status:
no DnsCutover controller runs here), the SendingCutover that waits for it ramps to 100 % on signed ESP
events (real endpoint, real Prometheus), the application's key is swapped, and rolling back both (the
DnsCutover's targetPhase and the SendingCutover's targetWeight lowered, as a Git revert would) puts the
old provider's key back in one write.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.esp import EspEndpoint, EspKeys
from fixtures.kubeapi import KubeAPI
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "sending"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import cutover_manifest, powerdns_provider
from sending_harness import (
    SendingOperator,
    at_weight,
    condition,
    expect_secret,
    manifest,
    provider_keys,
    wait_sc,
    waiting_for,
)

DOMAIN = "story.example.com"


@pytest.fixture(scope="module")
def esp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EspEndpoint, Prometheus]]:
    root = tmp_path_factory.mktemp("sending-story")
    keys = EspKeys(root / "keys", domain=DOMAIN)
    endpoint = EspEndpoint(keys, root).start()
    prom = Prometheus(tmp_path_factory.mktemp("sending-story-prometheus"), "story").start()
    prom.add_target(endpoint.metrics_target, job="esp")
    yield endpoint, prom
    prom.close()
    endpoint.stop()
    keys.close()


def set_dns_phase(kube: KubeAPI, namespace: str, phase: str) -> None:
    patch = json.dumps({"status": {"phase": phase}})
    kube.kubectl(
        "patch", "dnscutover", "dns", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )


def test_dns_switch_ramp_key_swap_and_rollback_of_both(
    kube: KubeAPI, namespace: str, esp: tuple[EspEndpoint, Prometheus], tmp_path: Path
) -> None:
    endpoint, prom = esp
    provider_keys(kube, namespace)
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
    op = SendingOperator(kube, namespace, tmp_path).start()
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
    op.stop()
