"""The connection test (I/O): read both Secrets, log in to every mailbox on both sides, scan the source.

Runs as a background task of the daemon (decide.schedule_validation says when); its result is a scratch
status (scan + Validated) that the next pass folds in. The pure parts are spec_checks (Secrets and keys)
and scan (results -> status).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mailferry_api.conditions import set_condition
from mailferry_api.mailmigration import InventoryStatus, MailboxEntry, MailMigrationSpec, MailMigrationStatus
from mailferry_api.problems import Problem

from .. import settings
from ..kube import client as kube
from . import inventory as inv
from . import scan, spec_checks
from .probe import ProbeResult, ProbeTask, probe_all

SecretChecks = Mapping[str, tuple[str | None, str, list[str]]]  # side -> (type, Secret name, not UTF-8)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _mailbox_key_problem(
    task: ProbeTask, entry: MailboxEntry, checks: SecretChecks, secrets: Mapping[str, Mapping[str, str]]
) -> Problem | None:
    """Password auth: the mailbox's key must be in its side's Secret (or the worker's fallback key)."""
    if task.endpoint.auth.method != "password" or task.side not in checks:
        return None
    secret_type, secret_name, not_text = checks[task.side]
    values = secrets.get(task.side, {})
    key = task.secret_key or inv.default_secret_key(entry.source)
    if key not in values and key not in not_text:
        fallback = inv.default_secret_key(task.username)
        if fallback in values:
            return None
    return spec_checks.key_problem(
        task.side, secret_name, secret_type, values, not_text, key, spec_checks.mailbox_key_field(entry)
    )


async def _read_secrets(
    namespace: str, spec: MailMigrationSpec
) -> tuple[dict[str, Mapping[str, str]], dict[str, tuple[str | None, str, list[str]]], Problem | None]:
    secrets: dict[str, Mapping[str, str]] = {}
    checks: dict[str, tuple[str | None, str, list[str]]] = {}
    for side, endpoint in (("source", spec.source), ("destination", spec.destination)):
        secret_name = endpoint.auth.secret_ref.name
        found = await kube.read_secret_values(namespace, secret_name)  # shared by concurrent readers
        if found is None:
            return (
                secrets,
                checks,
                Problem(
                    "SecretNotFound",
                    f"{side} Secret {secret_name} (spec.{side}.auth.secretRef) not found "
                    f"in namespace {namespace}",
                ),
            )
        if found.refused is not None:  # not opted in, or a token Kubernetes issues: never read
            return (
                secrets,
                checks,
                Problem(
                    found.refused.reason, f"{side} (spec.{side}.auth.secretRef): {found.refused.message}"
                ),
            )
        secrets[side], not_text = found.values, list(found.not_text)
        checks[side] = (found.type, secret_name, not_text)
        problem = spec_checks.endpoint_secret_problem(side, endpoint, found.type, secrets[side], not_text)
        if problem is not None:
            return secrets, checks, problem
    return secrets, checks, None


async def validate(
    namespace: str,
    spec: MailMigrationSpec,
    entries: Iterable[MailboxEntry],
    generation: int,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    on_mailbox: Callable[[str], None] | None = None,
    inventory: InventoryStatus | None = None,
    pace: Callable[[int], Awaitable[None]] | None = None,
) -> MailMigrationStatus:
    """Connection + credential test of every mailbox on both sides, and a scan of the source.

    Mailboxes are tested in the order given (batch order); `on_mailbox(source)` is called as soon as
    both sides of one are done, so the first batches can start while the rest is still being tested;
    `pace(i)` is awaited before the i-th probe (apply: only the first batches go ahead of the creates).
    """
    entries = list(entries)
    status = MailMigrationStatus()
    secrets, checks, problem = await _read_secrets(namespace, spec)
    if problem is not None:
        status.conditions = set_condition(
            [], "Validated", "False", problem.reason, problem.message, generation
        )
        return status
    started = time.monotonic()
    sides_done: dict[str, int] = {}
    refused: set[str] = set()

    def progress(task: ProbeTask, result: ProbeResult) -> None:
        # Only a mailbox whose both sides passed may start copying before the whole test ends: one that
        # failed a side waits for the final verdict (a Job for it would fail the same way, or worse).
        if not result.ok:
            refused.add(task.mailbox)
        sides_done[task.mailbox] = sides_done.get(task.mailbox, 0) + 1
        if sides_done[task.mailbox] == 2 and task.mailbox not in refused and on_mailbox is not None:
            on_mailbox(task.mailbox)

    tasks: list[ProbeTask] = []
    results: list[scan.Outcome] = []
    first_key: Problem | None = None
    for e in entries:
        key = e.secret_key or inv.default_secret_key(e.source)
        for task in (
            ProbeTask(e.source, "source", spec.source, e.source, key, True),
            ProbeTask(e.source, "destination", spec.destination, e.destination or e.source, key, False),
        ):
            problem = _mailbox_key_problem(task, e, checks, secrets)
            if problem is None:
                tasks.append(task)
                continue
            first_key = first_key or problem
            results.append((task, ProbeResult(False, problem.reason, problem.message)))
            progress(task, results[-1][1])
    if first_key is not None and len({t.mailbox for t, _ in results}) == len(entries):
        status.scan, status.conditions = scan.no_keys(first_key, results, len(entries), _now(), generation)
        return status
    results += await probe_all(
        tasks, secrets, concurrency=settings.current().probe_concurrency, on_result=progress, pace=pace
    )
    del secrets
    status.scan, status.conditions = scan.summarise(
        spec, results, len(entries), inventory, _now(), generation
    )
    logger.info(
        "validated %d mailboxes in %.1fs: %d reachable, %d folders, %d messages",
        len(entries),
        time.monotonic() - started,
        status.scan.reachable,
        status.scan.folders,
        status.scan.messages,
    )
    return status
