"""The chart's ValidatingAdmissionPolicy on the real API server: a MailMigration naming a worker image or
ServiceAccount the installation did not allow is refused before the operator ever sees it (issue 14:
creating a MailMigration must not be creating an arbitrary pod)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from fixtures.kubeapi import KubeAPI

CHART = Path(__file__).resolve().parents[3] / "charts" / "mailferry"
EXTRA_IMAGE = "registry.example/mailferry-worker:2"


def _policy(kube: KubeAPI, release: str, namespace: str) -> list[dict[str, Any]]:
    """The chart's policy + binding as `helm template` renders them, the binding limited to `namespace`
    (the session's API server is shared with other tests)."""
    out = kube.helm(
        "template",
        release,
        str(CHART),
        "--set",
        f"workerPolicy.allowedImages={{{EXTRA_IMAGE}}}",
        "--show-only",
        "templates/admission-policy.yaml",
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    docs[1]["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    }
    return docs


def _migration(worker: dict[str, str] | None) -> dict[str, Any]:
    endpoint = {"host": "imap.example.net", "auth": {"method": "password", "secretRef": {"name": "creds"}}}
    spec: dict[str, Any] = {"source": endpoint, "destination": endpoint, "mailboxes": [{"source": "a@b.c"}]}
    if worker is not None:
        spec["worker"] = worker
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailMigration",
        "metadata": {"name": "m"},
        "spec": spec,
    }


def _dry_run(kube: KubeAPI, namespace: str, obj: dict[str, Any]) -> Any:
    return kube.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False
    )


def test_foreign_worker_image_and_service_account_refused_by_the_api_server(
    kube: KubeAPI, namespace: str
) -> None:
    docs = _policy(kube, f"vap-{namespace}"[:40], namespace)
    kube.apply(docs)
    try:
        foreign = _migration({"image": "registry.invalid/exfiltrate:latest"})
        deadline = time.monotonic() + 60  # the API server compiles and starts enforcing a new policy
        refused = _dry_run(kube, namespace, foreign)
        while refused.returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            refused = _dry_run(kube, namespace, foreign)
        print(refused.stderr.strip())
        assert refused.returncode != 0
        assert "spec.worker.image registry.invalid/exfiltrate:latest is not an image this installation" in (
            refused.stderr
        )
        powerful = _dry_run(kube, namespace, _migration({"serviceAccountName": "cluster-admin-sa"}))
        assert powerful.returncode != 0
        assert "spec.worker.serviceAccountName cluster-admin-sa is not a ServiceAccount" in powerful.stderr
        # what the installation allows passes: its own image, an allowlisted one, nothing at all
        for worker in (None, {"image": EXTRA_IMAGE}, {"serviceAccountName": "mailferry-worker"}):
            ok = _dry_run(kube, namespace, _migration(worker))
            assert ok.returncode == 0, (worker, ok.stderr)
    finally:
        for doc in reversed(docs):
            kube.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found", check=False)
