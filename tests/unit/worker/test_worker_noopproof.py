"""When a delta round may leave a proved no-op's status unwritten (sync/noopproof.py), and the batch that
cannot exit 0 writing its proofs first (sync/batch.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailferry_api.mailboxsync import MailboxSyncSpec, MailboxSyncStatus
from mailferry_worker.sync.batch import EXIT_OK, EXIT_RETRY, exit_code, written_if_needed
from mailferry_worker.sync.noopproof import may_leave_status, spread
from mailferry_worker.sync.run import MailboxResult

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
EP = {"host": "imap.test", "port": 143, "security": "none", "auth": {"secretRef": {"name": "s"}}}


def spec(**over: Any) -> MailboxSyncSpec:
    body = {
        "source": {"username": "a@x.test", "endpoint": EP},
        "destination": {"username": "a@y.test", "endpoint": EP},
    }
    return MailboxSyncSpec.model_validate(body | over)


def status(age: float | None = 60, observed: int | None = 3) -> MailboxSyncStatus:
    last = None if age is None else NOW - timedelta(seconds=age)
    return MailboxSyncStatus(phase="Synced", round=4, last_sync_time=last, observed_generation=observed)


def test_spread_is_fixed_per_name_and_within_half_to_one() -> None:
    values = [spread(f"mailbox-{i}") for i in range(2000)]
    assert all(0.5 <= v < 1.0 for v in values)
    assert spread("mailbox-7") == spread("mailbox-7")
    assert min(values) < 0.55 and max(values) > 0.95, "the names spread over the whole range"


def test_a_recent_status_answering_the_spec_may_stay() -> None:
    assert may_leave_status("m", spec(), status(age=60), 3, 3600, NOW)


@pytest.mark.parametrize(
    ("why", "st", "generation", "every"),
    [
        ("the interval is off", status(), 3, 0),
        ("never synced", status(age=None), 3, 3600),
        ("the spec changed since the last write", status(observed=2), 3, 3600),
        ("no generation known", status(), None, 3600),
        ("older than the whole interval", status(age=3600), 3, 3600),
        ("a clock that went back", status(age=-5), 3, 3600),
    ],
)
def test_the_status_is_written(why: str, st: MailboxSyncStatus, generation: int | None, every: int) -> None:
    assert not may_leave_status("m", spec(), st, generation, every, NOW), why


def test_each_mailbox_comes_due_at_its_own_share_of_the_interval() -> None:
    for name in ("alpha", "beta", "gamma"):
        share = 3600 * spread(name)
        assert may_leave_status(name, spec(), status(age=share - 1), 3, 3600, NOW)
        assert not may_leave_status(name, spec(), status(age=share + 1), 3, 3600, NOW)


def test_contacts_and_calendars_are_always_written() -> None:
    with_dav = spec(
        content=["mail", "contacts"],
        groupware={"source": {"url": "https://dav.test/"}, "destination": {"url": "https://dav2.test/"}},
    )
    assert with_dav.groupware_kinds()
    assert not may_leave_status("m", with_dav, status(), 3, 3600, NOW)


def _proved(name: str, calls: list[str]) -> MailboxResult:
    async def write() -> MailboxResult:
        calls.append(name)
        return MailboxResult(name, "synced")

    return MailboxResult(name, "proved", write_proof=write)


async def test_a_batch_that_exits_0_writes_no_proof() -> None:
    calls: list[str] = []
    results = [_proved("a", calls), MailboxResult("b", "synced"), MailboxResult("c", "permanent")]
    out = await written_if_needed(results)
    assert calls == [] and exit_code(out) == EXIT_OK and out == results


async def test_a_batch_that_cannot_exit_0_writes_every_proof_first() -> None:
    calls: list[str] = []
    results = [_proved("a", calls), MailboxResult("b", "transient"), _proved("c", calls)]
    out = await written_if_needed(results)
    assert calls == ["a", "c"]
    assert [r.outcome for r in out] == ["synced", "transient", "synced"] and exit_code(out) == EXIT_RETRY
