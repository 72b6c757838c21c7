"""Where MailboxSync status (with the per-folder checkpoints) is read and written.

``KubeStatusStore`` merge-patches ``/status`` through the Kubernetes API with field manager
``mailferry-worker``; ``FileStatusStore`` keeps the same document in a JSON file (development).
The engine only sees the ``StatusStore`` protocol.

A worker reads a MailboxSync before it takes the mailbox's lease (the Lease's owner is the MailboxSync's
uid) and plans from that read. Both stores make the first write after such a read conditional on the
MailboxSync being as read (its resourceVersion; the file's text): a write in between (the previous
holder's last status) raises StatusMoved before this worker has written anything, and the caller reads
again under the lease. So a mailbox costs one read, not a second one under the lease "in case".
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mailferry_api.common import GROUP_VERSION
from mailferry_api.mailboxsync import MailboxSyncSpec, MailboxSyncStatus
from mailferry_kube.client import KubeApi, KubeError

from .lease import FileLease, KubeLease, MailboxLease
from .logs import log

# Optional fields the worker clears with an explicit null (merge-patch removes them).
NULLABLE = ("lastError", "throttle")


class StatusMoved(Exception):
    """The MailboxSync changed between the read taken before the lease and this worker's first write:
    nothing was written; read it again (under the lease) and start over."""


class StatusStore(Protocol):
    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]: ...

    async def load_kept(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        """The MailboxSync as this store last read or wrote it (no request when it has it), with the next
        write conditional on it: StatusMoved if anyone wrote in between; ``load`` then reads it again."""
        ...

    async def save(self, name: str, status: MailboxSyncStatus) -> None: ...

    def lease(self, name: str) -> MailboxLease:
        """The lock that makes the caller the only writer of this mailbox (call after ``load``)."""
        ...

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the MailboxSync (best effort: never fails the sync)."""
        ...


def status_patch(status: MailboxSyncStatus) -> dict[str, Any]:
    body = status.to_api()
    body.pop("kopf", None)
    for key in NULLABLE:
        body.setdefault(key, None)
    return body


class KubeStatusStore:
    def __init__(
        self, api: KubeApi, namespace: str, lease_seconds: int = 30, first_read_cached: bool = False
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        # A round's Job reads each MailboxSync once to start with: from the watch cache (a fifth of the
        # API server's CPU of a read from etcd). It may be a little stale, which nothing can act on: every
        # write is conditional on the version read (StatusMoved, then a read from etcd), and a no-op left
        # unwritten counts only if the operator's own view agrees (mailmigration/proofs.py).
        self.first_read_cached = first_read_cached
        self._locks: dict[str, asyncio.Lock] = {}
        self._uids: dict[str, str] = {}
        self._versions: dict[str, str] = {}  # resourceVersion after this worker's last read or write
        self._kept: dict[str, dict[str, Any]] = {}  # the object of that read or write (load_kept)
        self._leases: dict[str, KubeLease] = {}
        self._read_unheld: set[str] = set()  # read before the lease: the next write checks it (module doc)

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        obj = await self._get(name)
        self._keep(name, obj)
        self._uids[name] = obj.get("metadata", {}).get("uid", "")
        lease = self._leases.get(name)
        if lease is not None and lease.held:
            self._read_unheld.discard(name)
        else:
            self._read_unheld.add(name)
        return _parsed(obj)

    async def load_kept(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        # A follower's delta: it holds the Lease, so the object it wrote last is current unless the
        # operator changed it; the conditional first write finds that out for free.
        obj = self._kept.get(name)
        if obj is None:
            return await self.load(name)
        self._read_unheld.add(name)
        return _parsed(obj)

    async def _get(self, name: str) -> dict[str, Any]:
        """The first read of a name from the watch cache when so configured, every later one (a reread
        after StatusMoved) from etcd; a cache that lacks the object yet (just created) is asked no more."""
        if self.first_read_cached and name not in self._kept:
            try:
                return await self.api.get_mailboxsync(self.namespace, name, cached=True)
            except KubeError as exc:
                if exc.status != 404:
                    raise
        return await self.api.get_mailboxsync(self.namespace, name)

    def _keep(self, name: str, obj: dict[str, Any]) -> None:
        self._kept[name] = obj
        self._versions[name] = obj.get("metadata", {}).get("resourceVersion", "")

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            # Fencing the status too: a write carries the resourceVersion this worker last saw, so a write
            # delayed past a takeover (the process paused after its lease check) fails with 409. A 409
            # from anything else (the operator touched the object) is retried once the Lease proves it
            # is still ours.
            for _ in range(3):
                try:
                    obj = await self.api.patch_mailboxsync_status(
                        self.namespace, name, status_patch(status), self._versions.get(name)
                    )
                    self._keep(name, obj)
                    self._read_unheld.discard(name)
                    return
                except KubeError as exc:
                    if exc.status != 409:
                        raise
                    if name in self._read_unheld:
                        raise StatusMoved(f"MailboxSync {name} changed since it was read") from None
                    lease = self._leases.get(name)
                    if lease is not None:
                        await lease.confirm()
                    self._keep(name, await self.api.get_mailboxsync(self.namespace, name))
            raise KubeError(f"MailboxSync {name}: status kept changing under this worker", 409, "Conflict")

    def lease(self, name: str) -> MailboxLease:
        lease = KubeLease(self.api, self.namespace, name, self._uids.get(name) or None, self.lease_seconds)
        self._leases[name] = lease
        return lease

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        ref = {"apiVersion": GROUP_VERSION, "kind": "MailboxSync", "name": name, "namespace": self.namespace}
        if self._uids.get(name):
            ref["uid"] = self._uids[name]
        try:
            await self.api.create_event(self.namespace, event_body(ref, type_, reason, message))
        except KubeError as exc:
            log("event_failed", "warning", mailboxsync=name, reason=reason, error=str(exc)[:200])


class FileStatusStore:
    """One JSON file per MailboxSync: {"spec": {...}, "status": {...}} (atomic replace on save)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._read: dict[str, str] = {}  # the file's text as loaded, until the next save checks it

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        text = self.path(name).read_text()
        self._read[name] = text
        doc = json.loads(text)
        return (
            MailboxSyncSpec.model_validate(doc["spec"]),
            MailboxSyncStatus.model_validate(doc.get("status") or {}),
            None,
        )

    async def load_kept(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        return await self.load(name)  # a local file: reading it costs nothing worth keeping

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        p = self.path(name)
        text = p.read_text()
        if self._read.pop(name, text) != text:
            raise StatusMoved(f"{p.name} changed since it was read")
        doc = json.loads(text)
        doc["status"] = status.to_api()
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, p)

    def lease(self, name: str) -> MailboxLease:
        return FileLease(self.directory / f"{name}.lock")

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        log(
            "event",
            "warning" if type_ == "Warning" else "info",
            mailboxsync=name,
            reason=reason,
            message=message,
        )


def _parsed(obj: dict[str, Any]) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
    spec = MailboxSyncSpec.model_validate(obj.get("spec") or {})
    status = MailboxSyncStatus.model_validate(obj.get("status") or {})
    return spec, status, obj.get("metadata", {}).get("generation")


def event_body(ref: dict[str, str], type_: str, reason: str, message: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref['name'][:200]}.", "namespace": ref["namespace"]},
        "involvedObject": ref,
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "mailferry-worker"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
