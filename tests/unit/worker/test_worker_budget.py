"""The worker's side of budgets across Jobs (sync/budget.py): a mailbox's own day is lowered by its last
day's copies, and usage and the ETA are written with each status save. An in-memory status store; the
Job's shared bucket is tested in test_worker_pacing.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from mailferry_api.budgets import JobShare
from mailferry_api.mailboxsync import (
    MailboxLag,
    MailboxSyncSpec,
    MailboxSyncStatus,
    SyncTotals,
    UsageBucket,
)
from mailferry_api.providers import effective_limits
from mailferry_worker.lease import MailboxLease
from mailferry_worker.sync import budget as budget_mod
from mailferry_worker.sync.budget import BudgetedStore
from mailferry_worker.sync.pacing import DAY_SECONDS

# ------------------------------------------------------------------------------------ BudgetedStore
NOW = datetime(2026, 12, 3, 12, 30, tzinfo=UTC)


class MemoryStore:
    def __init__(self, spec: MailboxSyncSpec, status: MailboxSyncStatus) -> None:
        self.spec, self.status = spec, status
        self.saved: list[MailboxSyncStatus] = []

    async def load(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        return self.spec, self.status.model_copy(deep=True), 1

    async def load_kept(self, name: str) -> tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]:
        return await self.load(name)

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        self.saved.append(status.model_copy(deep=True))

    def lease(self, name: str) -> MailboxLease:
        raise NotImplementedError

    async def event(self, name: str, type_: str, reason: str, message: str) -> None:
        return None


def gmail_spec() -> MailboxSyncSpec:
    side = {"endpoint": {"host": "h.example", "auth": {"secretRef": {"name": "s"}}}, "username": "a@b.c"}
    gmail = {**side, "endpoint": {**side["endpoint"], "provider": "gmail"}}  # type: ignore[dict-item]
    return MailboxSyncSpec.model_validate({"source": gmail, "destination": side})


def test_load_lowers_the_mailbox_day_by_its_last_day_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_mod, "utcnow", lambda: NOW)
    status = MailboxSyncStatus(
        usage=[
            UsageBucket(start=NOW.replace(minute=0) - timedelta(hours=3), bytes=2_000_000_000),
            UsageBucket(start=NOW.replace(minute=0) - timedelta(hours=30), bytes=9_000_000_000),  # gone
        ]
    )
    store = BudgetedStore(MemoryStore(gmail_spec(), status))
    spec, _, _ = asyncio.run(store.load("m"))
    assert effective_limits(spec.source.endpoint, "source").bytes_per_day == 500_000_000
    # the destination (generic) has no daily budget: untouched
    assert effective_limits(spec.destination.endpoint, "destination").bytes_per_day is None


def test_save_records_usage_and_writes_the_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_mod, "utcnow", lambda: NOW)
    status = MailboxSyncStatus(totals=SyncTotals(copied=10, bytes=10_000_000))
    inner = MemoryStore(gmail_spec(), status)
    store = BudgetedStore(inner, JobShare(4))
    _, st, _ = asyncio.run(store.load("m"))
    st.totals = SyncTotals(copied=110, bytes=110_000_000)
    st.lag = MailboxLag(pending_messages=2400)  # 2.4 GB at the 1 MB average
    asyncio.run(store.save("m", st))
    saved = inner.saved[-1]
    assert saved.usage == [UsageBucket(start=NOW.replace(minute=0), bytes=100_000_000, messages=100)]
    assert saved.eta_reason == "BudgetBound"  # Gmail's 2.5 GB/day download
    burst = 2_500_000_000 / 24
    assert saved.eta_seconds == round((2_400_000_000 - burst) / ((2_500_000_000 - burst) / DAY_SECONDS))
    assert saved.eta == NOW + timedelta(seconds=saved.eta_seconds)
    st.lag = MailboxLag(pending_messages=0)
    asyncio.run(store.save("m", st))  # nothing new copied: usage unchanged; nothing pending: done
    assert inner.saved[-1].usage == saved.usage
    assert (inner.saved[-1].eta_seconds, inner.saved[-1].eta_reason) == (0, "Done")
