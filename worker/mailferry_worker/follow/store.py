"""The status store a follower hands the engine for one mailbox's delta: the engine runs unchanged.

- ``lease(name)`` lends the Lease the follower holds for as long as it serves the mailbox (acquire and
  release do nothing; ``check`` is the real one, so every destination write stays fenced by it).
- ``save(name, status)`` adds ``status.follow`` to every write the delta makes, and turns each advance of
  a folder checkpoint (the destination confirmed a chunk of APPENDs) into lag samples measured from the
  change's arrival. No extra API request: the lag rides on the checkpoints the engine writes anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailferry_api.mailboxsync import FollowStatus, MailboxSyncSpec, MailboxSyncStatus

from ..checkpoint import StatusStore
from ..lease import MailboxLease


class LentLease:
    """A lease held by the follower, lent to one delta run."""

    def __init__(self, held: MailboxLease) -> None:
        self.held = held

    async def acquire(self) -> None:
        self.held.check()

    def check(self) -> None:
        self.held.check()

    async def release(self) -> None:
        return None


def copied_since(before: dict[str, int], status: MailboxSyncStatus) -> int:
    """Messages the destination confirmed since ``before`` (folder -> lastUid), updating ``before``.
    UIDs above the old checkpoint up to the new one (gaps count: an estimate; a new UIDVALIDITY counts 0)."""
    n = 0
    for f in status.folders:
        old = before.get(f.name)
        if old is not None and f.last_uid > old:
            n += f.last_uid - old
        before[f.name] = f.last_uid
    return n


@dataclass
class FollowState:
    """What the follower knows of one mailbox that its status carries."""

    follow: FollowStatus
    arrival: float | None = None  # wall time the running delta's change was first seen
    on_copied: Callable[[float, int, float], None] | None = None  # (arrival, messages, at): lag samples


class FollowStore:
    """A StatusStore for one followed mailbox's delta runs (see the module docstring)."""

    def __init__(self, inner: StatusStore, name: str, lease: MailboxLease, state: FollowState) -> None:
        self.inner = inner
        self.name = name
        self.lent = LentLease(lease)
        self.state = state
        self._uids: dict[str, int] | None = None
        self._loads = 0
        self.run_started: float | None = None  # wall time the delta started (it saw every earlier change)

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        # A delta's first read is the object the follower last wrote (no request); a read after
        # StatusMoved (the operator changed it meanwhile) is a real one.
        first, self._loads = self._loads == 0, self._loads + 1
        return self._started(await (self.inner.load_kept(name) if first else self.inner.load(name)))

    async def load_kept(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        return self._started(await self.inner.load_kept(name))

    def _started(
        self, loaded: tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]
    ) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        spec, status, generation = loaded
        self._uids = {f.name: f.last_uid for f in status.folders}
        return spec, status, generation

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        if status.phase == "Synced" and self.run_started is not None:
            # The engine's last write of a finished delta: current as of the delta's start.
            self.state.follow.caught_up_at = datetime.fromtimestamp(self.run_started, UTC).replace(
                microsecond=0
            )
        status.follow = self.state.follow
        # The destination confirmed these APPENDs before this write: measured now, counted once written.
        confirmed = time.time()
        n = copied_since(dict(self._uids), status) if self._uids is not None else 0
        await self.inner.save(name, status)
        if self._uids is not None:
            copied_since(self._uids, status)
            if n and self.state.arrival is not None and self.state.on_copied is not None:
                self.state.on_copied(self.state.arrival, n, confirmed)

    def lease(self, name: str) -> MailboxLease:
        return self.lent

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        await self.inner.event(name, type_, reason, message)
