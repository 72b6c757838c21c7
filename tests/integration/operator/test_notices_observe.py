"""What a NoticePlan run sees (notices.observe) on the real API server: cohorts from the inventory's column
(else the batch), whose mailbox started or completed (MailboxSync phases), the DnsCutover's switchedAt,
the ledger; and decide() on that snapshot: per-person sending for `mailboxCompleted`, `switch` and
`batchStart` anchors. No operator process, no SMTP: the anchors' plumbing, in seconds."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fixtures.kubeapi import KubeAPI
from mailferry_operator.kube import client
from mailferry_operator.notices.decide import decide
from mailferry_operator.notices.observe import observe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dns"))
from dnscutover_harness import cutover_manifest, powerdns_provider

MX = {"mx": [{"host": "mx.new.test", "priority": 10}]}
ENDPOINT = {"host": "127.0.0.1", "port": 1, "security": "none", "auth": {"secretRef": {"name": "imap"}}}


@pytest.fixture
def operator_client(kube: KubeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setattr(client, "_api", None)
    yield


def _sync(name: str, address: str) -> dict[str, Any]:
    side = {"username": address, "endpoint": ENDPOINT}
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailboxSync",
        "metadata": {"name": name, "labels": {"mailferry.io/migration": "acme"}},
        "spec": {"source": side, "destination": side},
    }


def test_observe_reads_cohorts_phases_switch_and_decide_sends_per_person(
    kube: KubeAPI, namespace: str, operator_client: None
) -> None:
    rows = [
        {"source": "a@acme.test", "cohort": "pilot"},
        {"source": "b@acme.test", "cohort": "pilot"},
        {"source": "c@acme.test"},  # no cohort: its batch's
    ]
    templates = {"t.subject": "Hello {{ cohort }}", "t.text": "Your mailbox moves to {{ new_imap_host }}."}
    notices = [
        {"name": "started", "template": "t", "cohorts": ["pilot"], "at": {"anchor": "batchStart"}},
        {"name": "done", "template": "t", "at": {"anchor": "mailboxCompleted"}},
        {"name": "switched", "template": "t", "at": {"anchor": "switch", "offset": "1h"}},
    ]
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tpl"}, "data": templates},
            {
                "apiVersion": "mailferry.io/v1alpha1",
                "kind": "MailMigration",
                "metadata": {"name": "acme"},
                "spec": {"source": ENDPOINT, "destination": ENDPOINT, "mailboxes": rows, "suspend": True},
            },
            _sync("a", "a@acme.test"),
            _sync("b", "b@acme.test"),
            _sync("c", "c@acme.test"),
            cutover_manifest(
                "dns", "acme.test", powerdns_provider("http://127.0.0.1:1/api/v1"), "Planned", MX
            ),
            {
                "apiVersion": "mailferry.io/v1alpha1",
                "kind": "NoticePlan",
                "metadata": {"name": "np"},
                "spec": {
                    "migrationRef": {"name": "acme"},
                    "cutoverRef": {"name": "dns"},
                    "from": "IT <it@acme.test>",
                    "templatesRef": {"name": "tpl"},
                    "smtp": {"host": "127.0.0.1", "secretRef": {"name": "smtp"}},
                    "notices": notices,
                },
            },
        ],
        namespace,
    )
    for name, phase in (("a", "Synced"), ("b", "Pending"), ("c", "Synced")):
        status = json.dumps({"status": {"phase": phase}})
        kube.kubectl(
            "patch",
            "mailboxsync",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        )
    switched = json.dumps({"status": {"switchedAt": "2026-01-01T00:00:00Z"}})
    kube.kubectl(
        "patch", "dnscutover", "dns", "-n", namespace, "--subresource=status", "--type=merge", "-p", switched
    )
    plan_obj = kube.get("noticeplan", "np", namespace)

    async def run() -> Any:
        try:
            meta = plan_obj["metadata"]
            return await observe(namespace, "np", meta["uid"], meta["generation"], plan_obj["spec"], {})
        finally:
            await client.close()

    obs = asyncio.run(run())
    snap = obs.snapshot
    assert snap.problem is None
    assert {c: [(m.address, m.mailbox_synced) for m in ms] for c, ms in snap.members.items()} == {
        "pilot": [("a@acme.test", True), ("b@acme.test", False)],
        "batch-0": [("c@acme.test", True)],
    }
    assert set(snap.batch_started) == {"pilot", "batch-0"}  # a and c left Pending
    assert snap.switched_at is not None and snap.switched_at.year == 2026
    assert snap.facts["new_imap_host"] == "127.0.0.1" and snap.facts["domain"] == "acme.test"

    hashes = [d.hash for d in decide(snap).status.drafts]
    spec = snap.spec.model_copy(update={"approved_hashes": hashes})
    sends = sorted((s.notice, s.address) for s in decide(replace(snap, spec=spec)).sends)
    assert sends == [
        ("done", "a@acme.test"),  # only the people whose own mailbox is complete
        ("done", "c@acme.test"),
        ("started", "a@acme.test"),  # the pilot cohort started: everyone in it
        ("started", "b@acme.test"),
        ("switched", "a@acme.test"),  # an hour after the switch: everyone
        ("switched", "b@acme.test"),
        ("switched", "c@acme.test"),
    ]
