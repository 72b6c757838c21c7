"""Sync one MailboxSync: take its lease, plan its folders, run them over several connection pairs (each
folder retried with backoff while errors are transient), and classify the outcome.

Beside it: run.py (the run's settings and result), connections.py (connectors, logins, listings),
unchanged.py (what STATUS proves unchanged), status.py (what the run reports and the writing of it),
folder.py (one folder)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime

from mailferry_api.common import ErrorInfo
from mailferry_api.mailboxsync import FolderCheckpoint, MailboxSyncSpec, MailboxSyncStatus
from mailferry_api.providers import with_presets
from mailferry_imap.client import ImapClient, SelectInfo
from mailferry_imap.credentials import Connector, SecretSource
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

from ..checkpoint import StatusMoved, StatusStore
from ..clients import close_all, open_both
from ..gmail.destination import gmail_dest_connector
from ..gmail.source import gmail_connector
from ..lease import AlreadyRunning, LeaseLost
from ..plan import FolderPlan, plan_folders
from . import readiness
from .connections import OwnSessions, Sessions, connectors_for, open_retrying
from .folder import FolderSync
from .folderstate import MailboxCounters
from .mirror import Mirror
from .noopproof import may_leave_status
from .pacing import Pacer, pacer_for
from .run import MailboxResult, RunSettings, backoff, now
from .status import StatusKeeper
from .unchanged import all_unchanged, changed_only

REMATCH_AGAIN = 5  # times a folder is matched again when its destination changed during a re-match
REMATCH_DELAY = 0.5  # seconds before matching again (a late APPEND of a lost connection settles)


class _GiveUp(Exception):
    def __init__(self, error: ImapError) -> None:
        super().__init__(error.message)
        self.error = error


class MailboxRunner(StatusKeeper):
    def __init__(
        self,
        name: str,
        store: StatusStore,
        secrets: SecretSource,
        settings: RunSettings,
        sessions: Sessions | None = None,
        noop_unheld: bool = True,
    ) -> None:
        super().__init__(name, store)
        # A round's run proves a no-op before it takes the lease (_noop_unheld); a follower holds its
        # Leases all along, and its writes stay fenced by them.
        self.noop_unheld = noop_unheld
        self.secrets = secrets
        self.settings = settings
        # A round's run logs in and lists for itself; a follower lends the connections it keeps (follow/).
        self.sessions: Sessions = sessions or OwnSessions()
        self.spec: MailboxSyncSpec | None = None
        self._dest_names: set[str] = set()
        self._stop = False
        # Source folder -> {source UID: destination UID} of copies the mirror pass moved there this run.
        self.placed: dict[str, dict[int, int]] = {}
        self.mirror_looks: dict[str, SelectInfo] = {}  # source folder -> the mirror pass's SELECT
        self.pacer: Pacer | None = None  # set per run from the sides' budgets (sync/pacing.py)
        self._source_changed = False  # _noop_unheld saw changes on the source (for the same read)

    async def _load(self) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None] | MailboxResult:
        try:
            spec, status, generation = await self.store.load(self.name)
        except (KubeError, OSError, ValueError) as exc:
            self.log("mailboxsync_unreadable", "error", error=str(exc)[:300])
            return MailboxResult(self.name, "config", "MailboxSyncUnreadable")
        # The providers' presets (folders, size limit, connections) as the rules this run follows.
        return with_presets(spec, spec.source.endpoint, spec.destination.endpoint), status, generation

    async def run(self) -> MailboxResult:
        """Take the mailbox's lease, sync under it, give it back. Without the lease nothing is written to
        the destination, and the status only when a no-op proves nothing needs writing (_noop_unheld)."""
        loaded = await self._load()
        if isinstance(loaded, MailboxResult):
            return loaded
        if loaded[0].suspend:
            self.log("suspended")
            return MailboxResult(self.name, "suspended")
        try:
            noop = await self._noop_unheld(*loaded)
        except StatusMoved:  # written since the read: the lease path reads it again
            self.log("status_moved_reread")
            self._source_changed = False
            loaded = await self._load()
            if isinstance(loaded, MailboxResult):
                return loaded
            noop = None
        if noop is not None:
            return noop
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
            try:
                # On the read taken before the lease: the store's first write fails (StatusMoved) if it
                # was stale, and that write comes before any other (checkpoint.py).
                return await self._run_held(*loaded)
            except StatusMoved:
                self.log("status_moved_reread")
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
        if spec.suspend:
            self.log("suspended")
            return MailboxResult(self.name, "suspended")
        started = self._begin(spec, status, generation)
        clean = status.phase == "Synced"
        changed, self._source_changed = self._source_changed, False
        if clean and self.ckpts and not changed and await self._quick_noop(spec):
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
                await self.settle()  # the write below carries the last checkpoints
            except LeaseLost:
                raise
            except KubeError as exc:
                self.log("status_write_failed", "error", error=str(exc)[:300])
                return MailboxResult(self.name, "transient", "StatusWriteFailed")
        return await self._finish(result, started)

    def _begin(self, spec: MailboxSyncSpec, status: MailboxSyncStatus, generation: int | None) -> datetime:
        """This run's status, from the MailboxSync as read; returns when the run started."""
        self.spec, self.status = spec, status
        self.ckpts = {f.name: f for f in status.folders}
        self.counters = MailboxCounters(Counter(status.skip_reasons), status.flag_errors)
        status.attempts += 1
        status.observed_generation = generation
        status.job_name = self.settings.job_name
        return now()

    async def _noop_unheld(
        self, spec: MailboxSyncSpec, status: MailboxSyncStatus, generation: int | None
    ) -> MailboxResult | None:
        """A delta round's common case without the lease: after a clean finish, one source connection
        proves every folder unchanged since its checkpoint, and the status says so in one write.

        The lease guards writes to the destination, and none happens here. The status write is
        conditional on the MailboxSync being as read (checkpoint.py): if anyone wrote since, it fails
        (StatusMoved) and the caller takes the lease and starts over. A holder still working cannot
        make the claim false: unchanged since the checkpoint it wrote means nothing was left to copy.
        A no-op round so costs the API a read and a write per mailbox, not a Lease create and delete
        too. None: the source changed, or any doubt (the caller takes the lease and syncs)."""
        if not self.noop_unheld or status.phase != "Synced" or not status.folders:
            return None
        self.ckpts = {f.name: f for f in status.folders}
        if not await self._quick_noop(spec):
            self._source_changed = True  # the lease path need not ask the source again
            return None
        every = self.settings.noop_status_seconds
        leave = may_leave_status(self.name, spec, status, generation, every, now())  # the status as read
        started = self._begin(spec, status, generation)
        self.log("sync_started", clean_previous=True, attempt=status.attempts, noop=True, leased=False)
        if leave:  # the Job's exit 0 proves it (noopproof.py); a batch that cannot exit 0 writes it
            self.log("noop_proved", written=False)
            return MailboxResult(self.name, "proved", write_proof=lambda: self._write_proof(started))
        return await self._finish(MailboxResult(self.name, "synced"), started)

    async def _write_proof(self, started: datetime) -> MailboxResult:
        """The status write a proved no-op left out, when its batch will not exit 0."""
        try:
            return await self._finish(MailboxResult(self.name, "synced"), started)
        except StatusMoved:  # written since the read: this run proves nothing now, the retry looks again
            self.log("status_moved_reread")
            return MailboxResult(self.name, "transient", "StatusMoved")

    async def _finish(self, result: MailboxResult, started: datetime) -> MailboxResult:
        """The run's last write: its outcome, and on success when it started and which round it was."""
        status = self.status
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

    async def _sync(self, spec: MailboxSyncSpec, clean: bool) -> MailboxResult:
        pacer = pacer_for(spec.source.endpoint, spec.destination.endpoint, spec.max_message_bytes)
        self.pacer = pacer if pacer.active else None
        src_c, dst_c = connectors_for(spec, self.secrets, self.settings, self.lease)
        # Gmail (gmail/): a source shows one view per home folder over All Mail (the checkpoints of a clean
        # finish say what is placed already), a destination uploads each message once.
        src_c = gmail_connector(src_c, self.ckpts if clean else None)
        dst_c = gmail_dest_connector(dst_c)
        src: ImapClient | None = None
        dst: ImapClient | None = None
        try:
            src, dst = await open_both(self._open(src_c), self._open(dst_c))
            (src_folders, (sprefix, _)), (dst_folders, (dprefix, ddelim)) = await asyncio.gather(
                self.sessions.listing("source", src), self.sessions.listing("destination", dst)
            )
        except ImapError as exc:
            await close_all((src, dst))
            self.sessions.forget_listings()
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
                plans = await changed_only(src, plans, self.ckpts, mirror=self._mirroring, log=self.log)
            if self._mirroring and plans:
                # Moves only after a clean finish: after an interruption a new source message may have a
                # copy already (an APPEND not checkpointed), and a moved copy would be a second one.
                mirrored = await Mirror(src, dst, spec, self.ckpts, self.log, moves=clean).run(plans)
                self.placed, self.mirror_looks = mirrored.placed, mirrored.looks
                await self._deletions_report(mirrored)
        except ImapError as exc:
            await close_all((src, dst))
            self.sessions.forget_listings()
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
        if errors or self.folder_errors:
            self.sessions.forget_listings()  # a folder gone or failing: the next run lists both sides again
        for e in errors:
            if isinstance(e, ImapError) and not e.transient:
                return self._fail(e, "permanent")
        for e in errors:
            if isinstance(e, _GiveUp):
                return self._fail(e.error, "transient")
        return MailboxResult(self.name, "synced", None, self.copied, self.bytes, dict(self.run_skips))

    async def _quick_noop(self, spec: MailboxSyncSpec) -> bool:
        """True when one source connection proves every selected folder unchanged since its checkpoint
        (unchanged.py; any doubt, a login error included, means False)."""
        src_c, _ = connectors_for(spec, self.secrets, self.settings, None)
        src_c = gmail_connector(src_c, self.ckpts)
        try:
            src = await self._take_or_open(src_c)
        except ImapError:
            return False
        try:
            listed = await self.sessions.listing("source", src)
            return await all_unchanged(src, spec, self.ckpts, listed)
        except ImapError:
            return False
        finally:
            await self.sessions.give_back("source", src)

    async def _take_or_open(self, c: Connector) -> ImapClient:
        return await self.sessions.take(c) or await c.open()

    async def _open(self, c: Connector) -> ImapClient:
        return await self.sessions.take(c) or await open_retrying(c, self.settings, self.log)

    async def _give_back(self, src: ImapClient | None, dst: ImapClient | None) -> None:
        # A connection an exchange broke (lost, cancelled mid-way) closed itself; kept ones are usable.
        if src is not None:
            await self.sessions.give_back("source", src)
        if dst is not None:
            await self.sessions.give_back("destination", dst)

    def _dest_created(self, name: str) -> None:
        self._dest_names.add(name)
        self.sessions.forget_listings()  # a kept destination listing lacks it

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
                try:
                    src, dst = await open_both(self._take_or_open(src_c), self._take_or_open(dst_c))
                except ImapError as exc:
                    if not exc.transient:
                        raise
                    self.log(
                        "extra_connection_refused", "warning", reason=exc.reason, error=exc.message[:200]
                    )
                    return
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
                        await close_all((src, dst), quiet=True)
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
                            await self._report_backoff(exc, delay)
                        await asyncio.sleep(delay)
                        if self.status.phase == "Throttled":
                            self.status.phase = "Syncing"
        finally:
            await self._give_back(src, dst)

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
                dest_created=self._dest_created,
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
