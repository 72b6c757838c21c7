"""One writer per mailbox: workers started at once on one MailboxSync (file store and API store), and a
worker stopped (SIGSTOP) past its lease then resumed. Real Dovecot pair, real API server for the Lease.

What must hold: 0 lost, 0 duplicated (by Message-ID, per folder), exactly one worker copied, the others
waited for the mailbox (then found nothing to do) or exited 3 (AlreadyRunning) having written nothing; the
resumed worker writes nothing (LeaseLost).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import mfw_harness as h
import pytest

from chaos.mailrun import DestCounter, WorkerRun, compare, corpus, endpoint, events
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

FOLDERS = {"INBOX": 450, "Archive": 150}
TOTAL = sum(FOLDERS.values())


def _user(pair: DovecotPair, prefix: str) -> str:
    user = f"{prefix}-{secrets.token_hex(3)}@example.test"
    pair.source.add_user(user, "pw-src")
    pair.destination.add_user(user, "pw-dst")
    corpus(pair.source, user, FOLDERS, size=2000)
    return user


def _finished(log: Path) -> dict[str, Any]:
    evs = [e for e in events(log.read_text(errors="replace")) if e.get("event") == "batch_finished"]
    assert evs, log.read_text(errors="replace")[-3000:]
    return evs[-1]


def _all_at_once(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> list[tuple[int, int]]:
    """(exit code, messages copied) of each worker."""
    out = []
    for p, log in zip(procs, logs, strict=True):
        code = p.wait(timeout=240)
        out.append((code, int(_finished(log)["copied"])))
    return out


def _assert_one_copied(results: list[tuple[int, int]], logs: list[Path]) -> None:
    copiers = [copied for _, copied in results if copied]
    assert copiers == [TOTAL], results
    for (code, copied), log in zip(results, logs, strict=True):
        if copied == 0:
            # It found the mailbox held and gave up (AlreadyRunning, exit 3), or waited for the Lease and
            # then ran a delta that had nothing to do (exit 0).
            assert code in (0, 3), (code, log.read_text()[-2000:])
            if code == 3:
                assert "already_running" in log.read_text()


def _overlapped(logs: list[Path]) -> bool:
    """Some worker found the mailbox held (it waited for the Lease or the lock, or gave up)."""
    return any(("lease_wait" in t or "already_running" in t) for t in (log.read_text() for log in logs))


# Two workers here, five on the API store; `make chaos` (scenario one-writer) runs both counts on both
# stores, many times.
@pytest.mark.parametrize("workers", [2])
def test_workers_at_once_file_store(dovecot_pair: DovecotPair, tmp_path: Path, workers: int) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = _user(dovecot_pair, f"twins{workers}f")
    run = WorkerRun(
        tmp_path,
        "box",
        user,
        endpoint("127.0.0.1", src.port),
        endpoint("127.0.0.1", dst.port),
        "pw-src",
        "pw-dst",
    )
    logs = [tmp_path / f"w{i}.log" for i in range(workers)]
    procs = [run.start(log) for log in logs]
    results = _all_at_once(procs, logs)
    print(results)
    _assert_one_copied(results, logs)
    assert _overlapped(logs), "no worker overlapped: the test proved nothing"
    diff = compare(src, dst, user)
    assert (diff.lost, diff.duplicated) == (0, 0), diff
    assert run.status()["phase"] == "Synced"


def _kube_box(kube: KubeAPI, namespace: str, pair: DovecotPair, tmp: Path, name: str) -> tuple[str, Any]:
    user = _user(pair, name)
    h.pair_mailboxsync(kube, namespace, pair, tmp, name, user)
    return user, tmp / "secrets"


@pytest.mark.parametrize("workers", [5])
def test_workers_at_once_api_store(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path, workers: int
) -> None:
    name = f"twins{workers}"
    user, secrets_dir = _kube_box(kube, namespace, dovecot_pair, tmp_path, name)
    env = h.worker_env(kube, namespace, [name], secrets_dir, None)
    logs = [tmp_path / f"w{i}.log" for i in range(workers)]
    procs = [h.start_worker(dict(env, HOSTNAME=f"pod-{i}"), log) for i, log in enumerate(logs)]
    results = _all_at_once(procs, logs)
    print(results)
    _assert_one_copied(results, logs)
    assert _overlapped(logs), "no worker overlapped: the test proved nothing"
    diff = compare(dovecot_pair.source, dovecot_pair.destination, user)
    assert (diff.lost, diff.duplicated) == (0, 0), diff
    lease = kube.kubectl(
        "get", "leases.coordination.k8s.io", f"mailboxsync.{name}", "-n", namespace, check=False
    )
    assert "NotFound" in lease.stderr, "the last holder gives the lease back (deletes it)"
    assert kube.get("mailboxsyncs.mailferry.io", name, namespace)["status"]["phase"] == "Synced"


def test_worker_stopped_past_its_lease_writes_nothing_after_resuming(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    name = "sigstop"
    user, secrets_dir = _kube_box(kube, namespace, dovecot_pair, tmp_path, name)
    lease_s = 5
    env = h.worker_env(kube, namespace, [name], secrets_dir, None, MAILFERRY_LEASE_SECONDS=str(lease_s))
    count = DestCounter(dovecot_pair.destination, user, list(FOLDERS))
    try:
        first = h.start_worker(dict(env, HOSTNAME="pod-stale"), tmp_path / "stale.log")
        deadline = time.monotonic() + 120
        while count() < 50 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first worker finished before it could be stopped"
        stopped_at = count()
        time.sleep(lease_s + 1)  # past its lease: the next worker may take the mailbox
        second = h.run_worker(dict(env, HOSTNAME="pod-new"))
        assert second.returncode == 0, second.stderr[-3000:]
        after_second = count()
        status_before = kube.get("mailboxsyncs.mailferry.io", name, namespace)["status"]
        os.kill(first.pid, signal.SIGCONT)
        code = first.wait(timeout=120)
        log = (tmp_path / "stale.log").read_text()
        print(f"stopped at {stopped_at}, after the second worker {after_second}, stale exit {code}")
        assert code == 3, log[-3000:]
        assert "lease_lost_stopped" in log
        assert count() == after_second == TOTAL, "the resumed worker wrote to the destination"
        status_after = kube.get("mailboxsyncs.mailferry.io", name, namespace)["status"]
        assert status_after == status_before, "the resumed worker wrote the status"
        assert status_after["phase"] == "Synced"
    finally:
        count.close()
    diff = compare(dovecot_pair.source, dovecot_pair.destination, user)
    assert (diff.lost, diff.duplicated) == (0, 0), diff
