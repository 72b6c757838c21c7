"""Probe results -> `status.scan` and the Validated condition (pure; validation.py runs the probes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mailferry_api.common import MAX_ERRORS, Condition
from mailferry_api.conditions import set_condition
from mailferry_api.mailmigration import InventoryStatus, MailboxError, MailMigrationSpec, ScanStatus
from mailferry_api.problems import Problem

from .probe import ProbeResult, ProbeTask

Outcome = tuple[ProbeTask, ProbeResult]


def _error(task: ProbeTask, result: ProbeResult, side: str | None = None) -> MailboxError:
    return MailboxError(
        mailbox=task.mailbox,
        side=side or task.side,
        reason=result.reason[:128],
        message=result.message[:1024],
    )


def inventory_summary(spec: MailMigrationSpec, inventory: InventoryStatus | None) -> str:
    """`; first: spec.mailboxes[1]: duplicate source ... (see status.inventory.errors)` or ``."""
    if inventory is None or not inventory.errors:
        return "" if inventory is None or inventory.total else "; it has no rows"
    first = inventory.errors[0]
    where = f"spec.mailboxes[{first.line - 1}]" if spec.mailboxes is not None else f"line {first.line}"
    return f"; first: {where}: {first.reason} (see status.inventory.errors)"


def no_keys(
    first: Problem, outcomes: Sequence[Outcome], mailboxes: int, now: datetime, generation: int
) -> tuple[ScanStatus, list[Condition]]:
    """Not one mailbox has its key in the Secret: say so once, with the first key that is missing."""
    message = (
        f"{first.message}; no mailbox has its key (see status.scan.errors)"
        if mailboxes > 1
        else first.message
    )
    scan = ScanStatus(
        mailboxes=mailboxes, completed_at=now, errors=[_error(t, r) for t, r in outcomes[:MAX_ERRORS]]
    )
    return scan, set_condition([], "Validated", "False", first.reason, message, generation, now)


def summarise(
    spec: MailMigrationSpec,
    outcomes: Sequence[Outcome],
    mailboxes: int,
    inventory: InventoryStatus | None,
    now: datetime,
    generation: int,
) -> tuple[ScanStatus, list[Condition]]:
    """The scan totals (reachable mailboxes, folders, messages, bytes, first errors) and Validated:
    False when nothing is reachable or the inventory is empty, True with a reason saying what was skipped."""
    scan = ScanStatus(mailboxes=mailboxes, completed_at=now)
    problems: dict[str, list[Outcome]] = {}
    for task, result in outcomes:
        if result.ok:
            scan.folders += result.folders
            scan.messages += result.messages
            scan.bytes += result.bytes
            if task.scan and result.bytes > scan.largest_mailbox_bytes:
                scan.largest_mailbox, scan.largest_mailbox_bytes = task.mailbox, result.bytes
        else:
            problems.setdefault(task.mailbox, []).append((task, result))
    for sides in problems.values():
        if len(scan.errors) < MAX_ERRORS:
            task, first = sides[0]
            scan.errors.append(_error(task, first, None if len(sides) == 1 else "both"))
    error_count = len(problems)
    scan.reachable = mailboxes - error_count
    first_error = ""
    if scan.errors:
        e0 = scan.errors[0]
        first_error = f": {e0.mailbox} ({e0.side}): {e0.reason}: {e0.message}"
    if not mailboxes:
        verdict = (
            "False",
            "NoMailboxes",
            "the inventory has no valid mailbox" + inventory_summary(spec, inventory),
        )
    elif scan.reachable == 0:
        verdict = (
            "False",
            "NoMailboxReachable",
            f"none of {mailboxes} mailboxes passed the connection test{first_error[:600]}"
            " (see status.scan.errors)",
        )
    elif error_count:
        verdict = (
            "True",
            "SomeMailboxesUnreachable",
            f"{error_count} of {mailboxes} mailboxes failed the connection test{first_error[:600]} "
            "(see status.scan.errors); they are still attempted and fail with a reason if the problem stays",
        )
    elif inventory is not None and inventory.invalid:
        verdict = (
            "True",
            "InventoryRowsSkipped",
            f"{mailboxes} mailboxes passed the connection test; "
            f"{inventory.invalid} inventory row(s) skipped" + inventory_summary(spec, inventory),
        )
    else:
        verdict = (
            "True",
            "AllMailboxesReachable",
            f"{mailboxes} mailboxes: {scan.folders} folders, {scan.messages} messages, {scan.bytes} bytes",
        )
    status, reason, message = verdict
    return scan, set_condition([], "Validated", status, reason, message, generation, now)  # type: ignore[arg-type]
