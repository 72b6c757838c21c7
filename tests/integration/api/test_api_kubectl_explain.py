"""`kubectl explain` against the test API server: the CRDs' field descriptions reach users."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import demolib as d

from fixtures.kubeapi import KubeAPI

# (what a user types, words its description must show); field docs come from common/mailferry_api.
CASES = [
    ("mailmigration.spec.folders", ["Which folders to copy", "strategy", "all folders, standard"]),
    ("mailmigration.spec.worker.image", ["default: the operator's installation"]),
    ("mailboxsync.status.folders.lastUid", ["Highest source UID known to be on the destination"]),
    ("dnscutover.spec.targetPhase", ["lower it to roll back"]),
    ("dnscutover.status.snapshots", ["a rollback restores them"]),
]


@pytest.mark.parametrize(("field", "words"), CASES, ids=[c[0] for c in CASES])
def test_kubectl_explain_shows_the_description(kube: KubeAPI, field: str, words: list[str]) -> None:
    out = kube.kubectl("explain", field, "--api-version=mailferry.io/v1alpha1").stdout
    for word in words:
        assert word in out, f"kubectl explain {field}:\n{out}"
    assert "<empty>" not in out


def test_kubectl_get_wide_shows_why_not_ready(kube: KubeAPI, namespace: str) -> None:
    kube.apply(d.cutover_manifest("wide", namespace, "wide.example"))
    ready = d.condition_entry("Ready", "False", "GateFailed", "dnsRecord gate mx-served failed")
    d.set_status(kube, namespace, "dnscutovers", "wide", {"conditions": [ready]})
    wide = kube.kubectl("get", "dnscutovers.mailferry.io", "wide", "-n", namespace, "-o", "wide").stdout
    narrow = kube.kubectl("get", "dnscutovers.mailferry.io", "wide", "-n", namespace).stdout
    assert "MESSAGE" in wide and "dnsRecord gate mx-served failed" in wide
    assert "MESSAGE" not in narrow
