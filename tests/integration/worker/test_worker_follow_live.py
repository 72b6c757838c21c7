"""Live follow mode (issue 20): one `mailferry-worker follow` process serves three mailboxes on a real
Dovecot pair (through TCP fault proxies) with the real API server holding their MailboxSyncs and Leases.

Mail is delivered (APPEND) to INBOX and to another folder while it runs: it reaches the destination
without another worker process. Then every connection is cut (and new ones refused for a while) and
the source Dovecot is restarted, with mail delivered meanwhile. What must hold: nothing lost, nothing
duplicated (`mailferry verify` per mailbox), lag recorded in status and on /metrics, the deltas of the
live mail logging in no more (they reuse the connections kept since the first deltas), the feed back on
after each fault, SIGTERM -> exit 0 with every Lease released. The IDLE + STATUS sweep path runs the
same scenario with NOTIFY disallowed.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mfw_harness as h
import pytest

from chaos.faultproxy import FaultProxy
from fixtures._proc import free_port
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

FOLDERS = {"INBOX": 12, "Archive": 6}
BOXES = 3


@pytest.fixture
def proxies(dovecot_pair: DovecotPair) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    src = FaultProxy("127.0.0.1", dovecot_pair.source.port).start()
    dst = FaultProxy("127.0.0.1", dovecot_pair.destination.port).start()
    try:
        yield src, dst
    finally:
        src.stop()
        dst.stop()


def _wait(what: str, cond: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _deliver(pair: DovecotPair, users: list[str], tag: str) -> None:
    for i, user in enumerate(users):
        h.append(pair.source, user, "INBOX", [h.message(f"{tag} inbox {i}")])
        h.append(pair.source, user, "Archive", [h.message(f"{tag} archive {i}")])


def _same(pair: DovecotPair, users: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            h.imap_count(pair.source, u, f) == h.imap_count(pair.destination, u, f)
            for u in users
            for f in FOLDERS
        )

    return check


def _follow_status(kube: KubeAPI, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get("mailboxsyncs.mailferry.io", name, namespace)
    return (obj.get("status") or {}).get("follow") or {}


@pytest.mark.parametrize("modes", ["notify,idle,poll", "idle,poll"])
def test_follow_copies_changes_through_cuts_and_a_restart(
    kube: KubeAPI,
    namespace: str,
    dovecot_pair: DovecotPair,
    proxies: tuple[FaultProxy, FaultProxy],
    tmp_path: Path,
    modes: str,
) -> None:
    src_proxy, dst_proxy = proxies
    secrets_dir = tmp_path / "secrets"
    names, users = [], []
    for i in range(BOXES):
        user = f"follow{i}-{secrets.token_hex(3)}@example.test"
        dovecot_pair.source.add_user(user, "pw-src")
        dovecot_pair.destination.add_user(user, "pw-dst")
        h.bulk_corpus(dovecot_pair.source, user, FOLDERS, size=1500)
        name = f"follow-{i}"
        h.user_mailboxsync(
            kube,
            namespace,
            name,
            user,
            h.endpoint(dovecot_pair.source, "src-secret", port=src_proxy.port),
            h.endpoint(dovecot_pair.destination, "dst-secret", port=dst_proxy.port),
            secrets_dir,
        )
        names.append(name)
        users.append(user)
    port = free_port()
    env = h.worker_env(
        kube,
        namespace,
        names,
        secrets_dir,
        None,
        MAILFERRY_ROUND="2",
        MAILFERRY_JOB_NAME="test-follow-r2-b0",
        MAILFERRY_FOLLOW_MODES=modes,
        MAILFERRY_FOLLOW_IDLE_SECONDS="5",
        MAILFERRY_FOLLOW_SWEEP_SECONDS="2",
        MAILFERRY_FOLLOW_HEARTBEAT_SECONDS="2",
        MAILFERRY_FOLLOW_POLL_SECONDS="30",
        MAILFERRY_METRICS_PORT=str(port),
    )
    log = tmp_path / "follow.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([h.WORKER, "follow"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # the first delta of each mailbox (nothing copied before: its bulk copy)
        _wait("the first deltas", _same(dovecot_pair, users))
        want = modes.split(",")[0]
        _wait(
            f"every feed in {want} mode",
            lambda: all(_follow_status(kube, namespace, n).get("mode") == want for n in names),
        )
        # mail delivered while the follower runs, to INBOX and to another folder
        logins_before = src_proxy.stats.connections + dst_proxy.stats.connections
        deltas_before = _deltas(port)
        for k in range(3):
            _deliver(dovecot_pair, users, f"live{k}")
        _wait("live mail on the destination", _same(dovecot_pair, users))
        _wait("the live deltas finished", lambda: _deltas(port) >= deltas_before + BOXES)
        logins = src_proxy.stats.connections + dst_proxy.stats.connections - logins_before
        # Each delta logged in on both sides (three times) before the follower kept its connections.
        assert logins < _deltas(port) - deltas_before, (logins, _deltas(port) - deltas_before)
        _wait(
            "lag in status",
            lambda: all(_follow_status(kube, namespace, n).get("lastLagSeconds") is not None for n in names),
        )
        # a network cut: every connection reset, new ones refused while mail arrives
        src_proxy.refuse(True)
        dst_proxy.refuse(True)
        assert src_proxy.cut_all() + dst_proxy.cut_all() >= BOXES
        _deliver(dovecot_pair, users, "during-cut")
        time.sleep(2)
        src_proxy.refuse(False)
        dst_proxy.refuse(False)
        _deliver(dovecot_pair, users, "after-cut")
        _wait("mail of the cut on the destination", _same(dovecot_pair, users))
        # the source Dovecot restarted mid-run, mail delivered before and after
        _deliver(dovecot_pair, users, "before-restart")
        dovecot_pair.source.restart()
        _deliver(dovecot_pair, users, "after-restart")
        _wait("mail of the restart on the destination", _same(dovecot_pair, users))
        # lag recovers: a new delivery is copied with the feed back on
        _wait(
            f"every feed back in {want} mode",
            lambda: "follow_feed_lost" in log.read_text() and _feeds_up(port, BOXES),
        )
        _deliver(dovecot_pair, users, "recovered")
        _wait("mail after recovery on the destination", _same(dovecot_pair, users))
        assert proc.poll() is None, log.read_text()[-3000:]  # one process all along: no new Job
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        count = _metric(metrics, f'mailferry_follow_lag_seconds_count{{mode="{want}"}}')
        assert count >= BOXES * 2 * 6, metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    for name, user in zip(names, users, strict=True):
        rc, out = h.verify_mailboxsync(kube, namespace, name)
        assert rc == 0, out
        lease = kube.kubectl("get", "leases", f"mailboxsync.{name}", "-n", namespace, check=False)
        assert "NotFound" in lease.stderr, lease.stdout  # released: deleted
        st = _follow_status(kube, namespace, name)
        assert st["caughtUpAt"] and st["p95LagSeconds"] is not None and st["samples"] > 0, st
        for folder, n in FOLDERS.items():
            assert h.imap_count(dovecot_pair.destination, user, folder) == n + 8, (name, folder)


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def _deltas(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("mailferry_follow_deltas_total{")
    )


def _feeds_up(port: int, n: int) -> bool:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return False
    up = sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("mailferry_follow_mailboxes{") and 'watching="true"' in line
    )
    return up >= n
