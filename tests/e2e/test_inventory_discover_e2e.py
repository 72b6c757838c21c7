"""spec.inventoryRef.discover end to end: real kube-apiserver, `mailferry-operator` as a process, and the
HTTP contract fakes of the Google Directory API and Microsoft Graph (tests/fixtures/directory_api.py)
served on loopback, under the operator's egress allowlist. The operator writes the inventory ConfigMap it
owns; nothing is validated or copied (no MailboxSync) before the approval; MailboxSyncs follow the
approval; an edit of the ConfigMap needs a new one; refusals (consent, egress, 403) are conditions
without the secret or the response body."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import demolib as d

from fixtures.directory_api import D, G, LoopbackApi, google_routes, graph_routes
from fixtures.kubeapi import KubeAPI
from mailferry_api.discover.review import content_hash

pytestmark = pytest.mark.timeout(240)
MM = "mailmigrations.mailferry.io"


@pytest.fixture
def operator(kube: KubeAPI, namespace: str, tmp_path: Path) -> Iterator[d.OperatorProcess]:
    proc = d.OperatorProcess(kube, [namespace], tmp_path).start()
    try:
        yield proc
    finally:
        proc.stop()
        kube.kubectl(
            "delete", "mailboxsyncs.mailferry.io", "--all", "-n", namespace, "--wait=false", check=False
        )


@pytest.fixture
def google_api() -> Iterator[LoopbackApi]:
    router = respx.MockRouter(assert_all_called=False)
    google_routes(router)
    with LoopbackApi(router, D) as api:
        yield api


@pytest.fixture
def graph_api() -> Iterator[LoopbackApi]:
    router = respx.MockRouter(assert_all_called=False)
    graph_routes(router, throttle_once=True)
    with LoopbackApi(router, G) as api:
        yield api


def _service_account() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps({"client_email": "svc@proj.iam.gserviceaccount.com", "private_key": pem})


def _migration(name: str, namespace: str, discover: dict[str, Any]) -> dict[str, Any]:
    # nothing listens on these ports: the test is about what happens before any copy
    side = {"host": "127.0.0.1", "security": "none", "auth": {"secretRef": {"name": f"{name}-imap"}}}
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailMigration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {**side, "port": 1},
            "destination": {**side, "port": 2},
            "inventoryRef": {"name": f"{name}-inventory", "discover": discover},
        },
    }


def _reviewed(kube: KubeAPI, namespace: str, name: str, status: str, reason: str, timeout: float = 60) -> Any:
    def check() -> Any:
        cond = d.condition(d.migration(kube, namespace, name), "InventoryReviewed") or {}
        return cond if (cond.get("status"), cond.get("reason")) == (status, reason) else None

    return d.wait_for(check, timeout, f"{name}: InventoryReviewed={status} {reason}")


def _syncs(kube: KubeAPI, namespace: str, name: str) -> list[str]:
    found = d.get(kube, "mailboxsyncs.mailferry.io", namespace, selector=f"mailferry.io/migration={name}")
    return sorted(str(i["spec"]["source"]["username"]) for i in found["items"])


def _approve(kube: KubeAPI, namespace: str, name: str, digest: str) -> None:
    patch = json.dumps({"spec": {"inventoryRef": {"approvedHash": digest}}})
    kube.kubectl("patch", MM, name, "-n", namespace, "--type", "merge", "-p", patch)


def test_google_discovery_review_approval_and_edit(
    kube: KubeAPI, namespace: str, operator: d.OperatorProcess, google_api: LoopbackApi
) -> None:
    sa = _service_account()
    d.apply(
        kube,
        d.secret_manifest("directory", namespace, {"service-account.json": sa}),
        _migration(
            "acme",
            namespace,
            {
                "provider": "google",
                "secretRef": {"name": "directory"},
                "admin": "admin@old.example",
                "destinationDomain": "new.example",
                "apiUrl": google_api.base,
                "oauth2": {"tokenUrl": f"{google_api.origin}/token"},
            },
        ),
    )
    waiting = _reviewed(kube, namespace, "acme", "False", "AwaitingReview")
    cm = d.get(kube, "configmap", namespace, "acme-inventory")
    digest = content_hash(cm)
    owner = cm["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("MailMigration", "acme")
    assert cm["metadata"]["annotations"]["mailferry.io/content-sha256"] == digest
    assert "mailferry.io/discover-spec-hash" in cm["metadata"]["annotations"]
    assert cm["data"]["mailboxes"].splitlines() == [
        "source,destination",
        "ann@old.example,ann@new.example",
        "carl@old.example,carl@new.example",  # bob is suspended: in recreate.json, not copied
    ]
    recreate = json.loads(cm["data"]["recreate.json"])
    assert (
        recreate["suspended"] == ["bob@old.example"]
        and recreate["groups"][0]["address"] == "sales@new.example"
    )
    assert digest in waiting["message"] and "kubectl mailferry approve inventory acme" in waiting["message"]
    mm = d.migration(kube, namespace, "acme")
    assert mm["status"]["discovery"]["contentsHash"] == digest and mm["status"]["discovery"]["mailboxes"] == 2
    key_line = json.loads(sa)["private_key"].splitlines()[1]
    assert key_line not in json.dumps(mm) + json.dumps(cm)  # no key material anywhere
    time.sleep(5)  # a few passes: still nothing validated, nothing copied
    assert _syncs(kube, namespace, "acme") == []
    assert (d.condition(d.migration(kube, namespace, "acme"), "Validated") or {}).get("status") != "True"
    requests = len(google_api.requests)

    _approve(kube, namespace, "acme", digest)
    _reviewed(kube, namespace, "acme", "True", "Approved")
    first = ["ann@old.example", "carl@old.example"]
    d.wait_for(lambda: _syncs(kube, namespace, "acme") == first, 60, "MailboxSyncs after the approval")
    assert len(google_api.requests) == requests  # an approval is no reason to ask Google again

    # an edit of the ConfigMap is new content: a new approval, and until then nothing new is used
    rows = cm["data"]["mailboxes"] + "dora@old.example,dora@new.example\n"
    kube.kubectl(
        "patch", "configmap", "acme-inventory", "-n", namespace, "--type", "merge",
        "-p", json.dumps({"data": {"mailboxes": rows}}),
    )  # fmt: skip
    again = _reviewed(kube, namespace, "acme", "False", "AwaitingReview")
    assert "changed" in again["message"]
    time.sleep(3)
    assert _syncs(kube, namespace, "acme") == first
    edited = content_hash(d.get(kube, "configmap", namespace, "acme-inventory"))
    _approve(kube, namespace, "acme", edited)
    d.wait_for(lambda: "dora@old.example" in _syncs(kube, namespace, "acme"), 90, "dora's MailboxSync")

    # the rediscover annotation runs discovery again: Google's answer differs from the edit -> review again
    kube.kubectl("annotate", MM, "acme", "-n", namespace, "mailferry.io/rediscover=1")
    _reviewed(kube, namespace, "acme", "False", "AwaitingReview")
    assert content_hash(d.get(kube, "configmap", namespace, "acme-inventory")) == digest
    assert len(google_api.requests) > requests


def test_graph_discovery_shared_mailboxes_and_refusals(
    kube: KubeAPI, namespace: str, operator: d.OperatorProcess, graph_api: LoopbackApi
) -> None:
    secret = "client-secret-value-not-to-leak"
    graph = {
        "provider": "microsoft365",
        "secretRef": {"name": "entra"},
        "apiUrl": graph_api.base,
        "oauth2": {"clientId": "app", "tenantId": "tenant", "tokenUrl": f"{graph_api.origin}/token"},
    }
    unlabelled = d.secret_manifest("unlabelled", namespace, {"client-secret": secret})
    unlabelled["metadata"]["labels"] = {}
    d.apply(
        kube,
        d.secret_manifest("entra", namespace, {"client-secret": secret}),
        unlabelled,
        _migration("m365", namespace, graph),
        _migration("noconsent", namespace, {**graph, "secretRef": {"name": "unlabelled"}}),
        _migration("elsewhere", namespace, {**graph, "apiUrl": "https://graph.evil.example/v1.0"}),
    )
    _reviewed(kube, namespace, "m365", "False", "AwaitingReview")
    cm = d.get(kube, "configmap", namespace, "m365-inventory")
    assert "info@old.example" in cm["data"]["mailboxes"]  # the shared mailbox is migrated
    assert "eve@old.example" not in cm["data"]["mailboxes"]  # disabled user: reported only
    recreate = json.loads(cm["data"]["recreate.json"])
    assert recreate["mailboxes"]["info@old.example"] == "shared" and len(recreate["groups"]) == 3
    refused = _reviewed(kube, namespace, "noconsent", "False", "SecretNotPermitted")
    assert "mailferry.io/credentials" in refused["message"]
    away = _reviewed(kube, namespace, "elsewhere", "False", "EgressNotAllowed")
    assert "graph.evil.example" in away["message"] and "egress.allowedUrls" in away["message"]
    for name in ("noconsent", "elsewhere"):
        assert _syncs(kube, namespace, name) == []

    # Graph refuses (403): the reason and a fix, never the body or the secret
    graph_api.answer = {"status": 403}
    kube.kubectl("annotate", MM, "m365", "-n", namespace, "mailferry.io/rediscover=again")
    forbidden = _reviewed(kube, namespace, "m365", "False", "Forbidden")
    assert "admin consent" in forbidden["message"]
    every = json.dumps(d.get(kube, MM, namespace))
    assert secret not in every and "body not to be shown" not in every
    assert _syncs(kube, namespace, "m365") == []
