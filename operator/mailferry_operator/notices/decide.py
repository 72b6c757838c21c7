"""Pure planning of a NoticePlan: the drafts (one per notice and cohort), which are due, whom to send to.

No I/O: observe.py builds the Snapshot, apply.py carries out the Plan. A draft's hash covers everything
a recipient would see and who they are (notice, cohort, From, Reply-To, subject, text, the recipient
list), so any change of an input makes a new hash that needs its own approval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from mailferry_api.conditions import set_condition, with_ready
from mailferry_api.noticeplan import (
    MAX_DRAFTS,
    MAX_TEXT,
    CohortDelivery,
    Draft,
    Notice,
    NoticePlanSpec,
    NoticePlanStatus,
    PlanPhase,
    RepliesRead,
)
from mailferry_api.problems import Problem, ProblemError

from ..mailmigration.durations import parse_duration
from . import ledger
from .message import message_id, reply_to, sender
from .templates import check_header, render


@dataclass(frozen=True)
class Member:
    address: str
    mailbox_synced: bool = False


@dataclass(frozen=True)
class Snapshot:
    plan_name: str
    plan_uid: str
    generation: int
    spec: NoticePlanSpec
    now: datetime
    previous: NoticePlanStatus
    members: Mapping[str, list[Member]]  # cohort -> people (sorted by address)
    facts: Mapping[str, str]  # the migration's facts, the same for every cohort
    templates: Mapping[str, str]
    ledgers: Mapping[tuple[str, str], ledger.Book]  # (notice, cohort) -> book
    batch_started: Mapping[str, datetime] = field(default_factory=dict)
    switched_at: datetime | None = None
    problem: Problem | None = None  # the plan cannot be worked on (migration or templates missing ...)
    delivery_problem: Problem | None = None  # drafts are fine but SMTP cannot be used (login, TLS ...)
    replies: RepliesRead | None = None  # this run's reading of spec.replies (None: not read this run)


@dataclass(frozen=True)
class Send:
    notice: str
    cohort: str
    hash: str
    address: str
    message_id: str
    subject: str
    text: str


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class Plan:
    status: NoticePlanStatus
    sends: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def draft_hash(
    notice: str, cohort: str, spec: NoticePlanSpec, subject: str, text: str, rcpts: list[str]
) -> str:
    content = [notice, cohort, spec.from_, reply_to(spec) or "", subject, text, sorted(rcpts)]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]


def cohorts_of(notice: Notice, members: Mapping[str, list[Member]]) -> list[str]:
    return list(notice.cohorts) if notice.cohorts else sorted(members)


def due_at(notice: Notice, cohort: str, snap: Snapshot) -> tuple[datetime | None, str]:
    """When the notice is due for the cohort, or (None, why not yet). mailboxCompleted: per person,
    so the draft is due at once and each recipient waits for their own mailbox."""
    offset = timedelta(seconds=_signed_seconds(notice.at.offset))
    anchor = notice.at.anchor
    if anchor == "window":
        window = next((c.window for c in snap.spec.cohorts if c.name == cohort), None)
        return (window + offset, "") if window else (None, f"spec.cohorts has no window for {cohort}")
    if anchor == "batchStart":
        started = snap.batch_started.get(cohort)
        return (started + offset, "") if started else (None, "the cohort's mailboxes have not started")
    if anchor == "switch":
        if snap.spec.cutover_ref is None:
            return None, "anchor switch needs spec.cutoverRef"
        return (
            (snap.switched_at + offset, "") if snap.switched_at else (None, "the MX switch has not happened")
        )
    return snap.now, ""


def _signed_seconds(text: str) -> float:
    return -parse_duration(text[1:]) if text.startswith("-") else parse_duration(text)


def _facts(snap: Snapshot, cohort: str, people: int) -> dict[str, str]:
    window = next((c.window for c in snap.spec.cohorts if c.name == cohort), None)
    return {
        **snap.facts,
        "cohort": cohort,
        "mailboxes": str(people),
        "window": window.strftime("%Y-%m-%d %H:%M UTC") if window else "",
        "window_date": window.strftime("%A %d %B %Y") if window else "",
    }


def _draft(
    notice: Notice, cohort: str, snap: Snapshot, budget: list[int], old: Draft | None = None
) -> tuple[Draft, list[Send]]:
    people = snap.members.get(cohort, [])
    base = Draft(notice=notice.name, cohort=cohort, state="Refused", recipients=len(people))
    where = f"notice {notice.name} for cohort {cohort}"
    if not people:
        return base.model_copy(update={"reason": "CohortEmpty", "message": f"{where}: nobody in it"}), []
    try:
        facts = _facts(snap, cohort, len(people))
        subject_tpl = snap.templates.get(f"{notice.template}.subject")
        text_tpl = snap.templates.get(f"{notice.template}.text")
        if subject_tpl is None or text_tpl is None:
            raise ProblemError(
                f"{where}: the templates ConfigMap has no {notice.template}.subject or "
                f"{notice.template}.text",
                "TemplateMissing",
            )
        subject = check_header(
            "Subject", render(subject_tpl.strip(), facts, f"{notice.template}.subject"), where
        )
        text = render(text_tpl, facts, f"{notice.template}.text")
        if len(text) > MAX_TEXT:
            raise ProblemError(f"{where}: the text is {len(text)} characters (at most {MAX_TEXT})", "TooLong")
        sender(snap.spec.from_)
        if snap.spec.reply_to:
            sender(snap.spec.reply_to, "spec.replyTo")
        if snap.spec.replies:
            sender(snap.spec.replies.address, "spec.replies.address")
    except ProblemError as exc:
        return base.model_copy(update={"reason": exc.reason, "message": exc.message[:1024]}), []
    addresses = [p.address for p in people]
    digest = draft_hash(notice.name, cohort, snap.spec, subject, text, addresses)
    book = snap.ledgers.get((notice.name, cohort), {})
    counts = {
        s: sum(1 for a in addresses if (e := book.get(a.lower())) and e.state == s) for s in ledger.STATES
    }
    draft = base.model_copy(
        update={
            "hash": digest,
            "subject": subject,
            "text": text,
            "sent": counts["sent"],
            "bounced": counts["bounced"],
            "acknowledged": sum(1 for a in addresses if (e := book.get(a.lower())) and e.acked),
            "in_doubt": counts["intent"],
        }
    )
    when, why = due_at(notice, cohort, snap)
    draft.due_at = when
    if all(a.lower() in book for a in addresses) and counts["intent"] == 0:
        return draft.model_copy(update={"state": "Sent"}), []
    if digest not in snap.spec.approved_hashes:
        message = f"approve hash {digest} (spec.approvedHashes) to send it" + (
            f"; not due yet: {why}" if why else ""
        )
        # the clock of the approval-wait alert: it restarts only with a new hash
        since = old.awaiting_since if old and old.hash == digest and old.awaiting_since else snap.now
        update = {"state": "AwaitingApproval", "message": message, "awaiting_since": since}
        return draft.model_copy(update=update), []
    if when is None or when > snap.now or snap.spec.suspend:
        reason = "suspended" if snap.spec.suspend else why or f"due at {when:%Y-%m-%d %H:%M:%S} UTC"
        return draft.model_copy(update={"state": "Scheduled", "message": reason}), []
    sends: list[Send] = []
    domain = sender(snap.spec.from_)[1].split("@")[1]
    for person in people:
        if budget[0] <= 0:
            break
        if person.address.lower() in book:
            continue
        if notice.at.anchor == "mailboxCompleted" and not person.mailbox_synced:
            continue
        budget[0] -= 1
        msgid = message_id(snap.plan_uid, notice.name, person.address, domain)
        sends.append(Send(notice.name, cohort, digest, person.address, msgid, subject, text))
    waiting = "" if sends or counts["intent"] else "waiting for mailboxes to complete"
    return draft.model_copy(update={"state": "Sending", "message": waiting}), sends


def decide(snap: Snapshot) -> Plan:
    status = NoticePlanStatus(
        observed_generation=snap.generation,
        conditions=list(snap.previous.conditions),
        last_run_time=snap.now,
        cohorts=[],
        replies=snap.replies or snap.previous.replies,
    )
    plan = Plan(status=status)
    if snap.problem is not None:
        _conditions(status, snap, snap.problem)
        status.phase = "Stalled"
        status.drafts, status.pending_approvals = snap.previous.drafts, snap.previous.pending_approvals
        if _condition_changed(snap.previous, "Stalled", snap.problem.reason):
            plan.events.append(Event("Warning", snap.problem.reason, snap.problem.message))
        return plan
    pairs = sum(len(cohorts_of(n, snap.members)) for n in snap.spec.notices)
    if pairs > MAX_DRAFTS:
        too_many = Problem(
            "TooManyDrafts",
            f"{pairs} drafts (notices x cohorts) but status holds at most {MAX_DRAFTS}: split the plan "
            "(one NoticePlan per group of cohorts) or name the cohorts of each notice",
        )
        return decide(replace(snap, problem=too_many))
    budget = [snap.spec.sending.max_per_run]
    before = {(d.notice, d.cohort): d for d in snap.previous.drafts}
    for notice in snap.spec.notices:
        for cohort in cohorts_of(notice, snap.members):
            old = before.get((notice.name, cohort))
            draft, sends = _draft(notice, cohort, snap, budget, old)
            status.drafts.append(draft)
            plan.sends += sends
            plan.events += _draft_events(draft, old)
    status.pending_approvals = sum(1 for d in status.drafts if d.state == "AwaitingApproval")
    status.sent = sum(d.sent for d in status.drafts)
    status.bounced = sum(d.bounced for d in status.drafts)
    status.acknowledged = sum(d.acknowledged for d in status.drafts)
    status.cohorts = _cohort_delivery(snap, status.drafts)
    refused = next((d for d in status.drafts if d.state == "Refused" and d.reason != "CohortEmpty"), None)
    problem = Problem(refused.reason, refused.message) if refused else snap.delivery_problem
    if problem is not None and _condition_changed(snap.previous, "Stalled", problem.reason):
        plan.events.append(Event("Warning", problem.reason, problem.message))
    _conditions(status, snap, problem)
    status.phase = _phase(status, problem)
    return plan


def _phase(status: NoticePlanStatus, problem: Problem | None) -> PlanPhase:
    states = {d.state for d in status.drafts}
    if problem is not None:
        return "Stalled"
    for state in ("AwaitingApproval", "Sending", "Scheduled"):
        if state in states:
            return cast(PlanPhase, state)
    return "Sent"


def _draft_events(draft: Draft, old: Draft | None) -> list[Event]:
    unchanged = old is not None and old.hash == draft.hash and old.state == draft.state
    if unchanged:
        return []
    if draft.state == "AwaitingApproval":
        return [
            Event(
                "Normal",
                "DraftAwaitingApproval",
                f"notice {draft.notice} for cohort {draft.cohort} ({draft.recipients} recipients) waits for "
                f"approval: add {draft.hash} to spec.approvedHashes",
            )
        ]
    if draft.state == "Sent":
        return [
            Event(
                "Normal",
                "NoticeSent",
                f"notice {draft.notice} for cohort {draft.cohort}: {draft.sent} sent, "
                f"{draft.bounced} bounced",
            )
        ]
    return []


def _cohort_delivery(snap: Snapshot, drafts: list[Draft]) -> list[CohortDelivery]:
    out = []
    for cohort in sorted(snap.members):
        mine = [d for d in drafts if d.cohort == cohort]
        sent, bounced = sum(d.sent for d in mine), sum(d.bounced for d in mine)
        acknowledged = sum(d.acknowledged for d in mine)
        out.append(
            CohortDelivery(
                cohort=cohort,
                recipients=len(snap.members[cohort]),
                sent=sent,
                bounced=bounced,
                acknowledged=acknowledged,
                bounced_percent=percent(bounced, sent + bounced),
                acknowledged_percent=percent(acknowledged, sent),
                batch_started_at=snap.batch_started.get(cohort),
            )
        )
    return out


def percent(part: int, whole: int) -> str:
    """'12.5%' (one decimal: bounce thresholds sit at 2 and 5 %); empty when nothing was sent."""
    return f"{100 * part / whole:.1f}%" if whole else ""


def _condition_changed(previous: NoticePlanStatus, type_: str, reason: str) -> bool:
    found = next((c for c in previous.conditions if c.type == type_), None)
    return found is None or found.status != "True" or found.reason != reason


def _conditions(status: NoticePlanStatus, snap: Snapshot, problem: Problem | None) -> None:
    gen, at = snap.generation, snap.now
    if problem is None:
        status.conditions = set_condition(status.conditions, "Stalled", "False", "Rendered", "", gen, at)
    else:
        status.conditions = set_condition(
            status.conditions, "Stalled", "True", problem.reason, problem.message, gen, at
        )
    waiting = status.pending_approvals
    status.conditions = set_condition(
        status.conditions,
        "Approved",
        "False" if waiting else "True",
        "AwaitingApproval" if waiting else "AllApproved",
        f"{waiting} draft(s) wait for approval" if waiting else "",
        gen,
        at,
    )
    status.conditions = with_ready(status.conditions, [], "Succeeded", "", gen, at)
