"""Kopf wiring for MailMigrations: the in-memory indexes and one daemon per MailMigration.

Each pass: observe (body, inventory, indexes -> Snapshot) -> decide (pure -> Plan) -> apply (MailboxSyncs,
validation task, Jobs, status, Events, metrics). Watch events on MailboxSyncs, Jobs, DnsCutovers and the
MailMigration itself wake the daemon early.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import kopf
from pydantic import ValidationError

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus

from .. import logctx, metrics
from ..kube import client as kube
from . import apply, observe, pipeline
from .decide import decide, invalid_spec_status
from .plan import CutoverHold
from .views import (
    LABEL_APP,
    LABEL_MIGRATION,
    WORKER_APP,
    JobView,
    MailboxView,
    job_view,
    mailbox_view,
    parse_time,
)

PLURAL = "mailmigrations"
MAILBOXSYNCS = "mailboxsyncs"
DNSCUTOVERS = "dnscutovers"
MIN_PASS_INTERVAL = 0.5
COPYING_PHASES = ("Syncing", "InSync", "Completing")

V = TypeVar("V")
_wakeups: dict[tuple[str, str], asyncio.Event] = {}


def _wake(namespace: str | None, name: str | None) -> None:
    event = _wakeups.get((namespace or "", name or ""))
    if event is not None:
        event.set()


# ------------------------------------------------------------------------------------------ indexes
def _by_migration(namespace: str | None, labels: Mapping[str, str], view: V) -> dict[tuple[str, str], V]:
    """Index an object owned by a migration under (namespace, migration), and wake that migration."""
    migration = labels[LABEL_MIGRATION]
    _wake(namespace, migration)
    return {(namespace or "", migration): view}


# The index handlers are coroutines: Kopf runs a sync handler in a thread, one hop per watch event
# (10,000 MailboxSyncs: 10,000+ hops), and an asyncio.Event must be set from the loop's thread.
@kopf.index(API_GROUP, API_VERSION, MAILBOXSYNCS, labels={LABEL_MIGRATION: kopf.PRESENT})
async def mailboxsyncs_by_migration(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], MailboxView]:
    """(namespace, migration) -> small summaries of its MailboxSyncs; a change wakes the migration."""
    return _by_migration(namespace, labels, mailbox_view(body))


@kopf.index("batch", "v1", "jobs", labels={LABEL_APP: WORKER_APP, LABEL_MIGRATION: kopf.PRESENT})
async def worker_jobs_by_migration(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], JobView]:
    return _by_migration(namespace, labels, job_view(body))


@kopf.index(API_GROUP, API_VERSION, DNSCUTOVERS)
async def dnscutovers_by_migration(
    namespace: str | None, name: str | None, spec: Any, status: Any, **_: Any
) -> dict[tuple[str, str], CutoverHold] | None:
    """(namespace, migration) -> the DnsCutover referencing it: its phase and the raw `switchedAt` /
    `drainUntil` it writes after the MX swap. A change wakes the migration (its final sync waits)."""
    migration = ((spec or {}).get("migrationRef") or {}).get("name")
    if not migration:
        return None
    _wake(namespace, migration)
    status = status or {}
    switched = parse_time(status.get("switchedAt"))
    until = parse_time(status.get("drainUntil"))
    hold = CutoverHold(str(name or ""), status.get("phase"), switched, until if switched else None)
    return {(namespace or "", str(migration)): hold}


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def wake_on_migration_change(namespace: str | None, name: str | None, **_: Any) -> None:
    """Wake the daemon when the MailMigration changes (an index, not an event handler: no log line per
    event; it indexes nothing)."""
    _wake(namespace, name)


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def migrations_by_destination(
    namespace: str | None, name: str | None, spec: Any, meta: Any, status: Any, **_: Any
) -> dict[str, observe.DestinationEntry]:
    """destination host:port -> the MailMigrations writing there (two must not write one mailbox)."""
    dest = (spec or {}).get("destination") or {}
    key = observe.destination_key(str(dest.get("host", "")), dest.get("port", 993))
    # phase alone is not enough: a round starts (Syncing) while validation still runs, even one that fails
    validated = any(
        c.get("type") == "Validated" and c.get("status") == "True"
        for c in (status or {}).get("conditions") or []
    )
    copying = validated and (status or {}).get("phase") in COPYING_PHASES
    return {key: (str(meta.get("creationTimestamp") or ""), namespace or "", name or "", copying)}


# ------------------------------------------------------------------------------------ one pass
async def reconcile_once(
    rt: observe.Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    logger: apply.Logger,
    indexes: observe.Indexes,
) -> float:
    generation = int(body.get("metadata", {}).get("generation") or 0)
    try:
        spec = observe.worker_defaults(MailMigrationSpec.model_validate(dict(body.get("spec") or {})))
    except ValidationError as exc:
        logger.error("invalid spec: %s", exc.errors(include_input=False)[:3])
        status = MailMigrationStatus.model_validate(dict(body.get("status") or {}))
        failed = invalid_spec_status(status, generation, observe.now())
        await kube.patch_custom_status(namespace, PLURAL, name, apply.status_dict(failed))
        return 60.0
    snap = await observe.observe(rt, body, namespace, name, spec, indexes)
    if rt.last_status is None:  # what the API holds: snap.status already carries this pass's inventory
        stored = MailMigrationStatus.model_validate(dict(body.get("status") or {}))
        rt.last_status = apply.status_dict(stored)
    plan = decide(snap)
    if plan.ensure_mailboxsyncs:
        existing = {v.name: v for v in observe.store_values(indexes.mailboxsyncs, (namespace, name))}
        await apply.ensure_mailboxsyncs(rt, body, namespace, name, uid, spec, existing, logger)
    apply.apply_validation(rt, plan, namespace, name, spec, generation, logger)
    await apply.create_jobs(rt, body, plan, namespace, name, uid, spec, logger)
    for job in plan.stop_jobs:  # follow mode completed: the followers stop and give their Leases back
        if await kube.delete_job(namespace, job):
            logger.info("deleted follower Job %s", job)
    await apply.prune_jobs(rt, namespace, plan.prune_jobs, logger)
    await apply.write_status(rt, namespace, name, plan.status)
    apply.send_events(body, [*rt.events, *plan.events])
    rt.events.clear()
    apply.update_metrics(namespace, name, plan.status)
    return plan.requeue_after


# ------------------------------------------------------------------------------------ the daemon
@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_timeout=10.0)
async def migration_daemon(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    logger: apply.Logger,
    **kwargs: Any,
) -> None:
    # Kopf passes every index as a kwarg named like its function.
    indexes = observe.Indexes(
        mailboxsyncs=kwargs["mailboxsyncs_by_migration"],
        jobs=kwargs["worker_jobs_by_migration"],
        by_destination=kwargs.get("migrations_by_destination"),
        cutovers=kwargs.get("dnscutovers_by_migration"),
    )
    rt = observe.Runtime()
    namespace = namespace or ""
    logctx.bind(namespace, "MailMigration", name)
    key = (namespace, name)
    wake = asyncio.Event()
    _wakeups[key] = wake
    rt.wake = wake
    backoff = 1.0
    try:
        while not stopped:
            wake.clear()
            started = time.monotonic()
            try:
                delay = await reconcile_once(rt, body, namespace, name, uid, logger, indexes)
                backoff = 1.0
            except Exception as exc:
                if stopped:  # the operator is shutting down (its HTTP client may be closed already)
                    break
                metrics.reconcile_errors.labels("MailMigration").inc()
                if isinstance(exc, kube.KubeError) and exc.status == 404:
                    logger.info("MailMigration is gone")
                    break
                if isinstance(exc, kube.KubeError):
                    logger.warning(
                        "API error %s %s; retrying in %.0fs", exc.status or "unreachable", exc.reason, backoff
                    )
                elif isinstance(exc, (TimeoutError, OSError)):
                    logger.warning("%s; retrying in %.0fs", type(exc).__name__, backoff)
                else:
                    logger.exception("reconcile failed; retrying in %.0fs", backoff)
                delay, backoff = backoff, min(backoff * 2, 60.0)
            spent = time.monotonic() - started
            waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())}
            _done, pending = await asyncio.wait(
                waiters, timeout=max(delay, MIN_PASS_INTERVAL), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if not stopped:  # let a burst of watch events settle; rest longer after a costly pass
                creating = rt.ensuring is not None and not rt.ensuring.done()
                await asyncio.sleep(pipeline.pass_pause(spent, creating))
    finally:
        for background in (rt.validation, rt.ensuring):
            if background is not None:
                background.cancel()
        _wakeups.pop(key, None)
        apply.forget_metrics(namespace, name)
