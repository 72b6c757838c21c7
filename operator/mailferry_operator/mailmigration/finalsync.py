"""The final sync after the MX swap (pure): a MailMigration referenced by a DnsCutover completes only
after a delta round that STARTED once the switch has drained.

After the MX swap, senders and resolvers that cached the old MX keep delivering to the old provider
for up to the old TTL (Exchange requires the last sync to post-date the MX change). The DnsCutover
writes `status.switchedAt` and `status.drainUntil` (switchedAt + max(2 x MX TTL at the switch, 1 h));
`complete: true` then waits until drainUntil, and only a round started after it may be the final one.
A cutover rolled back below Switched clears both fields: the migration waits again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailferry_api.common import Condition
from mailferry_api.conditions import set_condition
from mailferry_api.mailmigration import CutoverHoldStatus

from .plan import CutoverHold

CONDITION = "CutoverDrained"


@dataclass(frozen=True)
class Hold:
    released: bool  # no referencing cutover holds the final round back any more
    wake_at: datetime | None = None  # when the hold ends, if known (the latest drainUntil)
    holding: CutoverHold | None = None  # the cutover that holds longest (None: not referenced)


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def drained_before(cutover: CutoverHold, at: datetime | None) -> bool:
    """The switch of `cutover` had drained at `at` (strictly after drainUntil)."""
    return cutover.drain_until is not None and at is not None and at > cutover.drain_until


def allows(cutovers: Sequence[CutoverHold], started_at: datetime | None) -> bool:
    """A final round that started at `started_at` may complete the migration."""
    return all(drained_before(c, started_at) for c in cutovers)


def hold(cutovers: Sequence[CutoverHold], now: datetime) -> Hold:
    if not cutovers:
        return Hold(released=True)
    # the one that holds longest: not switched yet, else the latest drainUntil
    longest = max(cutovers, key=lambda c: (c.drain_until is None, c.drain_until or now, c.name))
    released = allows(cutovers, now)
    wake_at = None if released or longest.drain_until is None else longest.drain_until
    return Hold(released=released, wake_at=wake_at, holding=longest)


def report(
    conditions: list[Condition], held: Hold, complete: bool, completed: bool, generation: int, now: datetime
) -> tuple[list[Condition], CutoverHoldStatus | None]:
    """The CutoverDrained condition and `status.cutover` (the `kubectl get mm` column), or neither when no
    DnsCutover references the migration."""
    c = held.holding
    if c is None:
        return [x for x in conditions if x.type != CONDITION], None
    what = f"DnsCutover {c.name}"
    then = (
        "complete: true waits until then; one final delta round runs after that"
        if complete and not completed
        else "a migration completes only with a delta round started after that"
    )
    if c.drain_until is None:
        phase = c.phase or "not started"
        message = (
            f"{what} is {phase}: the MX has not been switched, so mail still reaches the old provider; "
            f"the switch must drain first (2 x the MX TTL at the switch, at least 1 h): {then}"
        )
        status = CutoverHoldStatus(name=c.name, phase=c.phase, holds="until the MX switch")
        return set_condition(
            conditions, CONDITION, "False", "WaitingForSwitch", message, generation, now
        ), status
    switched = f" at {_time(c.switched_at)}" if c.switched_at is not None else ""
    status = CutoverHoldStatus(
        name=c.name, phase=c.phase, switched_at=c.switched_at, drain_until=c.drain_until, holds="no"
    )
    if not held.released:
        message = (
            f"{what} switched the MX{switched}; senders that cached the old MX may deliver there until "
            f"{_time(c.drain_until)} (2 x the MX TTL at the switch, at least 1 h): {then}"
        )
        status.holds = f"until {_time(c.drain_until)}"
        return set_condition(conditions, CONDITION, "False", "Draining", message, generation, now), status
    message = (
        f"{what} switched the MX{switched} and drained at {_time(c.drain_until)}: "
        "a delta round started from now on copies what reached the old provider late"
    )
    return set_condition(conditions, CONDITION, "True", "Drained", message, generation, now), status
