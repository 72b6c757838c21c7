"""A MailboxSync's Ready, derived by with_ready from Stalled / Reconciling / Synced (sync.readiness)."""

from __future__ import annotations

from mailferry_api.common import Condition
from mailferry_api.conditions import get_condition
from mailferry_worker.sync import readiness


def ready(conditions: list[Condition]) -> tuple[str, str]:
    c = get_condition(conditions, "Ready")
    assert c is not None
    return c.status, c.reason


def test_a_run_reconciles_then_is_ready() -> None:
    c = readiness.running([])
    assert ready(c) == ("Unknown", "Syncing")
    c = readiness.synced(c, "copied 3 message(s) in this run")
    assert ready(c) == ("True", "Synced")
    assert {x.type: x.status for x in c} == {
        "Synced": "True", "Stalled": "False", "Throttled": "False", "Reconciling": "False", "Ready": "True"
    }  # fmt: skip


def test_failures_say_why_and_only_a_permanent_one_stalls() -> None:
    c = readiness.failed(
        readiness.running([]), "ConnectionFailed", "refused", throttled=False, permanent=False
    )
    assert ready(c) == ("False", "ConnectionFailed") and get_condition(c, "Stalled").status == "False"  # type: ignore[union-attr]
    c = readiness.failed(c, "AuthenticationFailed", "login refused", throttled=False, permanent=True)
    assert ready(c) == ("False", "AuthenticationFailed") and get_condition(c, "Stalled").status == "True"  # type: ignore[union-attr]
    c = readiness.failed([], "Throttled", "slow down", throttled=True, permanent=False)
    assert ready(c) == ("False", "Throttled") and get_condition(c, "Throttled").status == "True"  # type: ignore[union-attr]
