"""The follower: serve a batch of MailboxSyncs until SIGTERM, each under its Lease the whole time.

Per mailbox: take the Lease (wait while another worker holds it), run a first delta, start its change
feed (watch.py), then loop: a change (or, polling, the interval) -> the engine's delta under the held
Lease (store.py) over the connections and listings kept since the last one (sessions.py); idle and fed
-> a heartbeat that says the destination is current. Deltas run at most
``concurrency`` at once over the whole batch. SIGTERM (or ``stop``): feeds close, running deltas are
cancelled (their checkpoints make that safe), Leases are released, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mailferry_api.mailboxsync import FollowStatus
from mailferry_imap.credentials import SecretSource
from mailferry_kube.client import KubeError

from .. import settings as worker_settings
from ..checkpoint import StatusStore
from ..lease import AlreadyRunning, LeaseLost, MailboxLease
from ..logs import log
from ..sync.connections import connectors_for
from ..sync.engine import MailboxRunner
from ..sync.run import RunSettings, backoff
from . import metrics
from .lagwindow import LagWindow
from .sessions import KeptSessions
from .store import FollowState, FollowStore
from .watch import Feed
from .watchplan import MailboxClock, Mode

TICK = 5.0  # longest sleep of a mailbox's loop without a change (heartbeats, polls, a lost lease)
# API reads/writes of the follower's own (start, heartbeats) at once: 1,000 mailboxes starting together
# would queue past the client's timeout waiting for a connection on a busy API server.
API_CONCURRENCY = 16
STOP_GRACE = 20.0  # seconds the mailboxes get to give their Leases back after SIGTERM


@dataclass(frozen=True)
class FollowSettings:
    modes: tuple[Mode, ...] = ("notify", "idle", "poll")
    poll_seconds: float = 900.0
    sweep_seconds: float = 60.0
    idle_seconds: float = 240.0
    heartbeat_seconds: int = 120
    window_seconds: int = 3600
    job_name: str | None = None

    @classmethod
    def from_env(cls, job_name: str | None) -> FollowSettings:
        env = worker_settings.current()
        modes = tuple(m for m in env.follow_modes if m in ("notify", "idle", "poll")) or ("poll",)
        return cls(
            modes=modes,  # type: ignore[arg-type]
            poll_seconds=env.follow_poll_seconds,
            sweep_seconds=env.follow_sweep_seconds,
            idle_seconds=env.follow_idle_seconds,
            heartbeat_seconds=env.follow_heartbeat_seconds,
            window_seconds=env.follow_lag_window_seconds,
            job_name=job_name,
        )


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC).replace(microsecond=0)


class FollowedMailbox:
    def __init__(
        self,
        name: str,
        store: StatusStore,
        secrets: SecretSource,
        run: RunSettings,
        fs: FollowSettings,
        deltas: asyncio.Semaphore,
        api_gate: asyncio.Semaphore | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        # Set at SIGTERM. Checked by every loop too, not only cancellation: a cancellation that a client
        # library turns into an error must not leave a mailbox retrying after the stop.
        self.stopping = stopping or asyncio.Event()
        self.api_gate = api_gate or asyncio.Semaphore(API_CONCURRENCY)
        self.store = store
        self.secrets = secrets
        self.run_settings = run
        self.fs = fs
        self.deltas = deltas
        self.clock = MailboxClock(poll_seconds=fs.poll_seconds, heartbeat_seconds=fs.heartbeat_seconds)
        self.lag = LagWindow(window=float(fs.window_seconds))
        self.wake = asyncio.Event()
        self.failures = 0  # failed deltas in a row
        self.feed: Feed | None = None
        self.sessions: KeptSessions | None = None  # while the mailbox is served under its Lease
        self.state = FollowState(
            FollowStatus(
                job_name=fs.job_name,
                heartbeat_seconds=fs.heartbeat_seconds,
                window_seconds=fs.window_seconds,
            ),
            on_copied=self._copied,
        )

    def log(self, event: str, level: str = "info", **kw: object) -> None:
        log(event, level, mailboxsync=self.name, **kw)

    # ------------------------------------------------------------------ lag
    def _copied(self, arrival: float, count: int, at: float) -> None:
        now = time.time()
        seconds = max(0.0, at - arrival)
        self.lag.add(now, seconds, count)
        mode = self.feed.mode if self.feed else "poll"
        for _ in range(min(count, 1000)):
            metrics.LAG.labels(mode).observe(seconds)
        metrics.MAILBOX_LAG.labels(self.name).set(seconds)
        self._fill_lag(now)

    def _fill_lag(self, now: float) -> None:
        f = self.state.follow
        f.last_lag_seconds = None if self.lag.last is None else round(self.lag.last, 3)
        p95 = self.lag.p95(now)
        f.p95_lag_seconds = None if p95 is None else round(p95, 3)
        f.samples = self.lag.count(now)

    def _changed(self, at: float) -> None:
        self.clock.changed(at)
        self.wake.set()

    # ------------------------------------------------------------------ serving
    async def serve(self) -> None:
        """Until cancelled: hold the lease and follow; a lost lease is taken again once free."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                async with self.api_gate:  # (the acquire that follows is paced by these reads)
                    await self.store.load(self.name)  # the lease needs the MailboxSync's uid (owner)
                lease = self.store.lease(self.name)
                await lease.acquire()
            except AlreadyRunning as exc:
                self.log("follow_lease_busy", "warning", error=str(exc)[:200])
                await asyncio.sleep(backoff(attempt, 5.0, 60.0))
                attempt += 1
                continue
            except (KubeError, OSError, ValueError) as exc:
                self.log("follow_lease_failed", "warning", error=str(exc)[:200])
                await asyncio.sleep(backoff(attempt, 1.0, 60.0))
                attempt += 1
                continue
            attempt = 0
            try:
                await self._follow(lease)
            except LeaseLost as exc:
                self.log("follow_lease_lost", "warning", error=str(exc)[:200])
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(lease.release())

    async def _follow(self, lease: MailboxLease) -> None:
        spec, _, _ = await self.store.load(self.name)
        src_c, _ = connectors_for(spec, self.secrets, self.run_settings, None)
        self.feed = Feed(
            src_c,
            self._changed,
            self.log,
            modes=self.fs.modes,
            idle_seconds=self.fs.idle_seconds,
            sweep_seconds=self.fs.sweep_seconds,
            backoff_base=self.run_settings.backoff_base,
            backoff_cap=self.run_settings.backoff_cap,
            on_hierarchy=self._hierarchy_changed,
        )
        self.sessions = KeptSessions()
        # Whatever arrived while this follower did not hold the Lease (or before it ever did) is unseen.
        self.clock.changed(time.time())
        self.state.follow.since = _utc(time.time())
        feed_task = asyncio.create_task(self.feed.run())
        try:
            while not self.stopping.is_set():
                lease.check()
                if feed_task.done() and not feed_task.cancelled():
                    exc = feed_task.exception()
                    if exc is not None:  # a feed that cannot work here: poll instead (rounds, no Job)
                        self.log("follow_feed_failed", "warning", error=str(exc)[:200])
                    self.feed.mode = "poll"
                self.clock.watching = self.feed.watching
                self.state.follow.mode = self.feed.mode
                now = time.time()
                if self.clock.due(now, self.feed.mode):
                    await self._delta(lease)
                    continue
                if self.clock.confirm_due(now, self.feed.mode):
                    await self._heartbeat(lease)
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), TICK)
        finally:
            feed_task.cancel()
            with contextlib.suppress(BaseException):
                await feed_task
            sessions, self.sessions = self.sessions, None
            with contextlib.suppress(BaseException):
                await asyncio.shield(sessions.close())

    def _hierarchy_changed(self) -> None:
        if self.sessions is not None:
            self.sessions.forget_listings()

    async def _delta(self, lease: MailboxLease) -> None:
        sessions = self.sessions
        assert sessions is not None
        if self.feed is None or not self.feed.watching:
            sessions.forget_listings()  # no feed to say that folders changed: list both sides again
        async with self.deltas:
            started = time.time()
            self.state.arrival = self.clock.start(started)
            store = FollowStore(self.store, self.name, lease, self.state)
            store.run_started = started
            runner = MailboxRunner(
                self.name, store, self.secrets, self.run_settings, sessions, noop_unheld=False
            )
            try:
                result = await runner.run()
            except BaseException:
                # (a Lease lost before the run took it): the change stays waiting, and the clock must
                # not think a delta still runs, or none would start again once the Lease is back.
                self.clock.finished(time.time(), False)
                self.state.arrival = None
                raise
        ok = result.outcome in ("synced", "suspended")
        if not ok:
            sessions.forget_listings()
        metrics.DELTAS.labels(result.outcome).inc()
        self.clock.finished(time.time(), ok)
        self.state.arrival = None
        if result.outcome == "lost":
            raise LeaseLost(result.reason or "lease lost during a delta")
        if ok:
            self.failures = 0
            return
        self.failures += 1
        # Retried with back-off; a permanent failure (credentials, configuration) only every poll interval:
        # its status says why, and a login that keeps failing must not lock the account.
        delay = backoff(self.failures, self.run_settings.backoff_base, self.run_settings.backoff_cap)
        if result.outcome in ("permanent", "config"):
            delay = max(delay, self.fs.poll_seconds)
        self.log(
            "follow_delta_failed",
            "warning",
            outcome=result.outcome,
            reason=result.reason,
            retry_in=round(delay, 1),
        )
        await asyncio.sleep(delay)

    async def _heartbeat(self, lease: MailboxLease) -> None:
        now = time.time()
        try:
            async with self.api_gate:
                _, status, _ = await self.store.load(self.name)
                self.state.follow.caught_up_at = _utc(now)
                self._fill_lag(now)
                status.follow = self.state.follow
                lease.check()
                await self.store.save(self.name, status)
            self.clock.confirmed(now)
        except (KubeError, OSError, ValueError) as exc:
            self.log("follow_heartbeat_failed", "warning", error=str(exc)[:200])


async def follow_batch(
    names: Sequence[str],
    store: StatusStore,
    secrets: SecretSource,
    run: RunSettings,
    fs: FollowSettings,
    concurrency: int,
    stop: asyncio.Event,
) -> int:
    """Serve ``names`` until ``stop`` is set; 0 (a follower only ends when told to)."""
    deltas = asyncio.Semaphore(max(1, concurrency))
    api_gate = asyncio.Semaphore(API_CONCURRENCY)
    mailboxes = [FollowedMailbox(n, store, secrets, run, fs, deltas, api_gate, stop) for n in names]
    tasks = [asyncio.create_task(m.serve()) for m in mailboxes]
    gauge = asyncio.create_task(_gauges(mailboxes))
    try:
        await stop.wait()
    finally:
        stop.set()
        gauge.cancel()
        for t in tasks:
            t.cancel()
        _, late = await asyncio.wait([*tasks, gauge], timeout=STOP_GRACE)
        if late:
            log("follow_stop_late", "warning", mailboxes=len(late))
    return 0


async def _gauges(mailboxes: Sequence[FollowedMailbox]) -> None:
    while True:
        counts: dict[tuple[str, str], int] = {}
        for m in mailboxes:
            key = (m.feed.mode if m.feed else "poll", "true" if m.feed and m.feed.watching else "false")
            counts[key] = counts.get(key, 0) + 1
        metrics.MAILBOXES.clear()
        for (mode, watching), n in counts.items():
            metrics.MAILBOXES.labels(mode, watching).set(n)
        await asyncio.sleep(TICK)
