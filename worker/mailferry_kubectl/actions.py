"""The plugin's actions as pure decisions: an object in, a merge patch (or a refusal that says why) out.

Every patch changes a spec field a person could change in Git; under Argo CD (self-heal) make the same
change in Git instead, or the next sync reverts it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailferry_api.discover.review import content_hash
from mailferry_api.dnscutover import DNS_PHASES

Obj = Mapping[str, Any]
# spec.gates key of the gates that guard entering each phase (PhaseGates)
GATE_KEYS = {"TTLLowered": "ttlLowered", "Staged": "staged", "Switched": "switched", "Enforced": "enforced"}


class Refusal(Exception):
    """The action would do nothing or the wrong thing; the message says why and what to do instead."""


@dataclass(frozen=True)
class Change:
    plural: str  # mailmigrations | dnscutovers | noticeplans
    name: str
    patch: dict[str, Any]
    summary: str

    def kubectl(self, namespace: str) -> str:
        """The same change as a plain kubectl command (and so as a Git edit of the manifest)."""
        body = json.dumps(self.patch, separators=(",", ":"))
        return f"kubectl -n {namespace} patch {self.plural} {self.name} --type merge -p '{body}'"


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


# ---------------------------------------------------------------------------------- MailMigration
def approve_migration(mm: Obj) -> Change:
    approval = _spec(mm).get("approval") or {}
    name = _name(mm)
    if not approval.get("required"):
        raise Refusal(f"MailMigration {name} does not ask for approval (spec.approval.required is false)")
    if approval.get("approved"):
        raise Refusal(f"MailMigration {name} is approved already")
    scan = _status(mm).get("scan") or {}
    if not scan.get("completedAt"):
        raise Refusal(
            f"MailMigration {name}: the scan has not finished (phase {_status(mm).get('phase', '-')}); "
            "approve after reviewing its results"
        )
    return Change("mailmigrations", name, {"spec": {"approval": {"approved": True}}}, "approved the scan")


def set_suspend(mm: Obj, suspend: bool) -> Change:
    name = _name(mm)
    if bool(_spec(mm).get("suspend")) == suspend:
        raise Refusal(f"MailMigration {name} is {'suspended' if suspend else 'not suspended'} already")
    if suspend and _status(mm).get("phase") == "Completed":
        raise Refusal(f"MailMigration {name} is Completed: nothing runs that could be suspended")
    return Change(
        "mailmigrations",
        name,
        {"spec": {"suspend": suspend}},
        "suspended (no new Jobs; running ones finish)" if suspend else "resumed",
    )


def retry(mm: Obj, token: str) -> Change:
    """A new spec.retryFailed value: the operator re-runs failed mailboxes, re-tests a failed validation."""
    name = _name(mm)
    st = _status(mm)
    failed = int((st.get("mailboxes") or {}).get("failed", 0)) + len(st.get("failedMailboxes") or [])
    validation: Mapping[str, Any] = next(
        (c for c in st.get("conditions") or [] if c.get("type") == "Validated"), {}
    )
    if not failed and validation.get("status") != "False":
        raise Refusal(
            f"MailMigration {name} has no failed mailbox and no failed validation: nothing to retry"
        )
    return Change("mailmigrations", name, {"spec": {"retryFailed": token}}, "asked to retry what failed")


def scan_review(mm: Obj) -> list[str]:
    """What `approve migration` shows before it approves: the scan's totals and its errors."""
    scan = _status(mm).get("scan") or {}
    lines = [
        f"scan: {scan.get('reachable', 0)}/{scan.get('mailboxes', 0)} mailboxes reachable, "
        f"{scan.get('folders', 0)} folders, {scan.get('messages', 0)} messages, {scan.get('bytes', 0)} bytes"
    ]
    for err in scan.get("errors") or []:
        lines.append(f"  {err.get('mailbox')}: {err.get('reason')} {err.get('message', '')}".rstrip())
    return lines


def approve_inventory(mm: Obj, cm: Obj) -> Change:
    """spec.inventoryRef.approvedHash := the hash of the ConfigMap as read (and shown) now."""
    name = _name(mm)
    ref = _spec(mm).get("inventoryRef") or {}
    if not ref:
        raise Refusal(f"MailMigration {name} lists its mailboxes inline: there is no inventory to approve")
    digest = content_hash(cm)
    if ref.get("approvedHash") == digest:
        raise Refusal(f"MailMigration {name}: ConfigMap {ref.get('name')} is approved already ({digest})")
    patch = {"spec": {"inventoryRef": {"approvedHash": digest}}}
    return Change("mailmigrations", name, patch, f"approved the inventory {digest}")


def inventory_review(cm: Obj, key: str) -> list[str]:
    """What `approve inventory` shows first: every row, and what to recreate before the MX swap."""
    data = cm.get("data") or {}
    lines = [
        f"ConfigMap {_name(cm)} key {key}:",
        *(f"  {row}" for row in str(data.get(key, "")).splitlines()),
    ]
    try:
        report = json.loads(data.get("recreate.json") or "{}")
    except ValueError:
        report = {}
    if report:
        lines.append(
            f"to recreate on the destination before the MX swap: {len(report.get('aliases') or [])} aliases, "
            f"{len(report.get('groups') or [])} groups; suspended (not copied): "
            f"{', '.join(report.get('suspended') or []) or 'none'}"
        )
    return lines


# ---------------------------------------------------------------------------------- DnsCutover
def _index(phase: str, what: str) -> int:
    if phase not in DNS_PHASES:
        raise Refusal(f"{what} {phase!r} is not a phase ({', '.join(DNS_PHASES)})")
    return DNS_PHASES.index(phase)


def _phases(dc: Obj) -> tuple[int, int]:
    """(current phase, target phase) as indexes."""
    return (
        _index(str(_status(dc).get("phase") or "Planned"), "status.phase"),
        _index(str(_spec(dc).get("targetPhase") or "Planned"), "spec.targetPhase"),
    )


def advance(dc: Obj, to: str | None) -> Change:
    name = _name(dc)
    _, target = _phases(dc)
    if to is None:
        if target == len(DNS_PHASES) - 1:
            raise Refusal(f"DnsCutover {name}: targetPhase is {DNS_PHASES[target]} already, the last phase")
        new = target + 1
    else:
        new = _index(to, "--to")
        if new <= target:
            raise Refusal(
                f"DnsCutover {name}: targetPhase is {DNS_PHASES[target]}; {to} is not ahead of it "
                f"(to go back use: kubectl mailferry rollback {name} --to {to})"
            )
    return _target(name, new)


def _target(name: str, new: int) -> Change:
    phase = DNS_PHASES[new]
    return Change("dnscutovers", name, {"spec": {"targetPhase": phase}}, f"targetPhase → {phase}")


def rollback(dc: Obj, to: str | None) -> Change:
    name = _name(dc)
    current, target = _phases(dc)
    if to is None:
        if current == 0:
            raise Refusal(f"DnsCutover {name} is at Planned: there is nothing to roll back")
        new = current - 1
    else:
        new = _index(to, "--to")
    if new >= target and new >= current:
        raise Refusal(
            f"DnsCutover {name}: phase {DNS_PHASES[current]}, targetPhase {DNS_PHASES[target]}; "
            f"rolling back to {DNS_PHASES[new]} lowers nothing "
            f"(to move forward use: kubectl mailferry advance {name})"
        )
    return _target(name, new)


def approve_cutover(dc: Obj, phase: str | None) -> Change:
    """spec.approvedPhase: manualApproval gates pass for every phase up to it."""
    name = _name(dc)
    current, target = _phases(dc)
    if phase is None:
        if current >= target:
            raise Refusal(
                f"DnsCutover {name} is at its targetPhase {DNS_PHASES[target]}: no phase waits for approval "
                f"(raise the target first: kubectl mailferry advance {name})"
            )
        wanted = current + 1
    else:
        wanted = _index(phase, "--phase")
    approved = _spec(dc).get("approvedPhase")
    done = _index(str(approved), "spec.approvedPhase") if approved else 0
    if done >= wanted:
        raise Refusal(f"DnsCutover {name}: phases up to {approved} are approved already")
    phases = DNS_PHASES[max(current, done) + 1 : wanted + 1]
    gates = _spec(dc).get("gates") or {}
    waiting = [
        f"{p}/{g.get('name')}"
        for p in phases
        for g in gates.get(GATE_KEYS[p]) or []
        if g.get("type") == "manualApproval"
    ]
    if not waiting:
        raise Refusal(
            f"DnsCutover {name}: no manualApproval gate guards {', '.join(phases) or DNS_PHASES[wanted]}; "
            "nothing to approve"
        )
    return Change(
        "dnscutovers",
        name,
        {"spec": {"approvedPhase": DNS_PHASES[wanted]}},
        f"approvedPhase → {DNS_PHASES[wanted]} (passes {', '.join(waiting)})",
    )


def walk_preview(dc: Obj, change: Change) -> list[str]:
    """What the operator will do for `change`: the phases it walks, their gates, the records it writes
    (status.plan, the operator's dry-run diff for the next step) or the snapshots it restores."""
    spec, st = _spec(dc), _status(dc)
    current, _ = _phases(dc)
    new = DNS_PHASES.index(change.patch["spec"]["targetPhase"])
    lines = []
    if new > current:
        lines.append(
            f"forward: {' → '.join(DNS_PHASES[current : new + 1])}, one phase at a time, each gated:"
        )
        gates = spec.get("gates") or {}
        for p in DNS_PHASES[current + 1 : new + 1]:
            named = [f"{g.get('name')} ({g.get('type')})" for g in gates.get(GATE_KEYS[p]) or []]
            lines.append(f"  {p}: built-in gates" + (f" + {', '.join(named)}" if named else ""))
        plan = st.get("plan") or {}
        if plan.get("changes") and plan.get("fromPhase") == DNS_PHASES[current]:
            from .view import change_lines

            lines.append(f"records for {plan.get('fromPhase')} → {plan.get('toPhase')} (status.plan):")
            lines += [f"  {line}" for line in change_lines(plan["changes"])]
    elif new < current:
        lines.append(f"back: {' → '.join(reversed(DNS_PHASES[new : current + 1]))}, no forward gates:")
        snaps = {s.get("phase"): s for s in st.get("snapshots") or []}
        for p in reversed(DNS_PHASES[new + 1 : current + 1]):
            snap = snaps.get(p)
            rrsets = ", ".join(f"{r.get('type')} {r.get('name')}" for r in (snap or {}).get("rrsets") or [])
            lines.append(
                f"  leave {p}: restore the snapshot taken before it" + (f" ({rrsets})" if rrsets else "")
            )
    else:
        lines.append(f"the cutover is at {DNS_PHASES[current]} already; the operator stops moving")
    return lines


# ---------------------------------------------------------------------------------- NoticePlan
def _waiting_drafts(plan: Obj, notice: str | None, cohort: str | None) -> list[Mapping[str, Any]]:
    return [
        d
        for d in _status(plan).get("drafts") or []
        if d.get("state") == "AwaitingApproval"
        and d.get("hash")
        and (notice is None or d.get("notice") == notice)
        and (cohort is None or d.get("cohort") == cohort)
    ]


def approve_notices(plan: Obj, notice: str | None, cohort: str | None) -> Change:
    """Add the hashes of the drafts awaiting approval to spec.approvedHashes: exactly what was shown is
    what is sent (a changed draft gets a new hash and waits again). The patch carries the object's
    resourceVersion, so a concurrent change of the list is refused rather than overwritten."""
    name = _name(plan)
    drafts = _waiting_drafts(plan, notice, cohort)
    if not drafts:
        which = " ".join(f"{k} {v}" for k, v in (("notice", notice), ("cohort", cohort)) if v)
        raise Refusal(f"NoticePlan {name}: no draft awaits approval{' for ' + which if which else ''}")
    approved = list(_spec(plan).get("approvedHashes") or [])
    hashes = sorted({str(d["hash"]) for d in drafts} - set(approved))
    version = (plan.get("metadata") or {}).get("resourceVersion")
    patch: dict[str, Any] = {"spec": {"approvedHashes": approved + hashes}}
    if version:
        patch["metadata"] = {"resourceVersion": version}
    return Change("noticeplans", name, patch, f"approved {len(hashes)} draft(s): {', '.join(hashes)}")


def draft_review(plan: Obj, notice: str | None, cohort: str | None) -> list[str]:
    """What `approve notices` shows first: each draft's notice, cohort, recipients, subject and text."""
    lines = []
    for d in _waiting_drafts(plan, notice, cohort):
        lines.append(
            f"draft {d.get('hash')}: notice {d.get('notice')} to cohort {d.get('cohort')} "
            f"({d.get('recipients', 0)} recipients), due {d.get('dueAt', '-')}"
        )
        lines.append(f"  Subject: {d.get('subject', '')}")
        lines += [f"  | {line}" for line in str(d.get("text", "")).splitlines()[:20]]
    return lines
