from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mailferry_api.common import ErrorInfo
from mailferry_api.imap import default_secret_key
from mailferry_api.mailboxsync import FolderCheckpoint, MailboxSyncStatus
from mailferry_worker.checkpoint import FileStatusStore, StatusMoved, status_patch
from mailferry_worker.sync import status as status_module
from mailferry_worker.sync.batch import exit_code
from mailferry_worker.sync.run import MailboxResult, backoff
from mailferry_worker.sync.status import StatusKeeper


def test_status_patch_clears_optional_errors_and_never_touches_kopf() -> None:
    st = MailboxSyncStatus(
        phase="Synced", folders=[FolderCheckpoint(name="INBOX", last_uid=5, uid_validity=9)]
    )
    body = status_patch(st)
    assert body["lastError"] is None and body["throttle"] is None
    assert "kopf" not in body
    assert body["folders"][0] == {
        "name": "INBOX",
        "uidValidity": 9,
        "lastUid": 5,
        "messages": 0,
        "copied": 0,
        "skipped": 0,
        "failed": 0,
        "bytes": 0,
        "pending": 0,
        "deleted": 0,
        "moved": 0,
        "deletionsHeld": 0,
    }
    st.last_error = ErrorInfo(reason="Throttled", message="x")
    assert status_patch(st)["lastError"]["reason"] == "Throttled"


def test_file_store_roundtrip(tmp_path: Path) -> None:
    spec = {
        "source": {"username": "a@x", "endpoint": {"host": "h", "auth": {"secretRef": {"name": "s"}}}},
        "destination": {"username": "a@y", "endpoint": {"host": "h2", "auth": {"secretRef": {"name": "d"}}}},
    }
    (tmp_path / "mb.json").write_text(json.dumps({"spec": spec}))
    store = FileStatusStore(tmp_path)

    async def go() -> None:
        s, st, _ = await store.load("mb")
        assert s.source.username == "a@x" and st.phase is None
        st.phase = "Syncing"
        await store.save("mb", st)
        assert (await store.load("mb"))[1].phase == "Syncing"

    asyncio.run(go())


def test_file_store_first_write_after_a_read_needs_the_file_unchanged(tmp_path: Path) -> None:
    spec = {
        "source": {"username": "a@x", "endpoint": {"host": "h", "auth": {"secretRef": {"name": "s"}}}},
        "destination": {"username": "a@y", "endpoint": {"host": "h2", "auth": {"secretRef": {"name": "d"}}}},
    }
    path = tmp_path / "mb.json"
    path.write_text(json.dumps({"spec": spec}))
    store = FileStatusStore(tmp_path)

    async def go() -> None:
        _, st, _ = await store.load("mb")
        # Another worker wrote between this one's read and its lock.
        path.write_text(json.dumps({"spec": spec, "status": {"phase": "Synced", "round": 4}}))
        st.phase = "Syncing"
        with pytest.raises(StatusMoved):
            await store.save("mb", st)
        assert json.loads(path.read_text())["status"]["round"] == 4
        _, st, _ = await store.load("mb")
        st.phase = "Syncing"
        await store.save("mb", st)
        st.phase = "Synced"
        await store.save("mb", st)  # later writes are this worker's own: no check
        assert json.loads(path.read_text())["status"] == {**st.to_api()}

    asyncio.run(go())


def test_exit_codes_and_backoff() -> None:
    ok = MailboxResult("a", "synced")
    perm = MailboxResult("b", "permanent", "AuthenticationFailed")
    trans = MailboxResult("c", "transient", "ConnectionFailed")
    cfg = MailboxResult("d", "config")
    assert exit_code([ok, perm]) == 0
    assert exit_code([ok, perm, trans]) == 1
    assert exit_code([trans, cfg]) == 2
    for attempt in range(8):
        d = backoff(attempt, 1.0, 30.0)
        assert 1.0 <= d <= 30.0
    assert backoff(0, 1.0, 30.0, hint=12.0) >= 12.0
    assert default_secret_key("alice@example.com") == "alice_example.com"


class _Saves:
    """A StatusStore that records the phase and INBOX checkpoint of every write (slow_save: seconds each)."""

    def __init__(self, slow_save: float = 0.0) -> None:
        self.writes: list[tuple[str | None, int]] = []
        self.slow_save = slow_save

    async def load(self, name: str) -> object:
        raise AssertionError("not read here")

    load_kept = load

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        await asyncio.sleep(self.slow_save)
        self.writes.append((status.phase, status.folders[0].last_uid if status.folders else 0))

    def lease(self, name: str) -> object:
        raise AssertionError("no lease here")

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        return None


def _keeper(store: _Saves) -> StatusKeeper:
    keeper = StatusKeeper("box", store)  # type: ignore[arg-type]
    keeper.status.phase = "Syncing"
    return keeper


def _advance(keeper: StatusKeeper, uid: int) -> None:
    keeper.ckpts["INBOX"] = FolderCheckpoint(name="INBOX", last_uid=uid, uid_validity=1)


async def test_a_short_run_writes_its_checkpoint_once_with_its_final_status() -> None:
    store = _Saves()
    keeper = _keeper(store)
    _advance(keeper, 5)
    await keeper.checkpoint_soon()
    await keeper.settle()  # the run ended before the interval: the final write carries the checkpoint
    keeper.status.phase = "Synced"
    await keeper.save()
    assert store.writes == [("Synced", 5)]


async def test_a_long_run_checkpoints_every_interval_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_module, "CHECKPOINT_INTERVAL", 0.05)
    store = _Saves()
    keeper = _keeper(store)
    for uid in range(1, 31):
        _advance(keeper, uid)
        await keeper.checkpoint_soon()
        await asyncio.sleep(0.01)
    await keeper.settle()
    # Paced (not one write per chunk), never silent through a run many intervals long, and in order.
    assert 2 <= len(store.writes) <= 10, store.writes
    assert [uid for _, uid in store.writes] == sorted(uid for _, uid in store.writes)


async def test_settle_waits_for_a_write_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_module, "CHECKPOINT_INTERVAL", 0.01)
    store = _Saves(slow_save=0.2)
    keeper = _keeper(store)
    _advance(keeper, 3)
    await keeper.checkpoint_soon()
    await asyncio.sleep(0.05)  # the write is on its way
    await keeper.settle()
    assert store.writes == [("Syncing", 3)], "the write in flight was not waited for"
    keeper.status.phase = "Synced"
    await keeper.save()
    assert store.writes[-1] == ("Synced", 3)
