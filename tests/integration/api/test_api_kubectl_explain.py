"""`kubectl explain` against the test API server: the CRDs' field descriptions reach users."""

from __future__ import annotations

import json

import pytest

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
    kube.apply(
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "DnsCutover",
            "metadata": {"name": "wide", "namespace": namespace},
            "spec": {
                "domain": "wide.example",
                "provider": {"type": "rfc2136", "rfc2136": {"server": "127.0.0.1"}},
                "records": {"mx": [{"host": "mx.new.example", "priority": 10}]},
            },
        }
    )
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "GateFailed",
        "message": "dnsRecord gate mx-served failed",
        "lastTransitionTime": "2026-12-03T10:00:00Z",
    }
    kube.kubectl(
        "patch", "dnscutovers.mailferry.io", "wide", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"conditions": [ready]}}),
    )  # fmt: skip
    wide = kube.kubectl("get", "dnscutovers.mailferry.io", "wide", "-n", namespace, "-o", "wide").stdout
    narrow = kube.kubectl("get", "dnscutovers.mailferry.io", "wide", "-n", namespace).stdout
    assert "MESSAGE" in wide and "dnsRecord gate mx-served failed" in wide
    assert "MESSAGE" not in narrow
