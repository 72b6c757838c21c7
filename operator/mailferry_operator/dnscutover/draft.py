"""One step's draft of a Decision (pure): the actions in the order apply.py runs them, the Events, and
a private copy of the status and of the records as the step has written them so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailferry_api.common import MAX_HISTORY, Condition, ConditionStatus
from mailferry_api.conditions import set_condition, with_ready
from mailferry_api.dnscutover import DnsCutoverStatus, DnsHistoryEntry, DnsPhase, GateStatus, RRset

from ..dns import phases as ph
from ..dns.rrset import rrset_equal
from . import snapshot as sn


# ------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class SaveStatus:
    status: DnsCutoverStatus


@dataclass(frozen=True)
class WriteRRset:
    rrset: RRset  # no records: delete the RRset


@dataclass(frozen=True)
class PublishMtaSts:
    config_map: str
    policy: str


@dataclass(frozen=True)
class CreateDkimKey:
    selector: str
    algorithm: Literal["rsa", "ed25519"]
    secret_name: str


@dataclass(frozen=True)
class CountTransition:
    direction: Literal["forward", "rollback"]


@dataclass(frozen=True)
class GateMetrics:
    phase: DnsPhase
    gates: list[GateStatus]


Action = SaveStatus | WriteRRset | PublishMtaSts | CreateDkimKey | CountTransition | GateMetrics


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    status: DnsCutoverStatus  # the status after the step (saved by the caller at the end)
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    again: bool = False  # another step may follow right away


class Draft:
    """The draft of one Decision: a private copy of the status and of the records as written so far."""

    def __init__(self, snap: sn.Snapshot) -> None:
        self.snap = snap
        self.spec = snap.spec
        self.status = snap.status.model_copy(deep=True)
        self.current = dict(snap.current)
        self.actions: list[Action] = []
        self.events: list[Event] = []

    def cond(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(
            self.status.conditions, type_, status, reason, message, self.snap.generation, self.snap.now
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def history(self, from_phase: DnsPhase, to_phase: DnsPhase, reason: str, message: str) -> None:
        entry = DnsHistoryEntry(
            time=self.snap.now,
            from_phase=from_phase,
            to_phase=to_phase,
            reason=reason,
            message=message[:1024],
        )
        self.status.history = [*self.status.history, entry][-MAX_HISTORY:]

    def save(self) -> None:
        self.status.conditions = ready(self.status.conditions, self.status, self.snap.generation)
        self.actions.append(SaveStatus(self.status.model_copy(deep=True)))

    def inputs(self) -> ph.Inputs:
        return sn.inputs(self.snap, self.current, self.status)

    def write(self, rrsets: list[RRset]) -> int:
        """Write each RRset that differs from what the provider holds (as far as this step knows)."""
        written = 0
        for want in rrsets:
            k = (want.name, want.type)
            if rrset_equal(self.current.get(k), want):
                continue
            self.actions.append(WriteRRset(want))
            self.current[k] = want if want.records else None
            written += 1
        return written

    def done(self, again: bool) -> Decision:
        return Decision(status=self.status, actions=self.actions, events=self.events, again=again)


def ready(conditions: list[Condition], status: DnsCutoverStatus, generation: int) -> list[Condition]:
    phase = status.phase or "Planned"
    return with_ready(conditions, ["GatesPassed"], "AtTargetPhase", f"{phase} is in place", generation)
