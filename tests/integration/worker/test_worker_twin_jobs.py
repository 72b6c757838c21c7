"""The operator's own path to twin pods: a retry Job created while the previous Job's pod still runs (it was
deleted, but its pod keeps going as on a node that went NotReady). The real Job bodies (job_body), the
local job runner as the kubelet (running both pods at once), the real worker, a real API server and
Dovecot pair: 0 lost, 0 duplicated, the retry's pod waited (exit 3, AlreadyRunning) until it could take
the mailbox's Lease, and the Job asks Kubernetes for no replacement pod while one still terminates.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

import mfw_harness as h

from chaos.mailrun import compare, corpus
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI
from mailferry_api.mailmigration import MailMigrationSpec
from mailferry_operator.mailmigration.plan import JobPlan
from mailferry_operator.mailmigration.resources import job_body

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from jobrunner import JobRunner

FOLDERS = {"INBOX": 1500, "Archive": 300}


def _job(namespace: str, name: str, spec: MailMigrationSpec, mailbox: str) -> dict[str, object]:
    body = job_body(
        "acme", "00000000-0000-0000-0000-000000000001", namespace, spec, JobPlan(name, 1, 0, 0, (mailbox,))
    )
    body["metadata"].pop("ownerReferences")  # type: ignore[attr-defined]  # no MailMigration in this test
    return body


def test_retry_job_while_the_previous_pod_still_runs(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"twinjob-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = corpus(src, user, FOLDERS, size=2000)
    source, destination = h.endpoint(src, "src-creds"), h.endpoint(dst, "dst-creds")
    h.user_mailboxsync(kube, namespace, "twinjob", user, source, destination, tmp_path / "secrets")
    spec = MailMigrationSpec.model_validate(
        {"source": source, "destination": destination, "mailboxes": [], "worker": {"backoffLimit": 20}}
    )
    first = _job(namespace, "acme-r1-b0", spec, "twinjob")
    assert first["spec"]["podReplacementPolicy"] == "Failed"  # type: ignore[index]
    assert first["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"  # type: ignore[index]
    runner = JobRunner(kube.kubeconfig, [namespace], tmp_path / "pods", orphan_deleted=True).start()
    try:
        kube.apply(first, namespace=namespace)
        # The retry comes once the first pod holds the mailbox (sync_started is logged under its Lease),
        # so the two overlap however slowly a loaded machine starts Python.
        first_log = tmp_path / "pods" / f"{namespace}_acme-r1-b0.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if first_log.exists() and "sync_started" in first_log.read_text():
                break
            time.sleep(0.01)
        # Paused under its Lease (a node that stopped answering), the first pod cannot finish before the
        # retry's pod starts, however fast the copy and however slow Python starts here.
        (first_pod,) = runner.running.values()
        os.kill(first_pod.proc.pid, signal.SIGSTOP)
        try:
            kube.kubectl("delete", "job", "acme-r1-b0", "-n", namespace, "--wait=false")
            kube.apply(_job(namespace, "acme-r1-b0-retry", spec, "twinjob"), namespace=namespace)
            retry_log = tmp_path / "pods" / f"{namespace}_acme-r1-b0-retry.log"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                text = retry_log.read_text() if retry_log.exists() else ""
                if "lease_wait" in text or "already_running" in text:
                    break
                time.sleep(0.05)
        finally:
            os.kill(first_pod.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            job = kube.get("jobs.batch", "acme-r1-b0-retry", namespace)
            if any(c["type"] == "Complete" for c in (job.get("status") or {}).get("conditions") or []):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the retry Job did not complete: {job.get('status')}")
        assert runner.orphans, "the first pod was not left running: the test proved nothing"
        for orphan in runner.orphans:
            orphan.proc.wait(timeout=120)
    finally:
        runner.stop()
    logs = [
        (tmp_path / "pods" / f"{namespace}_{j}.log").read_text() for j in ("acme-r1-b0", "acme-r1-b0-retry")
    ]
    print(f"pod runs: {[log.count('batch_started') for log in logs]}; retry Job: {job['status']}")
    # Both pods ran at once; whichever came second found the Lease held and waited (or exited 3).
    met = ["lease_wait" in log or "already_running" in log for log in logs]
    assert any(met), "neither pod met the other: the test proved nothing"
    diff = compare(src, dst, user)
    assert (diff.source, diff.lost, diff.duplicated) == (total, 0, 0), diff
