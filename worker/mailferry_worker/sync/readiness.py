"""A MailboxSync's conditions when a run starts, finishes or fails (pure). Ready is derived the way every
resource derives it (`mailferry_api.conditions.with_ready`): Stalled wins, then Reconciling, then Synced."""

from __future__ import annotations

from mailferry_api.common import Condition
from mailferry_api.conditions import set_condition, with_ready

REQUIRED = ("Synced",)


def running(conditions: list[Condition]) -> list[Condition]:
    c = set_condition(conditions, "Synced", "False", "Syncing", "a sync is running")
    c = set_condition(c, "Reconciling", "True", "Syncing", "a sync is running")
    return with_ready(c, REQUIRED)


def synced(conditions: list[Condition], message: str) -> list[Condition]:
    c = set_condition(conditions, "Synced", "True", "Synced", message)
    for type_ in ("Stalled", "Throttled", "Reconciling"):
        c = set_condition(c, type_, "False", "Synced")
    return with_ready(c, REQUIRED, "Synced", message)


def failed(
    conditions: list[Condition], reason: str, message: str, throttled: bool, permanent: bool
) -> list[Condition]:
    """Throttled: the next run goes on from the checkpoint. Otherwise Stalled when trying again with the
    same spec cannot help (`permanent`). Either way this run is over: not Reconciling."""
    c = conditions
    if throttled:
        c = set_condition(c, "Throttled", "True", "Throttled", message)
    else:
        c = set_condition(c, "Stalled", "True" if permanent else "False", reason, message)
    c = set_condition(c, "Synced", "False", reason, message)
    c = set_condition(c, "Reconciling", "False", reason, message)
    return with_ready(c, REQUIRED)
