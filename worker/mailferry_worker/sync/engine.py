"""Sync one MailboxSync (several folders over several connections), keep its status, classify the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mailferry_api.common import ErrorInfo
from mailferry_api.conditions import set_condition
from mailferry_api.mailboxsync import (
    FolderCheckpoint,
    MailboxLag,
    MailboxSyncSpec,
    MailboxSyncStatus,
    SyncTotals,
    Throttle,
)
from mailferry_api.providers import with_presets
from mailferry_imap.client import FolderInfo, ImapClient, SelectInfo
from mailferry_imap.credentials import Connector, SecretSource, connectors
from mailferry_imap.errors import (
    AuthenticationFailed,
    CommandFailed,
    DestinationChanged,
    FolderVanished,
    ImapError,
    Throttled,
    TLSError,
)
from mailferry_kube.client import KubeError

from .. import settings
from ..checkpoint import StatusStore
from ..lease import AlreadyRunning, LeaseLost, MailboxLease
from ..logs import log
from ..plan import FolderPlan, folder_unchanged, plan_folders
from . import readiness
from .folder import FolderSync, MailboxCounters
from .mirror import Mirror, MirrorResult
from .pacing import Pacer, pacer_for

CHECKPOINT_INTERVAL = 1.0  # seconds between two checkpoint writes of one mailbox during a copy
REMATCH_AGAIN = 5  # times a folder is matched again when its destination changed during a re-match
REMATCH_DELAY = 0.5  # seconds before matching again (a late APPEND of a lost connection settles)

# busy: another worker holds the mailbox (AlreadyRunning); lost: this one lost its lease mid-way (LeaseLost).
Outcome = Literal["synced", "permanent", "transient", "config", "suspended", "busy", "lost"]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class MailboxResult:
    name: str
    outcome: Outcome
    reason: str | None = None
    copied: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class RunSettings:
    round: int = 0
    job_name: str | None = None
    max_retries: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    connections: int | None = None  # overrides spec.connectionsPerMailbox
    ca_file: str | None = None
    egress_allow: tuple[str, ...] = ()  # OAuth2 token URLs the installation allows

    @classmethod
    def from_env(cls, **kw: Any) -> RunSettings:
        env = settings.current()
        return cls(
            max_retries=env.max_retries,
            backoff_base=env.backoff_base,
            ca_file=env.ca_file or None,
            egress_allow=env.egress_allow,
            **kw,
        )


class _GiveUp(Exception):
    def __init__(self, error: ImapError) -> None:
        super().__init__(error.message)
        self.error = error


def backoff(attempt: int, base: float, cap: float, hint: float | None = None) -> float:
    """Exponential backoff with full jitter; a server's suggested delay is a floor."""
    delay = random.uniform(base, min(cap, base * (2**attempt)))
    return min(cap, max(delay, hint or 0.0))


class MailboxRunner:
    def __init__(self, name: str, store: StatusStore, secrets: SecretSource, settings: RunSettings) -> None:
        self.name = name
        self.store = store
        self.secrets = secrets
        self.settings = settings
        self.status = MailboxSyncStatus()
        self.spec: MailboxSyncSpec | None = None
        self.ckpts: dict[str, FolderCheckpoint] = {}
        self.counters = MailboxCounters()
        self.run_skips: Counter[str] = Counter()
        self.folder_errors: list[ErrorInfo] = []
        self.copied = 0
        self.bytes = 0
        self._dest_names: set[str] = set()
        self._save_lock = asyncio.Lock()
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        self._hurry = asyncio.Event()
        self._save_error: KubeError | LeaseLost | None = None
        self._stop = False
        self.lease: MailboxLease | None = None
        # Source folder -> {source UID: destination UID} of copies the mirror pass moved there this run.
        self.placed: dict[str, dict[int, int]] = {}
        self.mirror_looks: dict[str, SelectInfo] = {}  # source folder -> the mirror pass's SELECT
        self.pacer: Pacer | None = None  # set per run from the sides' budgets (sync/pacing.py)

    def log(self, event: str, level: str = "info", **fields: Any) -> None:
        log(event, level, mailboxsync=self.name, **fields)

    # ----------------------------------------------------------------- status
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
        at most one every CHECKPOINT_INTERVAL seconds (the latest state; flush() writes it at once).

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
            self._save_again = False
            try:
                await self.save()
            except (KubeError, LeaseLost) as exc:
                self._save_error = exc
                return
            # Each write costs the API server (and etcd) a status update: pace them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), CHECKPOINT_INTERVAL)
            if not self._save_again:
                return

    async def flush(self) -> None:
        if self._saving is not None:
            self._hurry.set()
            await self._saving
        if self._save_error is not None:
            raise self._save_error

    # -------------------------------------------------------------------- run
    async def _load(self) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None] | MailboxResult:
        try:
            spec, status, generation = await self.store.load(self.name)
        except (KubeError, OSError, ValueError) as exc:
            self.log("mailboxsync_unreadable", "error", error=str(exc)[:300])
            return MailboxResult(self.name, "config", "MailboxSyncUnreadable")
        # The providers' presets (folders, size limit, connections) as the rules this run follows.
        return with_presets(spec, spec.source.endpoint, spec.destination.endpoint), status, generation

    async def run(self) -> MailboxResult:
        """Take the mailbox's lease, sync under it, give it back. Without the lease nothing is written."""
        loaded = await self._load()
        if isinstance(loaded, MailboxResult):
            return loaded
        if loaded[0].suspend:
            self.log("suspended")
            return MailboxResult(self.name, "suspended")
        lease = self.store.lease(self.name)
        try:
            await lease.acquire()
        except AlreadyRunning as exc:
            self.log("already_running", "warning", reason=exc.reason, error=str(exc)[:300])
            return MailboxResult(self.name, "busy", exc.reason)
        except (KubeError, OSError) as exc:
            self.log("lease_failed", "error", error=str(exc)[:300])
            return MailboxResult(self.name, "transient", "LeaseUnavailable")
        self.lease = lease
        try:
            # Read again under the lease: the status read before may predate another worker's last write.
            loaded = await self._load()
            if isinstance(loaded, MailboxResult):
                return loaded
            return await self._run_held(*loaded)
        except LeaseLost as exc:
            self.log("lease_lost_stopped", "warning", reason=exc.reason, error=str(exc)[:300])
            return MailboxResult(self.name, "lost", exc.reason, self.copied, self.bytes)
        finally:
            await lease.release()

    async def _run_held(
        self, spec: MailboxSyncSpec, status: MailboxSyncStatus, generation: int | None
    ) -> MailboxResult:
        self.spec, self.status = spec, status
        if spec.suspend:
            self.log("suspended")
            return MailboxResult(self.name, "suspended")
        self.ckpts = {f.name: f for f in status.folders}
        self.counters = MailboxCounters(Counter(status.skip_reasons), status.flag_errors)
        started = now()
        clean = status.phase == "Synced"
        status.attempts += 1
        status.observed_generation = generation
        status.job_name = self.settings.job_name
        if clean and self.ckpts and await self._quick_noop(spec):
            # Nothing changed on the source since a clean finish: no destination connection, one write.
            self.log("sync_started", clean_previous=clean, attempt=status.attempts, noop=True)
            result = MailboxResult(self.name, "synced")
        else:
            status.phase = "Syncing"
            status.conditions = readiness.running(status.conditions)
            try:
                await self.save()
            except (KubeError, OSError) as exc:
                self.log("status_write_failed", "error", error=str(exc)[:300])
                return MailboxResult(self.name, "config", "StatusWriteFailed")
            self.log("sync_started", clean_previous=clean, attempt=status.attempts)
            try:
                result = await self._sync(spec, clean)
                await self.flush()
            except LeaseLost:
                raise
            except KubeError as exc:
                self.log("status_write_failed", "error", error=str(exc)[:300])
                return MailboxResult(self.name, "transient", "StatusWriteFailed")
        if result.outcome == "synced":
            status.phase = "Synced"
            status.last_sync_time = started
            status.round = self.settings.round
            status.throttle = None
            status.last_error = self.folder_errors[-1] if self.folder_errors else None
            if self.run_skips.get("MessageTooLarge") and status.last_error is None:
                status.last_error = ErrorInfo(
                    reason="MessageTooLarge",
                    message=f"{self.run_skips['MessageTooLarge']} message(s) over maxMessageBytes skipped",
                    time=now(),
                )
            msg = f"copied {result.copied} message(s) in this run"
            status.conditions = readiness.synced(status.conditions, msg)
        try:
            await self.save()
        except KubeError as exc:
            self.log("status_write_failed", "error", error=str(exc)[:300])
            return MailboxResult(self.name, "transient", "StatusWriteFailed")
        self.log(
            "sync_finished",
            outcome=result.outcome,
            reason=result.reason,
            copied=result.copied,
            bytes=result.bytes,
            skipped=result.skipped,
        )
        return result

    @property
    def _mirroring(self) -> bool:
        return self.spec is not None and self.spec.deletions == "mirror"

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

    def _fail(self, exc: ImapError, outcome: Outcome) -> MailboxResult:
        st = self.status
        reason = "AuthenticationFailed" if isinstance(exc, AuthenticationFailed) else exc.reason
        st.last_error = ErrorInfo(reason=reason, message=exc.message[:1000], time=now())
        if isinstance(exc, Throttled):
            st.phase = "Throttled"
            count = (st.throttle.count if st.throttle else 0) + 1
            until = now() + timedelta(seconds=exc.retry_after) if exc.retry_after else None
            st.throttle = Throttle(reason=exc.message[:256], until=until, count=count)
        else:
            st.phase = "Failed"
        st.conditions = readiness.failed(
            st.conditions, reason, exc.message[:300], isinstance(exc, Throttled), outcome == "permanent"
        )
        self.log("sync_failed", "error", reason=reason, error=exc.message[:300], outcome=outcome)
        return MailboxResult(self.name, outcome, reason, self.copied, self.bytes, dict(self.run_skips))

    async def _open(self, c: Connector) -> ImapClient:
        attempt = 0
        while True:
            try:
                return await c.open()
            except ImapError as exc:
                if not exc.transient or attempt >= self.settings.max_retries:
                    raise
                delay = backoff(
                    attempt,
                    self.settings.backoff_base,
                    self.settings.backoff_cap,
                    getattr(exc, "retry_after", None),
                )
                self.log(
                    "connect_retry", side=c.side, reason=exc.reason, delay=round(delay, 2), attempt=attempt
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def _sync(self, spec: MailboxSyncSpec, clean: bool) -> MailboxResult:
        pacer = pacer_for(spec.source.endpoint, spec.destination.endpoint, spec.max_message_bytes)
        self.pacer = pacer if pacer.active else None
        src_c, dst_c = connectors(
            spec.source, spec.destination, self.secrets, spec.secret_key, self.settings.egress_allow
        )
        src_c.ca_file = dst_c.ca_file = self.settings.ca_file
        if self.lease is not None:
            dst_c.guard = self.lease.check
        src: ImapClient | None = None
        dst: ImapClient | None = None
        try:
            opened = await asyncio.gather(self._open(src_c), self._open(dst_c), return_exceptions=True)
            src = opened[0] if isinstance(opened[0], ImapClient) else None
            dst = opened[1] if isinstance(opened[1], ImapClient) else None
            for o in opened:
                if isinstance(o, BaseException):
                    raise o
            assert src is not None and dst is not None
            (src_folders, (sprefix, _)), (dst_folders, (dprefix, ddelim)) = await asyncio.gather(
                _listing(src), _listing(dst)
            )
        except ImapError as exc:
            for c in (src, dst):
                if c is not None:
                    await c.close()
            permanent = isinstance(exc, AuthenticationFailed | TLSError) or not exc.transient
            return self._fail(exc, "permanent" if permanent else "transient")
        assert src is not None and dst is not None
        plans = plan_folders(
            src_folders,
            dst_folders,
            spec.folders,
            source_prefix=sprefix,
            dest_prefix=dprefix,
            dest_delimiter=ddelim,
        )
        self._dest_names = {f.name for f in dst_folders if f.selectable}
        self.log("folders_planned", count=len(plans))
        try:
            if clean:
                plans = await self._changed_only(src, plans)
            if self._mirroring and plans:
                # Moves only after a clean finish: after an interruption a new source message may have a
                # copy already (an APPEND not checkpointed), and a moved copy would be a second one.
                mirrored = await Mirror(src, dst, spec, self.ckpts, self.log, moves=clean).run(plans)
                self.placed, self.mirror_looks = mirrored.placed, mirrored.looks
                await self._deletions_report(mirrored)
        except ImapError as exc:
            await src.close()
            await dst.close()
            return self._fail(exc, "transient" if exc.transient else "permanent")
        queue: asyncio.Queue[FolderPlan] = asyncio.Queue()
        for p in plans:
            queue.put_nowait(p)
        n = max(1, min(self.settings.connections or spec.connections_per_mailbox, len(plans) or 1))
        first: list[tuple[ImapClient | None, ImapClient | None]] = [(src, dst)] + [(None, None)] * (n - 1)
        tasks = [
            asyncio.create_task(self._worker(queue, conns, src_c, dst_c, clean, spec)) for conns in first
        ]
        errors: list[BaseException] = []
        try:
            for t in asyncio.as_completed(tasks):
                try:
                    await t
                except _GiveUp as g:
                    errors.append(g)
                    self._stop = True
                except ImapError as exc:  # permanent mailbox-level (auth during a reconnect)
                    errors.append(exc)
                    self._stop = True
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
        for e in errors:
            if isinstance(e, ImapError) and not e.transient:
                return self._fail(e, "permanent")
        for e in errors:
            if isinstance(e, _GiveUp):
                return self._fail(e.error, "transient")
        return MailboxResult(self.name, "synced", None, self.copied, self.bytes, dict(self.run_skips))

    async def _quick_noop(self, spec: MailboxSyncSpec) -> bool:
        """True when one source connection proves every selected folder unchanged since its checkpoint.

        Any doubt (an error, a new folder, a folder without a finished checkpoint) means False: the
        normal path then runs and reports errors properly.
        """
        src_c, _ = connectors(
            spec.source, spec.destination, self.secrets, spec.secret_key, self.settings.egress_allow
        )
        src_c.ca_file = self.settings.ca_file
        try:
            src = await src_c.open()
        except ImapError:
            return False
        try:
            folders = await src.list_folders()
            prefix, _ = await src.namespace()
            plans = plan_folders(folders, [], spec.folders, source_prefix=prefix)
            if not plans or any(
                (ck := self.ckpts.get(p.source)) is None or ck.last_sync_time is None for p in plans
            ):
                return False
            statuses = await src.status_many([p.source for p in plans])
            for p in plans:
                st = statuses.get(p.source)
                if not isinstance(st, dict) or not folder_unchanged(
                    self.ckpts[p.source], st, mirror=spec.deletions == "mirror"
                ):
                    return False
            for p in plans:
                ck = self.ckpts[p.source]
                ck.pending = 0
                ck.messages = statuses[p.source].get("MESSAGES", ck.messages)  # type: ignore[union-attr]
            return True
        except ImapError:
            return False
        finally:
            await src.close()

    async def _changed_only(self, src: ImapClient, plans: list[FolderPlan]) -> list[FolderPlan]:
        """One pipelined STATUS round trip for every folder; drop those the checkpoint proves unchanged."""
        known = [p for p in plans if p.source in self.ckpts]
        if not known:
            return plans
        statuses = await src.status_many([p.source for p in known])
        out: list[FolderPlan] = []
        for p in plans:
            st = statuses.get(p.source)
            ck = self.ckpts.get(p.source)
            if isinstance(st, dict) and ck is not None and folder_unchanged(ck, st, mirror=self._mirroring):
                ck.pending = 0
                ck.messages = st.get("MESSAGES", ck.messages)
                continue
            if isinstance(st, ImapError) and st.transient:
                raise st
            out.append(p)  # changed, new, or an error the folder sync reports properly
        self.log("folders_changed", count=len(out), unchanged=len(plans) - len(out))
        return out

    async def _worker(
        self,
        queue: asyncio.Queue[FolderPlan],
        conns: tuple[ImapClient | None, ImapClient | None],
        src_c: Connector,
        dst_c: Connector,
        clean: bool,
        spec: MailboxSyncSpec,
    ) -> None:
        src, dst = conns
        try:
            if src is None or dst is None:
                # An extra connection pair: servers cap connections per user (Dovecot [LIMIT], Gmail 15,
                # Microsoft 20). If the server refuses one, sync with fewer instead of failing the mailbox.
                res = await asyncio.gather(src_c.open(), dst_c.open(), return_exceptions=True)
                errs = [r for r in res if isinstance(r, BaseException)]
                if errs:
                    for r in res:
                        if isinstance(r, ImapClient):
                            await r.close()
                    exc = errs[0]
                    if isinstance(exc, ImapError) and exc.transient:
                        self.log(
                            "extra_connection_refused", "warning", reason=exc.reason, error=exc.message[:200]
                        )
                        return
                    raise exc
                src, dst = res[0], res[1]  # type: ignore[assignment]
            while not self._stop:
                try:
                    plan = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                attempt = 0
                full = not clean
                while True:
                    try:
                        if src is None:
                            src = await self._open(src_c)
                        if dst is None:
                            dst = await self._open(dst_c)
                        await self._folder(src, dst, plan, spec, full)
                        break
                    except FolderVanished as exc:
                        self.folder_errors.append(
                            ErrorInfo(reason="FolderVanished", message=exc.message, time=now())
                        )
                        self.log("folder_vanished", "warning", folder=plan.source, error=exc.message)
                        if src is not None and src.closed:
                            src = None
                        break
                    except CommandFailed as exc:
                        self.folder_errors.append(
                            ErrorInfo(
                                reason="FolderFailed",
                                message=f"{plan.source}: {exc.message[:300]}",
                                time=now(),
                            )
                        )
                        self.log("folder_failed", "error", folder=plan.source, error=exc.message[:300])
                        break
                    except ImapError as exc:
                        if not exc.transient:
                            raise
                        await _close(src)
                        await _close(dst)
                        src = dst = None
                        full = True  # an APPEND in flight may have landed: look before re-sending
                        if attempt >= self.settings.max_retries:
                            raise _GiveUp(exc) from None
                        delay = backoff(
                            attempt,
                            self.settings.backoff_base,
                            self.settings.backoff_cap,
                            getattr(exc, "retry_after", None),
                        )
                        attempt += 1
                        self.log(
                            "folder_retry",
                            "warning",
                            folder=plan.source,
                            reason=exc.reason,
                            error=exc.message[:200],
                            delay=round(delay, 2),
                            attempt=attempt,
                        )
                        if isinstance(exc, Throttled):
                            st = self.status
                            st.phase = "Throttled"
                            st.throttle = Throttle(
                                reason=exc.message[:256],
                                until=now() + timedelta(seconds=delay),
                                count=(st.throttle.count if st.throttle else 0) + 1,
                            )
                            st.conditions = set_condition(
                                st.conditions, "Throttled", "True", "Throttled", exc.message[:300]
                            )
                            await self.save()
                        await asyncio.sleep(delay)
                        if self.status.phase == "Throttled":
                            self.status.phase = "Syncing"
        finally:
            for c in (src, dst):
                if c is not None:
                    await c.close()

    async def _folder(
        self, src: ImapClient, dst: ImapClient, plan: FolderPlan, spec: MailboxSyncSpec, full: bool
    ) -> None:
        ck = self.ckpts.get(plan.source)
        if ck is None:
            ck = FolderCheckpoint(name=plan.source, destination=plan.destination)
            self.ckpts[plan.source] = ck
        for again in range(REMATCH_AGAIN + 1):
            fs = FolderSync(
                src,
                dst,
                plan,
                ck,
                spec,
                full_match=full,
                checkpoint=self.checkpoint_soon,
                dest_exists=lambda n: n in self._dest_names,
                dest_created=self._dest_names.add,
                log=lambda ev, **kw: self.log(ev, **kw),
                counters=self.counters,
                placed=self.placed.get(plan.source),
                mirror_look=self.mirror_looks.get(plan.source),
                pacer=self.pacer,
            )
            try:
                stats = await fs.run()
                break
            except DestinationChanged as exc:
                if again == REMATCH_AGAIN:
                    raise
                self.log("destination_changed", "warning", folder=plan.source, error=exc.message[:200])
                await asyncio.sleep(REMATCH_DELAY)
            finally:
                self.copied += fs.stats.copied
                self.bytes += fs.stats.bytes
                self.run_skips.update(fs.stats.skipped)
        if not stats.unchanged:
            self.log(
                "folder_synced",
                folder=plan.source,
                destination=plan.destination,
                copied=stats.copied,
                present=stats.present,
                full_match=stats.full_match,
                flags_updated=stats.flags_updated,
            )


async def _listing(c: ImapClient) -> tuple[list[FolderInfo], tuple[str, str | None]]:
    return await c.list_folders(), await c.namespace()


async def _close(c: ImapClient | None) -> None:
    if c is not None:
        with contextlib.suppress(Exception):
            await c.close()
