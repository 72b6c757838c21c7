"""`kubectl mailferry` against the test API server, through kubectl's own plugin lookup.

Objects are created with the statuses an operator would write (the plugin only reads status and patches
spec, so no operator runs here); `verify` runs the real verifier against two real Dovecot servers.
Every subcommand, each with its refusals: a refusal exits 1, says why on stderr and changes nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair, make_message
from fixtures.kubeapi import KubeAPI
from mailferry_kubectl.main import main

pytestmark = pytest.mark.timeout(300)
VENV_BIN = Path(sys.executable).parent
NOW = "2026-12-03T10:00:00Z"


def via_kubectl(kube: KubeAPI, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl mailferry ARGS -n NS`: kubectl finds kubectl-mailferry on PATH, as krew installs it."""
    env = dict(kube.env, PATH=f"{VENV_BIN}{os.pathsep}{kube.env.get('PATH', os.environ['PATH'])}")
    return subprocess.run(
        [kube.kubectl_bin, "mailferry", *args, "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def plugin(kube: KubeAPI, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The same in this process (a process start costs seconds on a loaded machine)."""
    argv = [*args, "-n", namespace, "--kubeconfig", str(kube.kubeconfig)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def ok(cp: subprocess.CompletedProcess[str]) -> str:
    assert cp.returncode == 0, f"exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp.stdout


def refused(cp: subprocess.CompletedProcess[str], *words: str) -> str:
    assert cp.returncode == 1, f"exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    assert cp.stderr.startswith(("refused: ", "error: ")), cp.stderr
    for word in words:
        assert word in cp.stderr, cp.stderr
    return cp.stderr


set_status = d.set_status


def spec_of(kube: KubeAPI, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(kube.get(f"{plural}.mailferry.io", name, namespace)["spec"])


def migration(kube: KubeAPI, namespace: str, pair: DovecotPair, addresses: list[str], **spec: Any) -> None:
    d.apply(kube, d.migration_manifest("acme", namespace, pair.source, pair.destination, addresses, **spec))


def cutover(kube: KubeAPI, namespace: str, target: str, **spec: Any) -> None:
    kube.apply(
        d.cutover_manifest(
            "acme-dns", namespace, "acme.example", migrationRef={"name": "acme"}, targetPhase=target, **spec
        )
    )


cond = d.condition_entry


MIGRATION_STATUS: dict[str, Any] = {
    "phase": "Syncing",
    "conditions": [
        cond("Ready", "False", "Syncing", "bulk copy 40%"),
        cond("Validated", "True", "Validated"),
    ],
    "scan": {
        "mailboxes": 2,
        "reachable": 2,
        "folders": 6,
        "messages": 100,
        "bytes": 2048,
        "completedAt": NOW,
    },
    "totals": {"expectedMessages": 100, "copiedMessages": 40, "expectedBytes": 2048, "copiedBytes": 800},
    "mailboxes": {"total": 2, "synced": 0, "syncing": 2},
    "round": {"number": 1, "kind": "bulk"},
    "jobs": {"active": 1},
}


def test_status_approve_retry_suspend_resume(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair
) -> None:
    migration(
        kube, namespace, dovecot_pair, ["ann@acme.example", "bob@acme.example"], approval={"required": True}
    )
    # Before the scan: approving is refused, the review needs the scan's results.
    refused(plugin(kube, namespace, "approve", "migration", "acme"), "scan has not finished")
    set_status(kube, namespace, "mailmigrations", "acme", MIGRATION_STATUS)
    cutover(kube, namespace, "Staged")
    set_status(kube, namespace, "dnscutovers", "acme-dns", {"phase": "TTLLowered"})

    out = ok(via_kubectl(kube, namespace, "status", "acme"))
    assert "MailMigration acme  phase Syncing  Ready=False (Syncing: bulk copy 40%)" in out
    assert "40/100 messages" in out and " 40.0%" in out  # the bulk-copy bar
    assert "kubectl mailferry approve migration acme" in out  # what it waits for
    assert "DnsCutover acme-dns  acme.example  phase TTLLowered → target Staged" in out
    # Without a name: every migration and cutover of the namespace.
    assert "DnsCutover acme-dns" in ok(plugin(kube, namespace, "status"))

    out = ok(plugin(kube, namespace, "approve", "migration", "acme", "--dry-run"))
    assert "scan: 2/2 mailboxes reachable" in out and "dry run" in out
    assert spec_of(kube, namespace, "mailmigrations", "acme")["approval"]["approved"] is False
    out = ok(plugin(kube, namespace, "approve", "migration", "acme"))
    assert "under Argo CD make this change in Git" in out
    assert "kubectl -n" in out and '\'{"spec":{"approval":{"approved":true}}}\'' in out
    assert spec_of(kube, namespace, "mailmigrations", "acme")["approval"]["approved"] is True
    refused(plugin(kube, namespace, "approve", "migration", "acme"), "approved already")

    refused(plugin(kube, namespace, "retry", "acme"), "nothing to retry")
    set_status(kube, namespace, "mailmigrations", "acme", {"mailboxes": {"total": 2, "failed": 1}})
    ok(plugin(kube, namespace, "retry", "acme"))
    assert spec_of(kube, namespace, "mailmigrations", "acme")["retryFailed"]

    ok(plugin(kube, namespace, "suspend", "acme"))
    assert spec_of(kube, namespace, "mailmigrations", "acme")["suspend"] is True
    refused(plugin(kube, namespace, "suspend", "acme"), "suspended already")
    assert "kubectl mailferry resume acme" in ok(plugin(kube, namespace, "status", "acme"))
    ok(plugin(kube, namespace, "resume", "acme"))
    assert spec_of(kube, namespace, "mailmigrations", "acme")["suspend"] is False
    refused(plugin(kube, namespace, "resume", "acme"), "not suspended already")

    refused(via_kubectl(kube, namespace, "status", "nope"), "MailMigration 'nope' not found", namespace)


def test_advance_rollback_and_manual_gates(kube: KubeAPI, namespace: str) -> None:
    gates = {"switched": [{"name": "ops-ok", "type": "manualApproval"}]}
    cutover(kube, namespace, "Staged", gates=gates)
    set_status(
        kube,
        namespace,
        "dnscutovers",
        "acme-dns",
        {
            "phase": "Staged",
            "plan": {
                "fromPhase": "Staged",
                "toPhase": "Switched",
                "changes": [
                    {
                        "action": "replace",
                        "name": "acme.example.",
                        "type": "MX",
                        "before": {"name": "acme.example.", "type": "MX", "records": ["10 mx.old.example."]},
                        "after": {"name": "acme.example.", "type": "MX", "records": ["10 mx.new.example."]},
                    }
                ],
            },
            "snapshots": [
                {
                    "phase": "Staged",
                    "takenAt": NOW,
                    "rrsets": [{"name": "_dmarc.acme.example.", "type": "TXT"}],
                },
                {"phase": "TTLLowered", "takenAt": NOW, "rrsets": [{"name": "acme.example.", "type": "MX"}]},
            ],
        },
    )
    # At its target: no phase waits, so there is nothing to approve yet.
    refused(plugin(kube, namespace, "approve", "cutover", "acme-dns"), "no phase waits for approval")
    refused(plugin(kube, namespace, "advance", "acme-dns", "--to", "TTLLowered"), "rollback acme-dns")

    out = ok(plugin(kube, namespace, "advance", "acme-dns", "--dry-run"))
    assert "forward: Staged → Switched" in out and "ops-ok (manualApproval)" in out
    assert "replace MX acme.example.: 10 mx.old.example. → 10 mx.new.example." in out
    assert spec_of(kube, namespace, "dnscutovers", "acme-dns")["targetPhase"] == "Staged"
    ok(plugin(kube, namespace, "advance", "acme-dns"))
    assert spec_of(kube, namespace, "dnscutovers", "acme-dns")["targetPhase"] == "Switched"

    out = ok(plugin(kube, namespace, "approve", "cutover", "acme-dns"))
    assert "Switched/ops-ok" in out
    assert spec_of(kube, namespace, "dnscutovers", "acme-dns")["approvedPhase"] == "Switched"
    refused(plugin(kube, namespace, "approve", "cutover", "acme-dns"), "approved already")
    refused(
        plugin(kube, namespace, "approve", "cutover", "acme-dns", "--phase", "Enforced"), "no manualApproval"
    )

    ok(plugin(kube, namespace, "advance", "acme-dns", "--to", "Enforced"))
    refused(plugin(kube, namespace, "advance", "acme-dns"), "the last phase")

    out = ok(plugin(kube, namespace, "rollback", "acme-dns", "--to", "TTLLowered"))
    assert "back: Staged → TTLLowered" in out
    assert "leave Staged: restore the snapshot taken before it (TXT _dmarc.acme.example.)" in out
    assert spec_of(kube, namespace, "dnscutovers", "acme-dns")["targetPhase"] == "TTLLowered"
    set_status(kube, namespace, "dnscutovers", "acme-dns", {"phase": "Planned"})
    kube.kubectl("patch", "dnscutovers.mailferry.io", "acme-dns", "-n", namespace, "--type=merge",
                 "-p", '{"spec":{"targetPhase":"Planned"}}')  # fmt: skip
    refused(plugin(kube, namespace, "rollback", "acme-dns"), "nothing to roll back")
    refused(plugin(kube, namespace, "rollback", "missing"), "DnsCutover 'missing' not found")


def mailbox_sync(namespace: str, pair: DovecotPair, address: str) -> dict[str, Any]:
    def side(server: Any, role: str) -> dict[str, Any]:
        endpoint = {
            "host": "127.0.0.1",
            "port": server.port,
            "security": "none",
            "auth": {"method": "password", "secretRef": {"name": f"acme-{role}"}},
        }
        return {"endpoint": endpoint, "username": address}

    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailboxSync",
        "metadata": {
            "name": "acme-" + address.split("@")[0],
            "namespace": namespace,
            "labels": {"mailferry.io/migration": "acme"},
        },
        "spec": {
            "source": side(pair.source, "source"),
            "destination": side(pair.destination, "destination"),
            "migrationRef": {"name": "acme"},
        },
    }


def test_verify_and_logs(kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair) -> None:
    org = d.make_org(2, domain=f"{namespace}.test")
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org)
    same, behind = org.addresses
    mail = [make_message(f"hello {i}", domain=org.domain) for i in range(3)]
    when = 1_700_000_000.0  # the same INTERNALDATE on both sides (verify compares dates)
    dovecot_pair.source.append(same, "INBOX", mail, date=when)
    dovecot_pair.destination.append(same, "INBOX", mail, date=when)
    dovecot_pair.source.append(behind, "INBOX", mail, date=when)
    d.apply(
        kube,
        d.secret_manifest("acme-source", namespace, d.credentials(org)),
        d.secret_manifest("acme-destination", namespace, d.credentials(org)),
    )
    migration(kube, namespace, dovecot_pair, org.addresses)
    kube.apply([mailbox_sync(namespace, dovecot_pair, a) for a in org.addresses])

    cp = via_kubectl(kube, namespace, "verify", "acme")
    assert cp.returncode == 1, cp.stdout + cp.stderr  # 1: differences (2: errors)
    assert f"OK   {same}: 0 difference(s)" in cp.stdout
    assert f"DIFF {behind}: 3 difference(s)" in cp.stdout
    assert "verify: mailboxes=2 folders=" in cp.stdout and "differences=3" in cp.stdout
    refused(
        plugin(kube, namespace, "verify", "acme", "--mailbox", "nobody@x.test"), "no mailbox nobody@x.test"
    )

    # logs: a mailbox no Job has copied yet, then a Job whose pod has no node (no kubelet to ask).
    sync_name = "acme-" + same.split("@")[0]
    cp = plugin(kube, namespace, "logs", "acme", "--mailbox", same)
    assert cp.returncode == 1 and "no worker Job has run for" in cp.stdout, cp.stdout + cp.stderr
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "worker", "image": "x", "env": [
        {"name": "MAILFERRY_MAILBOXSYNCS", "value": f"other,{sync_name}"}]}]}  # fmt: skip
    kube.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "acme-r1-b0",
                "namespace": namespace,
                "labels": {"mailferry.io/migration": "acme"},
            },
            "spec": {"template": {"spec": pod_spec}},
        }
    )
    cp = plugin(kube, namespace, "logs", "acme", "--mailbox", same)
    assert cp.returncode == 1 and "== Job acme-r1-b0: no pods" in cp.stdout, cp.stdout + cp.stderr
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "acme-r1-b0-x1",
                "namespace": namespace,
                "labels": {"job-name": "acme-r1-b0"},
            },
            "spec": pod_spec,
        }
    )
    cp = plugin(kube, namespace, "logs", "acme", "--mailbox", same, "--tail", "50")
    # No kubelet runs here: the API server has no log to give for a pod never scheduled.
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "== Job acme-r1-b0, pod acme-r1-b0-x1\n   (no log lines yet; pod phase Pending)" in cp.stdout
    refused(plugin(kube, namespace, "logs", "acme", "--mailbox", "nobody@x.test"), "no mailbox nobody@x.test")


def test_approve_notice_drafts_by_hash(kube: KubeAPI, namespace: str) -> None:
    kube.apply(
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "NoticePlan",
            "metadata": {"name": "acme-notices", "namespace": namespace},
            "spec": {
                "migrationRef": {"name": "acme"},
                "from": "IT <it@acme.example>",
                "templatesRef": {"name": "acme-templates"},
                "smtp": {"host": "127.0.0.1", "secretRef": {"name": "acme-smtp"}},
                "notices": [{"name": "heads-up", "template": "headsup", "at": {"anchor": "window"}}],
            },
        }
    )
    draft = {
        "notice": "heads-up",
        "cohort": "sales",
        "hash": "0123456789abcdef",
        "state": "AwaitingApproval",
        "subject": "Your mailbox moves on Monday",
        "text": "Hello,\nyour mail moves.",
        "recipients": 3,
    }
    sent = {"notice": "heads-up", "cohort": "ops", "hash": "fedcba9876543210", "state": "Sent"}
    set_status(kube, namespace, "noticeplans", "acme-notices", {"drafts": [draft, sent]})

    refused(
        plugin(kube, namespace, "approve", "notices", "acme-notices", "--cohort", "ops"), "no draft awaits"
    )
    out = ok(plugin(kube, namespace, "approve", "notices", "acme-notices", "--dry-run"))
    assert "draft 0123456789abcdef: notice heads-up to cohort sales (3 recipients)" in out
    assert "Subject: Your mailbox moves on Monday" in out and "| your mail moves." in out
    assert "approvedHashes" not in spec_of(kube, namespace, "noticeplans", "acme-notices")
    out = ok(plugin(kube, namespace, "approve", "notices", "acme-notices"))
    assert "approved 1 draft(s): 0123456789abcdef" in out
    assert spec_of(kube, namespace, "noticeplans", "acme-notices")["approvedHashes"] == ["0123456789abcdef"]
