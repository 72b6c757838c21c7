"""MailboxView is derived from the MailboxSync model: wire keys, types and defaults follow the model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mailferry_api.common import ErrorInfo
from mailferry_api.mailboxsync import MailboxLag, MailboxSync, MailboxSyncStatus, SyncTotals
from mailferry_operator.mailmigration.views import MailboxView, mailbox_view
from mailferry_operator.modelviews import derived_from, picked

EP = {"host": "imap.test", "port": 143, "security": "none", "auth": {"secretRef": {"name": "s"}}}


def _body(status: MailboxSyncStatus) -> dict[str, Any]:
    sync = MailboxSync.model_validate(
        {
            "spec": {
                "source": {"endpoint": EP, "username": "alice@a.test"},
                "destination": {"endpoint": EP, "username": "alice@b.test"},
            },
            "status": status.to_api(),
        }
    )
    return {
        "metadata": {"name": "alice", "annotations": {"mailferry.io/spec-hash": "h1"}},
        **sync.to_api(),
    }


def test_view_reads_what_the_model_writes() -> None:
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    status = MailboxSyncStatus(
        phase="Synced",
        round=3,
        last_sync_time=at,
        lag=MailboxLag(seconds=5, pending_messages=7),
        totals=SyncTotals(messages=10, copied=8, skipped=1, failed=1, bytes=900, expected_bytes=1000),
        attempts=2,
        last_error=ErrorInfo(reason="Throttled", message="slow down " * 200),
    )
    view = mailbox_view(_body(status))
    assert view == MailboxView(
        name="alice",
        source="alice@a.test",
        destination="alice@b.test",
        spec_hash="h1",
        phase="Synced",
        round=3,
        last_sync_time=at,
        pending_messages=7,
        messages=10,
        copied=8,
        skipped=1,
        failed=1,
        bytes=900,
        expected_bytes=1000,
        attempts=2,
        error_reason="Throttled",
        error_message=("slow down " * 200)[:1024],
    )
    assert not hasattr(view, "__dict__")  # slotted: 10,000 of them stay small


def test_missing_and_malformed_fields_read_as_the_models_defaults() -> None:
    view = mailbox_view(
        {
            "metadata": {"name": "x"},
            "status": {"phase": "Exploded", "round": "many", "lag": [], "totals": None},
        }
    )
    assert (view.name, view.source, view.phase, view.round, view.pending_messages) == ("x", "", None, 0, 0)
    assert (view.error_reason, view.error_message, view.last_sync_time) == ("", "", None)


def test_a_path_or_type_the_model_does_not_have_fails_at_import() -> None:
    with pytest.raises(AttributeError, match=r"status\.lag\.pendingMessages"):

        @derived_from(MailboxSync)
        class Renamed:
            pending: int = picked("status.lag.pendingMessages")

    with pytest.raises(TypeError, match="does not match"):

        @derived_from(MailboxSync)
        class Mistyped:
            phase: int = picked("status.phase")
