"""The generated CRDs as the real API server sees them: accepted, structural, Established, no warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from mailferry_api import crd

CRDS = Path(__file__).resolve().parents[3] / "crds"


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_crd_established_and_structural(kube: KubeAPI, resource: crd.Resource) -> None:
    obj = kube.get("crd", resource.crd_name)
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    # NonStructuralSchema / KubernetesAPIApprovalPolicyConformant problems show up as extra conditions.
    assert set(conditions) == {"Established", "NamesAccepted"}, conditions
    assert obj["status"]["acceptedNames"]["shortNames"] == list(resource.short_names)
    assert obj["status"]["acceptedNames"]["categories"] == ["mailferry"]


def test_reapply_has_no_warnings(kube: KubeAPI) -> None:
    cp = kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    assert "Warning" not in cp.stderr, cp.stderr
    assert cp.stdout.count("serverside-applied") == len(crd.RESOURCES)


def test_category_lists_all_three(kube: KubeAPI) -> None:
    out = kube.kubectl("api-resources", "--categories=mailferry", "-o", "name").stdout.split()
    assert sorted(out) == sorted(f"{r.plural}.mailferry.io" for r in crd.RESOURCES)


def _explain(kube: KubeAPI, path: str) -> str:
    # The OpenAPI document is republished a moment after a CRD changes; wait for it.
    cp = wait_until(
        lambda: (c := kube.kubectl("explain", path, check=False)).returncode == 0 and c,
        timeout=60,
        what=f"kubectl explain {path}",
    )
    return cp.stdout


def test_schema_published_for_kubectl_explain(kube: KubeAPI) -> None:
    out = _explain(kube, "mailmigration.spec.source.security")
    assert "tls" in out and "starttls" in out
    assert "manualApproval" in _explain(kube, "dnscutover.spec.gates.switched.type")


def test_a_mailbox_sync_is_stored_as_the_operator_wrote_it(kube: KubeAPI, namespace: str) -> None:
    """The MailboxSync CRD applies no defaults (crd.Resource.api_defaults): the operator's create body,
    which leaves out what equals the model's defaults, is stored as sent (a smaller object for the API
    server, etcd and every watcher), the worker's model reads it as the whole spec, and `kubectl explain`
    still states the defaults."""
    from mailferry_api.mailboxsync import MailboxSyncSpec
    from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec
    from mailferry_operator.mailmigration.resources import mailbox_sync_body, mailbox_sync_spec

    ep = {"host": "imap.example.test", "auth": {"secretRef": {"name": "creds"}}}
    spec = MailMigrationSpec.model_validate(
        {"source": ep, "destination": {**ep, "port": 143, "security": "starttls"}, "mailboxes": []}
    )
    entry = MailboxEntry(source="alice@example.test")
    body = mailbox_sync_body("stored", "00000000-0000-0000-0000-000000000001", namespace, spec, entry)
    body["metadata"].pop("ownerReferences")  # no MailMigration here
    kube.apply(body, namespace)
    stored = kube.get("mailboxsync", body["metadata"]["name"], namespace)
    assert stored["spec"] == body["spec"]
    assert (
        "connectionsPerMailbox" not in stored["spec"] and "port" not in stored["spec"]["source"]["endpoint"]
    )
    read = MailboxSyncSpec.model_validate(stored["spec"])
    assert read == MailboxSyncSpec.model_validate(mailbox_sync_spec("stored", spec, entry))
    assert (read.connections_per_mailbox, read.source.endpoint.port, read.destination.endpoint.port) == (
        2,
        993,
        143,
    )
    assert "Default: 2." in _explain(kube, "mailboxsync.spec.connectionsPerMailbox")
