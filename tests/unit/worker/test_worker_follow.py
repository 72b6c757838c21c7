"""Follow mode's pure parts (issue 20): the way to wait, what a response means, when a delta runs,
the lag window, and the store a delta runs on (lent lease, lag from checkpoint advances)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailferry_api.mailboxsync import FolderCheckpoint, FollowStatus, MailboxSyncSpec, MailboxSyncStatus
from mailferry_imap.client import ImapClient
from mailferry_worker.follow.lagwindow import LagWindow, percentile
from mailferry_worker.follow.sessions import expired, keepable
from mailferry_worker.follow.store import FollowState, FollowStore, copied_since
from mailferry_worker.follow.watchplan import (
    MailboxClock,
    choose_mode,
    hierarchy_changed,
    is_change,
    is_hierarchy_change,
    sweep_changes,
)
from mailferry_worker.lease import LeaseLost


@pytest.mark.parametrize(
    ("caps", "allowed", "want"),
    [
        ({"IMAP4REV1", "IDLE", "NOTIFY"}, ("notify", "idle", "poll"), "notify"),
        ({"IMAP4REV1", "IDLE"}, ("notify", "idle", "poll"), "idle"),
        ({"IMAP4REV1"}, ("notify", "idle", "poll"), "poll"),
        ({"IDLE", "NOTIFY"}, ("idle", "poll"), "idle"),  # NOTIFY disallowed by the operator
        ({"IDLE", "NOTIFY"}, ("poll",), "poll"),
        ({"idle"}, ("notify", "idle"), "idle"),  # capabilities are case-insensitive
    ],
)
def test_choose_mode(caps: set[str], allowed: tuple[Any, ...], want: str) -> None:
    assert choose_mode(caps, allowed) == want


@pytest.mark.parametrize(
    ("line", "change"),
    [
        (b"* 5 EXISTS", True),
        (b"* 4 EXPUNGE", True),
        (b"* 3 FETCH (UID 9 FLAGS (\\Seen))", True),
        (b"* VANISHED 7:9", True),
        (b'* STATUS "Archive" (UIDNEXT 12 MESSAGES 3)', True),
        (b'* LIST () "/" "New folder"', True),
        (b"* 2 RECENT", False),  # comes with EXISTS
        (b"* OK Still here", False),
        (b"* BYE shutting down", False),
        (b"+ idling", False),
        (b"M3 OK IDLE terminated", False),
        (b"*", False),
    ],
)
def test_is_change(line: bytes, change: bool) -> None:
    assert is_change(line) is change


def test_sweep_changes() -> None:
    a = {"Archive": {"UIDNEXT": 5, "MESSAGES": 4}, "Sent": {"UIDNEXT": 2, "MESSAGES": 1}}
    assert sweep_changes({}, a) == []  # the first sweep is a baseline
    assert sweep_changes(a, dict(a)) == []
    b = {**a, "Sent": {"UIDNEXT": 3, "MESSAGES": 2}, "New": {"UIDNEXT": 1, "MESSAGES": 0}}
    assert sweep_changes(a, b) == ["New", "Sent"]
    assert sweep_changes(a, {"Archive": a["Archive"]}) == ["Sent"]  # a folder gone


def test_clock_runs_on_change_and_keeps_the_first_arrival() -> None:
    c = MailboxClock(poll_seconds=60, heartbeat_seconds=10, watching=True)
    assert c.due(0.0, "notify")  # never ran: the first delta
    assert c.start(0.0) == 0.0
    c.finished(1.0, ok=True)
    assert not c.due(2.0, "notify")
    c.changed(5.0)
    c.changed(6.0)  # the first one counts
    assert c.due(6.5, "notify")
    assert c.start(7.0) == 5.0
    assert not c.due(7.5, "notify")  # one delta at a time
    c.changed(8.0)  # arrived while it ran: another delta afterwards
    c.finished(9.0, ok=True)
    assert c.due(9.0, "notify") and c.start(9.0) == 8.0
    c.finished(10.0, ok=False)  # failed: retried with the same arrival
    assert c.due(10.0, "notify") and c.start(11.0) == 8.0


def test_clock_polls_when_the_feed_is_down_or_absent() -> None:
    c = MailboxClock(poll_seconds=60, heartbeat_seconds=10, watching=True)
    c.start(0.0)
    c.finished(1.0, ok=True)
    assert not c.due(100.0, "idle")  # a live feed: no polling
    c.watching = False
    assert c.due(100.0, "idle") and not c.due(30.0, "idle")
    assert c.due(61.0, "poll") and not c.due(60.0, "poll")


def test_clock_confirms_only_when_idle_and_fed() -> None:
    c = MailboxClock(poll_seconds=60, heartbeat_seconds=10, watching=False)
    c.start(0.0)
    c.finished(1.0, ok=True)  # a finished delta confirms by itself
    assert c.last_confirmed == 1.0
    assert not c.confirm_due(20.0, "notify")  # the feed is down: cannot say "current"
    c.watching = True
    assert c.confirm_due(20.0, "notify") and not c.confirm_due(5.0, "notify")
    c.changed(21.0)
    assert not c.confirm_due(40.0, "notify")  # something waits
    c.start(41.0)
    c.finished(42.0, ok=True)
    c.confirmed(50.0)
    assert not c.confirm_due(55.0, "notify") and c.confirm_due(60.0, "notify")
    # polling: confirmed only while the polls are on time
    assert c.confirm_due(60.0, "poll") and not c.confirm_due(103.0, "poll")


def test_percentile_and_window() -> None:
    assert percentile([], 95) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    w = LagWindow(window=100.0, max_samples=50)
    w.add(0.0, 10.0)
    w.add(50.0, 1.0, count=3)
    assert w.last == 1.0 and w.count(50.0) == 4 and w.p95(50.0) == 10.0
    assert w.p95(120.0) == 1.0  # the first sample left the window
    w.add(130.0, 2.0, count=500)  # bounded
    assert w.count(130.0) == 50
    w.add(131.0, -1.0)  # a clock step back is no negative lag
    assert w.last == 0.0


def _status(**uids: int) -> MailboxSyncStatus:
    return MailboxSyncStatus(folders=[FolderCheckpoint(name=k, last_uid=v) for k, v in uids.items()])


def test_copied_since_counts_checkpoint_advances() -> None:
    before = {"INBOX": 10, "Archive": 3}
    assert copied_since(before, _status(INBOX=12, Archive=3)) == 2
    assert before == {"INBOX": 12, "Archive": 3}
    assert copied_since(before, _status(INBOX=12, Archive=5, New=4)) == 2  # a new folder: no estimate
    assert copied_since(before, _status(INBOX=1, Archive=5, New=6)) == 2  # UIDVALIDITY reset: 0 there


class _Lease:
    def __init__(self) -> None:
        self.lost = False
        self.released = 0

    async def acquire(self) -> None:
        raise AssertionError("the follower holds it: a delta never acquires")

    def check(self) -> None:
        if self.lost:
            raise LeaseLost("lost")

    async def release(self) -> None:
        self.released += 1


class _Store:
    def __init__(self, status: MailboxSyncStatus) -> None:
        self.status = status
        self.saved: list[dict[str, Any]] = []

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        spec = MailboxSyncSpec.model_validate(
            {
                "source": {"username": "a", "endpoint": {"host": "s", "auth": {"secretRef": {"name": "x"}}}},
                "destination": {
                    "username": "a",
                    "endpoint": {"host": "d", "auth": {"secretRef": {"name": "y"}}},
                },
            }
        )
        return spec, self.status.model_copy(deep=True), 1

    async def load_kept(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        return await self.load(name)

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        self.saved.append(status.to_api())

    def lease(self, name: str) -> Any:
        raise AssertionError("never asked: the follower lends its own")

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        return None


def test_follow_store_lends_the_lease_and_measures_copies() -> None:
    held = _Lease()
    samples: list[tuple[float, int]] = []

    def copied(arrival: float, n: int, at: float) -> None:
        assert at >= arrival
        samples.append((arrival, n))

    state = FollowState(FollowStatus(mode="notify"), arrival=100.0, on_copied=copied)
    inner = _Store(_status(INBOX=10))
    store = FollowStore(inner, "box", held, state)
    store.run_started = 1_700_000_000.0

    async def run() -> None:
        lent = store.lease("box")
        await lent.acquire()
        _, status, _ = await store.load("box")
        status.folders[0].last_uid = 13
        status.phase = "Syncing"
        await store.save("box", status)
        assert samples == [(100.0, 3)]
        assert inner.saved[-1]["follow"]["mode"] == "notify"
        assert "caughtUpAt" not in inner.saved[-1]["follow"]  # not finished yet
        status.phase = "Synced"
        await store.save("box", status)
        assert samples == [(100.0, 3)]  # nothing new copied
        assert inner.saved[-1]["follow"]["caughtUpAt"].startswith("2023-11-14T22:13:20")
        await lent.release()
        assert held.released == 0  # the follower keeps it
        held.lost = True
        with pytest.raises(LeaseLost):
            lent.check()

    asyncio.run(run())


def test_hierarchy_changes() -> None:
    assert is_hierarchy_change(b'* LIST () "/" "New"')
    assert is_hierarchy_change(b'* LIST (\\NonExistent) "/" "Gone"')
    assert not is_hierarchy_change(b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4)")
    assert not is_hierarchy_change(b"* 3 EXISTS")
    seen = {"INBOX": {"UIDNEXT": 4}, "Archive": {"UIDNEXT": 2}}
    assert not hierarchy_changed({}, seen)  # the first sweep is a baseline
    assert not hierarchy_changed(seen, {"INBOX": {"UIDNEXT": 9}, "Archive": {"UIDNEXT": 2}})  # mail only
    assert hierarchy_changed(seen, {"INBOX": {"UIDNEXT": 4}})
    assert hierarchy_changed(seen, {**seen, "New": {"UIDNEXT": 1}})


def test_kept_connections_expire_and_only_plain_ones_are_kept() -> None:
    assert not expired(100.0, 160.0, 60.0) and expired(100.0, 160.5, 60.0)

    class _Subclassed(ImapClient):  # e.g. Gmail's clients: one run's state
        pass

    plain = ImapClient.__new__(ImapClient)
    plain.closed = False
    assert keepable(plain)
    plain.closed = True
    assert not keepable(plain)
    other = _Subclassed.__new__(_Subclassed)
    other.closed = False
    assert not keepable(other)


async def test_a_delta_whose_lease_lapsed_leaves_its_change_waiting_for_the_next_holder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Lease that lapses while a delta waits for its turn (renewals stuck on a busy API server) makes the
    run raise LeaseLost before it writes anything. The change must stay waiting and the clock must not
    think a delta still runs: once the Lease is taken again, the next delta copies what arrived."""
    from mailferry_worker.follow import serve
    from mailferry_worker.follow.sessions import KeptSessions
    from mailferry_worker.sync.run import RunSettings

    class LapsedRunner:
        def __init__(self, *args: Any, **kw: Any) -> None:
            pass

        async def run(self) -> Any:
            raise LeaseLost("lapsed while waiting")

    monkeypatch.setattr(serve, "MailboxRunner", LapsedRunner)
    no_secrets: Any = None  # never read: the runner is replaced
    box = serve.FollowedMailbox(
        "box",
        _Store(_status(INBOX=1)),
        no_secrets,
        RunSettings(),
        serve.FollowSettings(),
        asyncio.Semaphore(1),
    )
    box.sessions = KeptSessions()
    box.clock.watching = True
    box.clock.changed(100.0)
    box.clock.last_run_end = 90.0
    assert box.clock.due(101.0, "notify")
    with pytest.raises(LeaseLost):
        await box._delta(_Lease())
    assert box.clock.running_since is None, "the clock still thinks the lapsed delta runs"
    assert box.clock.dirty_since == 100.0, "the change was forgotten"
    assert box.clock.due(200.0, "notify")
