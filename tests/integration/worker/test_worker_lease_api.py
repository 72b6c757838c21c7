"""The one-writer Lease (mailferry_worker/lease.py) against a real API server: a free mailbox is taken
with one create and freed with one preconditioned delete; a held Lease is never taken twice; a dead
holder's Lease is taken over after it expires, and the dead holder can neither write on (fencing) nor
delete the new holder's Lease; a Lease left by an older worker (released, not deleted) is still taken.
And the status store's check that the read taken before the Lease (or the object a follower kept from
its last write) is still current at the first write, also when that read came from the watch cache.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fixtures.kubeapi import KubeAPI
from mailferry_kube.client import KubeApi, KubeError, connection
from mailferry_worker.checkpoint import KubeStatusStore, StatusMoved
from mailferry_worker.lease import AlreadyRunning, KubeLease, LeaseLost, lease_name

SHORT = 6  # seconds: renewed every second, so a waiting worker gives up after about two
LONG = 120  # no renewal during the test: its requests are exactly the ones counted


class CountingApi(KubeApi):
    """The project's client, recording the method (and the query) of every request it sends."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.methods: list[str] = []
        self.queries: list[tuple[str, dict[str, Any]]] = []

    async def _call(self, method: str, path: str, *args: Any, **kw: Any) -> tuple[int, bytes]:
        self.methods.append(method)
        self.queries.append((method, dict(args[0] or {}) if args else {}))
        return await super()._call(method, path, *args, **kw)


class LaggingCacheApi(CountingApi):
    """A watch cache behind etcd: a cached read answers with `cache[name]` (an older copy), or 404."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.cache: dict[str, dict[str, Any] | None] = {}

    async def get_mailboxsync(self, namespace: str, name: str, cached: bool = False) -> dict[str, Any]:
        if cached and name in self.cache:
            old = self.cache[name]
            if old is None:
                raise KubeError("not in the watch cache yet", 404, "NotFound")
            return old
        return await super().get_mailboxsync(namespace, name, cached)


@pytest.fixture
async def api(kube: KubeAPI) -> AsyncIterator[CountingApi]:
    client = LaggingCacheApi(*connection(str(kube.kubeconfig)))
    try:
        yield client
    finally:
        await client.close()


def _lease(api: KubeApi, namespace: str, box: str, identity: str, duration: int = LONG) -> KubeLease:
    return KubeLease(api, namespace, box, "0c9f3a52-7e51-4b7e-9d0f-5a3d2b1c4e6f", duration, identity)


async def _stored(api: KubeApi, namespace: str, box: str) -> dict[str, Any] | None:
    try:
        return await api.get_lease(namespace, lease_name(box))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


async def test_free_mailbox_taken_with_one_create_and_freed_with_one_delete(
    api: CountingApi, namespace: str
) -> None:
    lease = _lease(api, namespace, "box", "pod-a/1/aa")
    await lease.acquire()
    assert api.methods == ["POST"]
    held = await _stored(api, namespace, "box")
    assert held is not None and held["spec"]["holderIdentity"] == "pod-a/1/aa"
    assert held["metadata"]["ownerReferences"][0]["kind"] == "MailboxSync"
    lease.check()
    api.methods.clear()
    await lease.release()
    assert api.methods == ["DELETE"]
    assert await _stored(api, namespace, "box") is None
    # The next round's worker takes it the same way.
    again = _lease(api, namespace, "box", "pod-b/1/bb")
    await again.acquire()
    await again.release()
    assert await _stored(api, namespace, "box") is None


async def test_workers_at_once_one_holds_the_others_give_up(api: CountingApi, namespace: str) -> None:
    workers = [_lease(api, namespace, "twins", f"pod-{i}/1/{i:02x}", SHORT) for i in range(3)]
    outcomes = await asyncio.gather(*(w.acquire() for w in workers), return_exceptions=True)
    holders = [w for w, outcome in zip(workers, outcomes, strict=True) if outcome is None]
    assert len(holders) == 1, outcomes
    assert all(isinstance(o, AlreadyRunning) for o in outcomes if o is not None), outcomes
    holder = holders[0]
    holder.check()  # renewed all along the others' wait
    stored = await _stored(api, namespace, "twins")
    assert stored is not None and stored["spec"]["holderIdentity"] == holder.identity
    for w in workers:
        await w.release()  # the losers' release frees nothing
    assert await _stored(api, namespace, "twins") is None


async def test_dead_holder_taken_over_after_expiry_and_fenced(api: CountingApi, namespace: str) -> None:
    dead = _lease(api, namespace, "killed", "pod-old/1/0d", SHORT)
    await dead.acquire()
    assert dead._renewer is not None
    dead._renewer.cancel()  # the pod died: no more renewals, no release
    successor = _lease(api, namespace, "killed", "pod-new/1/0e", SHORT)
    await successor.acquire()  # waits out the dead holder's Lease, then takes it
    stored = await _stored(api, namespace, "killed")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "pod-new/1/0e"
    assert stored["spec"]["leaseTransitions"] == 1
    with pytest.raises(LeaseLost):
        dead.check()  # its own validity ended before the successor could take the mailbox
    dead.validity.lost = False  # even when its clock says otherwise, its release deletes nothing:
    dead._renewer = None
    await dead.release()  # DELETE at its old resourceVersion: 409, then it reads someone else holds it
    stored = await _stored(api, namespace, "killed")
    assert stored is not None and stored["spec"]["holderIdentity"] == "pod-new/1/0e"
    successor.check()
    await successor.release()
    assert await _stored(api, namespace, "killed") is None


async def test_release_after_an_unseen_write_still_frees_the_lease(
    api: CountingApi, kube: KubeAPI, namespace: str
) -> None:
    lease = _lease(api, namespace, "unseen", "pod-a/1/aa")
    await lease.acquire()
    # A renewal whose answer this worker never saw (cancelled mid-request): a new resourceVersion.
    obj = await api.get_lease(namespace, lease_name("unseen"))
    obj["spec"]["renewTime"] = "2030-01-01T00:00:00.000000Z"
    kube.kubectl("replace", "-f", "-", "-n", namespace, input=json.dumps(obj))
    api.methods.clear()
    await lease.release()
    assert api.methods == ["DELETE", "GET", "DELETE"]
    assert await _stored(api, namespace, "unseen") is None


async def test_lease_released_by_an_older_worker_is_taken(
    api: CountingApi, kube: KubeAPI, namespace: str
) -> None:
    # Workers before the delete-on-release kept the Lease with no holder.
    kube.apply(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": lease_name("older"), "namespace": namespace},
            "spec": {"leaseDurationSeconds": LONG, "leaseTransitions": 3},
        },
        namespace,
    )
    lease = _lease(api, namespace, "older", "pod-a/1/aa")
    await lease.acquire()
    assert api.methods == ["POST", "GET", "PUT"]
    stored = await _stored(api, namespace, "older")
    assert stored is not None and stored["spec"]["holderIdentity"] == "pod-a/1/aa"
    await lease.release()
    assert await _stored(api, namespace, "older") is None


def _endpoint(secret: str) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 1143, "security": "none", "auth": {"secretRef": {"name": secret}}}


def _mailboxsync(kube: KubeAPI, namespace: str, name: str) -> None:
    kube.apply(
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "MailboxSync",
            "metadata": {"name": name},
            "spec": {
                "source": {"username": "a@example.test", "endpoint": _endpoint("s")},
                "destination": {"username": "a@example.test", "endpoint": _endpoint("d")},
            },
        },
        namespace,
    )


async def test_status_read_before_the_lease_is_written_only_if_unchanged(
    api: CountingApi, kube: KubeAPI, namespace: str
) -> None:
    """The engine plans from the read taken before the lease; the store's first write proves it current."""
    _mailboxsync(kube, namespace, "moved")
    store = KubeStatusStore(api, namespace, LONG)
    _, status, _ = await store.load("moved")
    lease = store.lease("moved")
    await lease.acquire()
    api.methods.clear()
    status.phase = "Syncing"
    await store.save("moved", status)  # unchanged since the read: one PATCH, no second read
    assert api.methods == ["PATCH"]
    await lease.release()

    # The previous holder's last write lands between this worker's read and its lease.
    _, status, _ = await store.load("moved")
    kube.kubectl(
        "patch",
        "mailboxsyncs.mailferry.io",
        "moved",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Synced", "round": 7}}),
    )
    lease = store.lease("moved")
    await lease.acquire()
    status.phase = "Syncing"
    with pytest.raises(StatusMoved):
        await store.save("moved", status)
    stored = kube.get("mailboxsyncs.mailferry.io", "moved", namespace)["status"]
    assert (stored["phase"], stored["round"]) == ("Synced", 7), "the stale plan wrote nothing"
    _, status, _ = await store.load("moved")  # under the lease
    assert status.round == 7
    status.phase = "Syncing"
    await store.save("moved", status)
    assert kube.get("mailboxsyncs.mailferry.io", "moved", namespace)["status"]["phase"] == "Syncing"
    await lease.release()


async def test_kept_read_costs_no_request_and_an_outside_change_is_read_again(
    api: CountingApi, kube: KubeAPI, namespace: str
) -> None:
    """A follower's delta starts from the object its last write returned (no GET); if the operator changed
    the MailboxSync since, the delta's first write raises StatusMoved, writes nothing, and the next read is
    a real one that sees the change."""
    _mailboxsync(kube, namespace, "kept")
    store = KubeStatusStore(api, namespace, LONG)
    await store.load("kept")
    lease = store.lease("kept")
    await lease.acquire()
    _, status, _ = await store.load_kept("kept")
    status.phase, status.round = "Synced", 3
    await store.save("kept", status)

    api.methods.clear()
    _, status, _ = await store.load_kept("kept")
    assert api.methods == [], "a kept read sent a request"
    assert (status.phase, status.round) == ("Synced", 3), "the kept object is the last write's answer"
    status.phase = "Syncing"
    await store.save("kept", status)
    assert api.methods == ["PATCH"]

    # The operator suspends the mailbox between two deltas.
    kube.kubectl("patch", "mailboxsyncs.mailferry.io", "kept", "-n", namespace, "--type=merge",
                 "-p", json.dumps({"spec": {"suspend": True}}))  # fmt: skip
    spec, status, _ = await store.load_kept("kept")
    assert not spec.suspend  # not seen yet: the first write finds out
    status.phase = "Synced"
    with pytest.raises(StatusMoved):
        await store.save("kept", status)
    assert kube.get("mailboxsyncs.mailferry.io", "kept", namespace)["status"]["phase"] == "Syncing"
    spec, status, _ = await store.load("kept")
    assert spec.suspend
    status.phase = "Synced"
    await store.save("kept", status)  # read under the lease: written
    assert kube.get("mailboxsyncs.mailferry.io", "kept", namespace)["status"]["phase"] == "Synced"
    await lease.release()


class LostAnswerApi(CountingApi):
    """The first renewal reaches the API server, but its answer never comes back (a cut connection)."""

    lost = 1
    timeouts: list[float | None]

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        self.timeouts.append(timeout)
        answer = await super().replace_lease(namespace, name, body, timeout)
        if self.lost:
            self.lost -= 1
            raise KubeError(
                "PUT lease: API server unreachable: ServerDisconnectedError", None, "Disconnected"
            )
        return answer


async def test_a_renewal_whose_answer_was_lost_keeps_the_lease(kube: KubeAPI, namespace: str) -> None:
    """The renewal landed but this worker never saw its new resourceVersion: the next renewal's 409 is
    checked against the Lease (still ours), not taken for a takeover, and the Lease stays held."""
    api = LostAnswerApi(*connection(str(kube.kubeconfig)))
    api.timeouts = []
    try:
        lease = _lease(api, namespace, "unseen-renewal", "pod-a/1/ab", SHORT)
        await lease.acquire()
        # renewals every 1.4-2 s: the lost one, the 409 and read, the one after; past the first validity
        await asyncio.sleep(SHORT)
        lease.check()
        assert api.methods[:5] == ["POST", "PUT", "PUT", "GET", "PUT"], api.methods
        stored = await _stored(api, namespace, "unseen-renewal")
        assert stored is not None and stored["spec"]["holderIdentity"] == "pod-a/1/ab"
        # no renewal may hang past the validity it is meant to extend
        assert api.timeouts and all(t is not None and 0 < t <= SHORT * 0.75 for t in api.timeouts), (
            api.timeouts
        )
        await lease.release()
        assert await _stored(api, namespace, "unseen-renewal") is None
    finally:
        await api.close()


async def test_a_rounds_first_read_comes_from_the_watch_cache_and_a_stale_one_writes_nothing(
    api: LaggingCacheApi, kube: KubeAPI, namespace: str
) -> None:
    """A round's Job reads each MailboxSync first from the watch cache (resourceVersion=0), every later
    time from etcd. A cached copy older than etcd's is never written over: the conditional write fails
    (StatusMoved) and the reread that follows comes from etcd."""
    _mailboxsync(kube, namespace, "cached")
    store = KubeStatusStore(api, namespace, LONG, first_read_cached=True)
    await store.load("cached")
    await store.load("cached")
    reads = [q for m, q in api.queries if m == "GET"]
    assert reads == [{"resourceVersion": "0"}, {}], "the first read from the cache, the next from etcd"
    follower = KubeStatusStore(api, namespace, LONG)  # a follower's store: every read from etcd
    api.queries.clear()
    await follower.load("cached")
    assert [q for m, q in api.queries if m == "GET"] == [{}]

    # The cache lags a write: the first read gets the older copy, its write fails, the reread is current.
    api.cache["cached"] = await api.get_mailboxsync(namespace, "cached")
    kube.kubectl(
        "patch", "mailboxsyncs.mailferry.io", "cached", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"phase": "Synced", "round": 7}}),
    )  # fmt: skip
    stale = KubeStatusStore(api, namespace, LONG, first_read_cached=True)
    _, status, _ = await stale.load("cached")
    assert status.round != 7, "the cached copy predates the write"
    status.phase, status.round = "Synced", 8
    with pytest.raises(StatusMoved):
        await stale.save("cached", status)
    stored = kube.get("mailboxsyncs.mailferry.io", "cached", namespace)["status"]
    assert (stored["phase"], stored["round"]) == ("Synced", 7), "the stale read wrote nothing"
    _, status, _ = await stale.load("cached")
    assert status.round == 7, "the reread after StatusMoved comes from etcd"
    status.round = 8
    await stale.save("cached", status)
    assert kube.get("mailboxsyncs.mailferry.io", "cached", namespace)["status"]["round"] == 8

    # Not in the cache yet (just created): read from etcd at once.
    api.cache["cached"] = None
    fresh = KubeStatusStore(api, namespace, LONG, first_read_cached=True)
    _, status, _ = await fresh.load("cached")
    assert status.round == 8
