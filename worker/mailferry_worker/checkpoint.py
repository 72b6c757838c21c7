"""Where MailboxSync status (with the per-folder checkpoints) is read and written.

``KubeStatusStore`` merge-patches ``/status`` through the Kubernetes API with field manager
``mailferry-worker``; ``FileStatusStore`` keeps the same document in a JSON file (development).
The engine only sees the ``StatusStore`` protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Protocol

from mailferry_api.mailboxsync import MailboxSyncSpec, MailboxSyncStatus
from mailferry_kube.client import KubeApi

# Optional fields the worker clears with an explicit null (merge-patch removes them).
NULLABLE = ("lastError", "throttle")


class StatusStore(Protocol):
    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]: ...

    async def save(self, name: str, status: MailboxSyncStatus) -> None: ...


def status_patch(status: MailboxSyncStatus) -> dict[str, Any]:
    body = status.to_api()
    body.pop("kopf", None)
    for key in NULLABLE:
        body.setdefault(key, None)
    return body


class KubeStatusStore:
    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        obj = await self.api.get_mailboxsync(self.namespace, name)
        spec = MailboxSyncSpec.model_validate(obj.get("spec") or {})
        status = MailboxSyncStatus.model_validate(obj.get("status") or {})
        return spec, status, obj.get("metadata", {}).get("generation")

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            await self.api.patch_mailboxsync_status(self.namespace, name, status_patch(status))


class FileStatusStore:
    """One JSON file per MailboxSync: {"spec": {...}, "status": {...}} (atomic replace on save)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        doc = json.loads(self.path(name).read_text())
        return (
            MailboxSyncSpec.model_validate(doc["spec"]),
            MailboxSyncStatus.model_validate(doc.get("status") or {}),
            None,
        )

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        p = self.path(name)
        doc = json.loads(p.read_text())
        doc["status"] = status.to_api()
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, p)
