"""A mailbox run's status in its MailboxSync: totals from the folder checkpoints, checkpoint writes
paced and coalesced during a copy, and how a failure, a throttle or held deletions are reported."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from mailferry_api.common import ErrorInfo
from mailferry_api.conditions import set_condition
from mailferry_api.mailboxsync import FolderCheckpoint, MailboxLag, MailboxSyncStatus, SyncTotals, Throttle
from mailferry_imap.errors import AuthenticationFailed, ImapError, Throttled
from mailferry_kube.client import KubeError

from ..checkpoint import StatusStore
from ..lease import LeaseLost, MailboxLease
from ..logs import log
from . import readiness
from .folderstate import MailboxCounters
from .mirror import MirrorResult
from .run import MailboxResult, Outcome, now

CHECKPOINT_INTERVAL = 1.0  # seconds between two checkpoint writes of one mailbox during a copy


class StatusKeeper:
    """What a mailbox run reports in its MailboxSync's status, and the writing of it (the engine's
    MailboxRunner is one)."""

    def __init__(self, name: str, store: StatusStore) -> None:
        self.name = name
        self.store = store
        self.status = MailboxSyncStatus()
        self.ckpts: dict[str, FolderCheckpoint] = {}
        self.counters = MailboxCounters()
        self.run_skips: Counter[str] = Counter()
        self.folder_errors: list[ErrorInfo] = []
        self.copied = 0
        self.bytes = 0
        self._save_lock = asyncio.Lock()
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        self._superseded = False  # settle(): the pending checkpoint rides on the caller's next write
        self._hurry = asyncio.Event()
        self._save_error: KubeError | LeaseLost | None = None
        self.lease: MailboxLease | None = None

    def log(self, event: str, level: str = "info", **fields: Any) -> None:
        log(event, level, mailboxsync=self.name, **fields)

    def _refresh_totals(self) -> None:
        st = self.status
        folders = list(self.ckpts.values())
        st.folders = folders
        st.skip_reasons = dict(self.counters.skips)
        st.flag_errors = self.counters.flag_errors
        st.totals = SyncTotals(
            messages=sum(f.messages for f in folders),
            copied=sum(f.copied for f in folders),
            skipped=sum(f.skipped for f in folders),
            failed=sum(f.failed for f in folders),
            deleted=sum(f.deleted for f in folders),
            moved=sum(f.moved for f in folders),
            bytes=sum(f.bytes for f in folders),
            expected_bytes=sum(f.bytes for f in folders),
        )
        pending = sum(f.pending for f in folders)
        lag_s = int((now() - st.last_sync_time).total_seconds()) if st.last_sync_time else 0
        st.lag = MailboxLag(seconds=max(0, lag_s), pending_messages=pending)

    async def save(self) -> None:
        async with self._save_lock:
            self._refresh_totals()
            if self.lease is not None:
                self.lease.check()  # fencing: the status belongs to the lease holder
            await self.store.save(self.name, self.status)

    async def checkpoint_soon(self) -> None:
        """Write the checkpoint without stalling the copy: at most one write in flight, coalesced, and
        at most one every CHECKPOINT_INTERVAL seconds, the first too (the latest state; settle() leaves
        it to the run's final write). A run shorter than the interval (a follower's delta, a small
        round) so writes its checkpoints once, with its phase, not twice.

        Safe because recovery never trusts the checkpoint alone: after an unclean stop every folder is
        matched against the destination before anything is re-sent (phase is not Synced until the
        final write), so a checkpoint that lags the copy costs re-match work, never a lost or
        duplicated message.
        """
        if self._save_error is not None:
            raise self._save_error
        if self._saving is None or self._saving.done():
            self._hurry.clear()
            self._saving = asyncio.create_task(self._save_loop())
        else:
            self._save_again = True

    async def _save_loop(self) -> None:
        while True:
            # Each write costs the API server (and etcd) a status update: pace them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), CHECKPOINT_INTERVAL)
            if self._superseded:
                return
            self._save_again = False
            try:
                await self.save()
            except (KubeError, LeaseLost) as exc:
                self._save_error = exc
                return
            if not self._save_again:
                return

    async def settle(self) -> None:
        """No checkpoint write left pending, because the caller's next write carries them all: one
        already in flight is waited for, one still waiting is dropped."""
        if self._saving is not None:
            self._superseded = True
            self._hurry.set()
            try:
                await self._saving
            finally:
                self._superseded = False
        if self._save_error is not None:
            raise self._save_error

    async def _deletions_report(self, mirrored: MirrorResult) -> None:
        """Condition DeletionsHeld (+ an Event when the cap holds removals back)."""
        st = self.status
        held = {f.name: f.deletions_held for f in self.ckpts.values() if f.deletions_held}
        if held:
            detail = ", ".join(
                f"{name}: {n} held (cap {mirrored.held[name][1]})"
                if name in mirrored.held
                else f"{name}: {n}"
                for name, n in sorted(held.items())
            )
            msg = (
                f"the source lost more messages than deletionSafety allows in one round, so none of these "
                f"folders' copies were removed: {detail}. If the source really lost them, raise "
                "deletionSafety.maxPercent; if it comes back, nothing is removed"
            )[:1000]
            changed = not any(
                c.type == "DeletionsHeld" and c.status == "True" and c.message == msg for c in st.conditions
            )
            st.conditions = set_condition(st.conditions, "DeletionsHeld", "True", "DeletionCapExceeded", msg)
            if changed:
                await self.store.event(self.name, "Warning", "DeletionCapExceeded", msg)
        else:
            st.conditions = set_condition(
                st.conditions,
                "DeletionsHeld",
                "False",
                "WithinCap",
                f"removed {mirrored.deleted} and moved {mirrored.moved} copies in this run",
            )

    def _mark_throttled(self, exc: Throttled, until: datetime | None) -> None:
        st = self.status
        st.phase = "Throttled"
        count = (st.throttle.count if st.throttle else 0) + 1
        st.throttle = Throttle(reason=exc.message[:256], until=until, count=count)

    async def _report_backoff(self, exc: Throttled, delay: float) -> None:
        """A throttled folder waits ``delay`` seconds before its retry: say so in status now."""
        self._mark_throttled(exc, now() + timedelta(seconds=delay))
        self.status.conditions = set_condition(
            self.status.conditions, "Throttled", "True", "Throttled", exc.message[:300]
        )
        await self.save()

    def _fail(self, exc: ImapError, outcome: Outcome) -> MailboxResult:
        st = self.status
        reason = "AuthenticationFailed" if isinstance(exc, AuthenticationFailed) else exc.reason
        st.last_error = ErrorInfo(reason=reason, message=exc.message[:1000], time=now())
        if isinstance(exc, Throttled):
            self._mark_throttled(exc, now() + timedelta(seconds=exc.retry_after) if exc.retry_after else None)
        else:
            st.phase = "Failed"
        st.conditions = readiness.failed(
            st.conditions, reason, exc.message[:300], isinstance(exc, Throttled), outcome == "permanent"
        )
        self.log("sync_failed", "error", reason=reason, error=exc.message[:300], outcome=outcome)
        return MailboxResult(self.name, outcome, reason, self.copied, self.bytes, dict(self.run_skips))
