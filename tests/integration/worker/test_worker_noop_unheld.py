"""A delta round's no-op without the Lease (sync/engine.py `_noop_unheld`), on a real Dovecot pair and a
real API server: a mailbox whose source proves unchanged since a clean finish gets its status written
without a Lease create and delete, even while someone else holds the Lease; a changed one still takes
the Lease (and, held elsewhere, is left alone: exit 3, nothing written); a status write between the
read and the no-op write sends the run the Lease way, where it reads again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mfw_harness as h

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI
from mailferry_api.mailboxsync import MailboxSyncStatus
from mailferry_imap.credentials import DirSecrets
from mailferry_kube.client import KubeApi, connection
from mailferry_worker.checkpoint import KubeStatusStore
from mailferry_worker.lease import lease_name
from mailferry_worker.sync.engine import MailboxRunner
from mailferry_worker.sync.run import RunSettings

FOLDERS = {"INBOX": 12, "Archive": 4}
OTHER = "other-pod/1/cafe"


def _copied(kube: KubeAPI, namespace: str, pair: DovecotPair, tmp: Path, name: str) -> tuple[str, h.Mailbox]:
    """A new mailbox, copied by round 1 (its MailboxSync Synced: the next round may be a no-op)."""
    user, box, _total = h.pair_box(kube, namespace, pair, tmp, name, FOLDERS)
    code, err = _round(kube, namespace, name, box.secrets_dir, 1)
    assert code == 0, err[-2000:]
    assert box.status()["phase"] == "Synced" and box.status()["round"] == 1
    return user, box


def _round(kube: KubeAPI, namespace: str, name: str, secrets_dir: Path, number: int) -> tuple[int, str]:
    env = h.worker_env(
        kube,
        namespace,
        [name],
        secrets_dir,
        None,
        MAILFERRY_ROUND=str(number),
        MAILFERRY_JOB_NAME=f"r{number}",
    )
    cp = h.run_worker(env)
    return cp.returncode, cp.stderr


def _hold_lease(kube: KubeAPI, namespace: str, name: str, uid: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(name),
            "ownerReferences": [
                {"apiVersion": "mailferry.io/v1alpha1", "kind": "MailboxSync", "name": name, "uid": uid}
            ],
        },
        "spec": {"holderIdentity": OTHER, "leaseDurationSeconds": 600, "acquireTime": now, "renewTime": now},
    }
    kube.apply(body, namespace=namespace)
    return kube.get("leases.coordination.k8s.io", lease_name(name), namespace)


def test_noop_round_takes_no_lease_and_a_changed_mailbox_still_does(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    name = "unheld"
    user, box = _copied(kube, namespace, dovecot_pair, tmp_path, name)

    # Someone else holds the Lease (a stuck pod of an earlier round, say): a no-op needs none.
    uid = kube.get("mailboxsyncs.mailferry.io", name, namespace)["metadata"]["uid"]
    held = _hold_lease(kube, namespace, name, uid)
    code, err = _round(kube, namespace, name, box.secrets_dir, 2)
    assert code == 0, err[-2000:]
    started = [e for e in h.events(err) if e.get("event") == "sync_started"]
    assert [(e.get("noop"), e.get("leased")) for e in started] == [(True, False)], started
    st = box.status()
    assert (st["phase"], st["round"], st["jobName"]) == ("Synced", 2, "r2")
    after = kube.get("leases.coordination.k8s.io", lease_name(name), namespace)
    assert after["metadata"]["resourceVersion"] == held["metadata"]["resourceVersion"], (
        "the Lease was touched"
    )
    assert after["spec"]["holderIdentity"] == OTHER

    # New mail: this run must write the destination, so it needs the Lease; held elsewhere, it writes nothing.
    h.append(dovecot_pair.source, user, "INBOX", [h.message("after round 2")])
    before = h.message_count(dovecot_pair.destination, user)
    code, err = _round(kube, namespace, name, box.secrets_dir, 3)
    assert code == 3 and "already_running" in err, err[-2000:]
    assert h.message_count(dovecot_pair.destination, user) == before
    st = box.status()
    assert (st["round"], st["jobName"]) == (2, "r2"), "a run without the Lease wrote the status of a change"

    # The Lease is free again: the change is copied under it, and the Lease is given back.
    kube.kubectl("delete", "leases.coordination.k8s.io", lease_name(name), "-n", namespace)
    code, err = _round(kube, namespace, name, box.secrets_dir, 4)
    assert code == 0, err[-2000:]
    assert h.message_count(dovecot_pair.destination, user) == before + 1
    assert box.status()["round"] == 4
    gone = kube.kubectl("get", "leases.coordination.k8s.io", lease_name(name), "-n", namespace, check=False)
    assert "NotFound" in gone.stderr


class WrittenInBetween(KubeStatusStore):
    """Another writer's status lands between this worker's read and its first write (once)."""

    kube: KubeAPI
    pending = True

    leased: list[bool]  # per write: did this worker hold the Lease

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        self.leased.append(name in self._leases)
        if self.pending:
            self.pending = False
            patch = json.dumps({"status": {"attempts": 41}})
            self.kube.kubectl(
                "patch", "mailboxsyncs.mailferry.io", name, "-n", self.namespace,
                "--subresource=status", "--type=merge", "-p", patch,
            )  # fmt: skip
        await super().save(name, status)


async def test_a_write_between_the_read_and_the_noop_write_sends_the_run_the_lease_way(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    name = "moved"
    _user, box = _copied(kube, namespace, dovecot_pair, tmp_path, name)

    api = KubeApi(*connection(str(kube.kubeconfig)))
    try:
        store = WrittenInBetween(api, namespace, 30)
        store.kube, store.leased = kube, []
        runner = MailboxRunner(name, store, DirSecrets(box.secrets_dir), RunSettings(round=2, job_name="r2"))
        result = await runner.run()
    finally:
        await api.close()
    assert result.outcome == "synced", result
    assert store.leased == [False, True], "first the no-op write without the Lease, then one under it"
    st = box.status()
    # 42: the write came after a fresh read (41), not from the stale one (1 + 1)
    assert (st["phase"], st["round"], st["attempts"]) == ("Synced", 2, 42)
