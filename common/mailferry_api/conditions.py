"""Pure helpers for metav1.Condition lists (no I/O): set one, read one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from .common import Condition, ConditionStatus


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    generation: int | None = None,
    at: datetime | None = None,
) -> list[Condition]:
    """A new list with `type_` set; lastTransitionTime moves only when the status changes."""
    previous = get_condition(conditions, type_)
    changed = previous is None or previous.status != status
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=(at or now()) if changed or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [updated]


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    found = get_condition(conditions, type_)
    return found is not None and found.status == "True"


def with_ready(
    conditions: list[Condition],
    required: Sequence[str],
    ready_reason: str = "Succeeded",
    ready_message: str = "",
    generation: int | None = None,
    at: datetime | None = None,
) -> list[Condition]:
    """Ready computed the way Flux does it, the same for every resource: Stalled=True wins (Ready=False
    with its reason and message); else Reconciling=True (Ready=Unknown, its reason); else the first of
    `required` that is not True (Ready=False, or Unknown when it is Unknown/missing); else Ready=True."""
    stalled = get_condition(conditions, "Stalled")
    reconciling = get_condition(conditions, "Reconciling")
    status: ConditionStatus = "True"
    reason, message = ready_reason, ready_message
    if stalled is not None and stalled.status == "True":
        status, reason, message = "False", stalled.reason, stalled.message
    elif reconciling is not None and reconciling.status == "True":
        status, reason, message = "Unknown", reconciling.reason, reconciling.message
    else:
        for type_ in required:
            found = get_condition(conditions, type_)
            if found is None or found.status != "True":
                status = "False" if found is not None and found.status == "False" else "Unknown"
                reason = found.reason if found is not None else f"{type_}Unknown"
                message = found.message if found is not None else f"{type_} has not been evaluated yet"
                break
    return set_condition(conditions, "Ready", status, reason, message, generation, at)
