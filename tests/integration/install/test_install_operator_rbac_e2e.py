"""The operator and the worker run with exactly the chart's RBAC and reconcile a migration end to end.

`helm install` (namespaced mode) into the test API server; `mailferry-operator` runs as a process whose only
credential is a TokenRequest token of the chart's operator ServiceAccount; the local job runner (standing in
for the kubelet) gives every worker Job a token of the chart's `mailferry-worker` ServiceAccount, as a pod
would get. Real Dovecot source and destination. A missing grant shows as a 403 and a stuck migration here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from installlib import namespaced_release, unexpected_denials

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import demolib as d
from jobrunner import JobRunner

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(420)
NAME = "rbac-e2e"


@pytest.fixture
def release(kube: KubeAPI) -> Iterator[dict[str, str]]:
    cleanup = "jobs,mailboxsyncs.mailferry.io,mailmigrations.mailferry.io"
    with namespaced_release(kube, "mfe", "mail", cleanup) as rel:
        yield rel


def test_operator_and_worker_under_chart_rbac_reconcile_a_migration(
    kube: KubeAPI, dovecot_pair: DovecotPair, release: dict[str, str], tmp_path: Path
) -> None:
    ns = release["ns"]
    op_kc = kube.service_account_kubeconfig(release["sys"], f"{release['fullname']}-operator")
    wk_kc = kube.service_account_kubeconfig(ns, "mailferry-worker")
    # The chart's Deployment passes the worker ServiceAccount this way; the operator process gets the same.
    dep = kube.get("deployment", f"{release['fullname']}-operator", namespace=release["sys"])
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    operator = d.OperatorProcess(
        kube,
        [ns],
        tmp_path,
        extra_env={
            "KUBECONFIG": str(op_kc),
            "MAILFERRY_WORKER_SERVICE_ACCOUNT": str(env["MAILFERRY_WORKER_SERVICE_ACCOUNT"]),
        },
    )
    # The runner watches Jobs as admin (it plays the Job controller) but hands each pod the worker's token.
    runner = JobRunner(kube.kubeconfig, [ns], log_dir=tmp_path / "jobs", extra_env={"KUBECONFIG": str(wk_kc)})
    org = d.make_org(3, domain=f"{ns}.test")
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org)
    d.seed_org(dovecot_pair.source, org, per_mailbox=4)
    d.apply(
        kube,
        d.secret_manifest(f"{NAME}-source", ns, d.credentials(org)),
        d.secret_manifest(f"{NAME}-destination", ns, d.credentials(org)),
        d.migration_manifest(NAME, ns, dovecot_pair.source, dovecot_pair.destination, org.addresses),
    )
    runner.start()
    operator.start()
    try:

        def bulk_copied() -> dict[str, Any] | None:
            mm = d.migration(kube, ns, NAME)
            cond = d.condition(mm, "BulkCopied") or {}
            return mm if cond.get("status") == "True" else None

        mm = d.wait_for(bulk_copied, 240, "BulkCopied=True under the chart's RBAC")
    finally:
        operator.stop()
        runner.stop()
    unexpected = unexpected_denials((tmp_path / "operator.log").read_text(errors="replace"))
    assert not unexpected, "\n".join(unexpected[:20])
    st = mm["status"]
    assert st["totals"]["copiedMessages"] == st["totals"]["expectedMessages"] == sum(org.messages.values())
    for addr in org.addresses:
        src = d.folder_counts(dovecot_pair.source, addr)
        dst = d.folder_counts(dovecot_pair.destination, addr)
        assert all(dst.get(f) == n for f, n in src.items()), f"{addr}: {src} vs {dst}"
    # The Jobs ran as the chart's worker ServiceAccount, and that identity wrote MailboxSync status.
    jobs = d.worker_jobs(kube, ns, NAME)
    assert jobs and {j["spec"]["template"]["spec"]["serviceAccountName"] for j in jobs} == {
        "mailferry-worker"
    }
    out = kube.kubectl(
        "get", "mailboxsyncs.mailferry.io", "-n", ns, "-o", "json", "--show-managed-fields"
    ).stdout
    syncs = json.loads(out)["items"]
    assert len(syncs) == 3
    for s in syncs:
        # a delta round may have started (and been stopped with the runner) since: look at the finished round
        assert s["status"]["round"] >= 1 and s["status"]["lastSyncTime"], s["status"]
        managers = {f["manager"] for f in s["metadata"]["managedFields"] if f.get("subresource") == "status"}
        assert "mailferry-worker" in managers
    # Events were posted with the operator's token.
    events = kube.get("events", namespace=ns)["items"]
    assert any(e["involvedObject"]["kind"] == "MailMigration" for e in events)
