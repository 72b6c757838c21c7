"""One pass's writes, in crash-safe order: MailboxSyncs (before any Job names them), the validation task,
Jobs (deterministic names: a repeated pass never doubles one), then status, Events and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, get_args

import kopf

from mailferry_api.mailmigration import (
    InventoryStatus,
    MailMigrationSpec,
    MailMigrationStatus,
    MigrationPhase,
)

from .. import metrics, settings
from ..kube import client as kube
from . import ownership, pipeline
from .observe import Runtime
from .plan import Event, Plan, ValidationState
from .resources import for_mailbox, job_body, mailbox_sync_body, mailbox_sync_template, spec_hash
from .validation import validate
from .views import ANNOTATION_SPEC_HASH, JobView, MailboxView

PLURAL = "mailmigrations"
MAILBOXSYNCS = "mailboxsyncs"
PHASES = get_args(MigrationPhase)

Logger = logging.Logger | logging.LoggerAdapter[Any]


def kopf_event_safe(body: kopf.Body, type_: str, reason: str, message: str) -> None:
    with contextlib.suppress(Exception):
        kopf.event(body, type=type_, reason=reason, message=message[:1024])


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning `old` into `new`: keys gone from `new` become null."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def status_dict(status: MailMigrationStatus) -> dict[str, Any]:
    data = status.to_api()
    data.pop("kopf", None)
    return data


# ------------------------------------------------------------------------------------ MailboxSyncs
async def ensure_mailboxsyncs(
    rt: Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    spec: MailMigrationSpec,
    existing: Mapping[str, MailboxView],
    logger: Logger,
) -> None:
    """Start (or keep) the background run that creates missing MailboxSyncs and updates drifted specs
    (pipeline.py: the first batch's Job need not wait for the last of 10,000). A run that failed raises
    its error here, so the daemon backs off as for its own API errors and starts a new one."""
    key = (rt.inventory_key, spec_hash(spec.to_api()))
    rt.ensure_wanted = key
    task = rt.ensuring
    if task is not None:
        if not task.done() and rt.ready_for == key:
            return
        rt.ensuring = None
        task.cancel()  # done, or working for an older inventory / spec
        error = None if not task.done() or task.cancelled() else task.exception()
        if error is not None:
            raise error
    if key == rt.ensured_key and rt.names.keys() <= existing.keys():
        return  # (one deleted by hand is missing from `existing`: made again)
    rt.ready = pipeline.keep_ready(rt.ready, existing) if rt.ready_for == key else set()
    rt.ready_for, rt.ensured_key = key, None
    rt.ensuring = asyncio.create_task(
        _ensure(rt, key, body, namespace, name, uid, spec, dict(existing), logger),
        name=f"mailboxsyncs-{namespace}-{name}",
    )


async def _ensure(
    rt: Runtime,
    key: tuple[Any, ...],
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    spec: MailMigrationSpec,
    existing: Mapping[str, MailboxView],
    logger: Logger,
) -> None:
    """Create / patch in batch order, `create_concurrency` calls at a time; each MailboxSync the API
    confirmed joins `rt.ready`, and the daemon is woken when a batch's worth more are ready."""
    created = updated = 0
    template = mailbox_sync_template(name, spec)
    todo = iter(pipeline.creation_order(rt.names))
    step = max(1, spec.batch_size)

    def confirm(sync_name: str) -> None:
        rt.ready.add(sync_name)
        if len(rt.ready) % step == 0 and rt.wake is not None:
            rt.wake.set()

    async def lane() -> None:
        # create_concurrency lanes take the next mailbox when free: no task per mailbox is waiting
        # (10,000 of them cost ~12 MB), and a body is built only when its turn comes.
        nonlocal created, updated
        for count, (sync_name, entry) in enumerate(todo):
            wanted = mailbox_sync_body(name, uid, namespace, spec, entry, template)
            want = wanted["metadata"]["annotations"]
            have = existing.get(sync_name)
            if have is not None and have.spec_hash == want[ANNOTATION_SPEC_HASH]:
                confirm(sync_name)
                if count % 256 == 0:
                    await asyncio.sleep(0)  # 10,000 already there: let the loop breathe
                continue
            if have is None and await kube.create_custom(namespace, MAILBOXSYNCS, wanted):
                created += 1
                confirm(sync_name)
                continue
            if have is None:  # 409, and not in our index (yet): patch it only if it is ours
                found = await kube.get_or_none(
                    f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/mailboxsyncs/{sync_name}"
                )
                if found is not None and not ownership.owned_by(found, uid):
                    rt.taken[sync_name] = ownership.owner_of(found)
                    continue
                hashed = ((found or {}).get("metadata") or {}).get("annotations") or {}
                if found is not None and hashed.get(ANNOTATION_SPEC_HASH) == want[ANNOTATION_SPEC_HASH]:
                    confirm(sync_name)  # ours and current: the index had not shown it yet
                    continue
            await kube.patch_custom(
                namespace,
                MAILBOXSYNCS,
                sync_name,
                {"metadata": {"annotations": want}, "spec": for_mailbox(template.full, entry)},
            )
            updated += 1
            confirm(sync_name)

    started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(max(1, settings.current().create_concurrency))))
    rt.ensured_key = None if rt.taken else key  # taken names: observe reports them, tried again
    if rt.wake is not None:
        rt.wake.set()
    if created or updated:
        logger.info(
            "MailboxSyncs: %d created, %d updated, %d total in %.1fs",
            created,
            updated,
            len(rt.names),
            time.monotonic() - started,
        )
        kopf_event_safe(
            body, "Normal", "MailboxSyncsReady", f"{len(rt.names)} MailboxSyncs ({created} created)"
        )


# ------------------------------------------------------------------------------------ validation
def _start_validation(
    rt: Runtime, namespace: str, name: str, spec: MailMigrationSpec, generation: int, logger: Logger
) -> None:
    by_source = {e.source: n for n, e in rt.names.items()}
    ordered = [rt.names[n] for n in sorted(rt.names)]
    rt.probed = set()

    def tested(source: str) -> None:
        sync_name = by_source.get(source)
        if sync_name is not None:
            rt.probed.add(sync_name)
        if rt.wake is not None:
            rt.wake.set()

    inventory = rt.inventory_status if isinstance(rt.inventory_status, InventoryStatus) else None

    lead = 2 * pipeline.validation_lead(spec.batch_size, spec.max_concurrent_jobs)  # two probes each

    async def pace(index: int) -> None:
        while index >= lead and rt.ensuring is not None and not rt.ensuring.done():
            await asyncio.sleep(0.5)

    async def run() -> MailMigrationStatus:
        try:
            return await validate(namespace, spec, ordered, generation, logger, tested, inventory, pace)
        finally:
            if rt.wake is not None:
                rt.wake.set()

    rt.validation = asyncio.create_task(run(), name=f"validate-{namespace}-{name}")


def apply_validation(
    rt: Runtime,
    plan: Plan,
    namespace: str,
    name: str,
    spec: MailMigrationSpec,
    generation: int,
    logger: Logger,
) -> None:
    """Cancel, forget a finished, or start the background connection test as decided."""
    v = plan.validation
    if v is None:
        return
    task = rt.validation
    # a task that finished after observe() read it is folded in by the next pass, not dropped here
    if task is not None and (v.cancel or v.folded):
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("validation failed; retrying in %.0fs: %s", v.retry_in or 0, task.exception())
        task.cancel()
        rt.validation = None
    rt.validation_state = ValidationState(now=0.0, failures=v.failures, next_at=v.next_at, trigger=v.trigger)
    if v.start:
        _start_validation(rt, namespace, name, spec, generation, logger)


# ------------------------------------------------------------------------------------ Jobs, status
async def create_jobs(
    rt: Runtime,
    body: kopf.Body,
    plan: Plan,
    namespace: str,
    name: str,
    uid: str,
    spec: MailMigrationSpec,
    logger: Logger,
) -> None:
    """Create the planned Jobs whose MailboxSyncs are ready (the others are planned again next pass)."""
    running = rt.ensuring is not None and not rt.ensuring.done()
    wanted = rt.ensure_wanted
    ready = pipeline.ready_gate(wanted, rt.ensured_key, running, rt.ready_for, rt.ready)
    for job in pipeline.startable(plan.create_jobs, ready):
        # the batch's inventory rows: its pod's Secret volumes hold only their keys (all of them if one is
        # unknown here, which a Job planned from this inventory never names)
        known = all(m in rt.names for m in job.mailboxes)
        entries = [rt.names[m] for m in job.mailboxes] if known else None
        manifest = job_body(name, uid, namespace, spec, job, entries=entries)
        made = await kube.create_job(namespace, manifest)
        rt.created_jobs[job.name] = (
            time.monotonic(),
            JobView(job.name, job.round, job.batch, job.attempt, job.mailboxes, active=True),
        )
        if made:
            logger.info(
                "created Job %s (round %d, batch %d, attempt %d, %d mailboxes)",
                job.name,
                job.round,
                job.batch,
                job.attempt,
                len(job.mailboxes),
            )
            kopf_event_safe(
                body,
                "Normal",
                "JobCreated",
                f"Job {job.name}: round {job.round}, batch {job.batch}, {len(job.mailboxes)} mailboxes",
            )


async def prune_jobs(rt: Runtime, namespace: str, names: list[str], logger: Logger) -> None:
    """Delete finished Jobs of older rounds (rounds.prunable_jobs) and their pods; the next passes stop
    counting them at once (observe._job_views), not when the watch shows them gone."""
    deleted = 0
    for job in names:
        rt.deleted_jobs[job] = time.monotonic()
        deleted += await kube.delete_job(namespace, job)
    if deleted:
        logger.info("deleted %d finished Job(s) of earlier rounds, the oldest %s", deleted, names[0])


async def write_status(rt: Runtime, namespace: str, name: str, status: MailMigrationStatus) -> None:
    """Patch only what changed since the last write (a merge patch of the difference)."""
    new_status = status_dict(status)
    if new_status != rt.last_status:
        await kube.patch_custom_status(namespace, PLURAL, name, merge_patch(rt.last_status or {}, new_status))
        rt.last_status = new_status


def send_events(body: kopf.Body, events: list[Event]) -> None:
    for event in events:
        kopf_event_safe(body, event.type, event.reason, event.message)


# ------------------------------------------------------------------------------------ metrics
def update_metrics(namespace: str, name: str, status: MailMigrationStatus) -> None:
    labels = (namespace, name)
    for phase in PHASES:
        metrics.migration_phase.labels(*labels, phase).set(1 if status.phase == phase else 0)
    t = status.totals
    if t is not None:
        for state, value in (
            ("expected", t.expected_messages),
            ("copied", t.copied_messages),
            ("skipped", t.skipped_messages),
            ("failed", t.failed_messages),
            ("deleted", t.deleted_messages),
            ("moved", t.moved_messages),
        ):
            metrics.migration_messages.labels(*labels, state).set(value)
        metrics.migration_bytes.labels(*labels, "expected").set(t.expected_bytes)
        metrics.migration_bytes.labels(*labels, "copied").set(t.copied_bytes)
    if status.lag is not None:
        metrics.migration_lag_seconds.labels(*labels).set(status.lag.max_seconds)
        metrics.migration_pending_messages.labels(*labels).set(status.lag.pending_messages)
    if status.jobs is not None:
        for state in ("active", "succeeded", "failed"):
            metrics.migration_jobs.labels(*labels, state).set(getattr(status.jobs, state))
    if status.mailboxes is not None:
        for state in ("total", "synced", "syncing", "pending", "failed"):
            metrics.migration_mailboxes.labels(*labels, state).set(getattr(status.mailboxes, state))
    for cond in status.conditions:
        metrics.migration_condition.labels(*labels, cond.type).set(1 if cond.status == "True" else 0)
    if status.collection_totals is not None:
        for kind in ("contacts", "calendars"):
            for state, value in getattr(status.collection_totals, kind).model_dump().items():
                metrics.migration_collection_items.labels(*labels, kind, state).set(value)


def forget_metrics(namespace: str, name: str) -> None:
    for gauge in (
        metrics.migration_phase,
        metrics.migration_messages,
        metrics.migration_bytes,
        metrics.migration_lag_seconds,
        metrics.migration_pending_messages,
        metrics.migration_jobs,
        metrics.migration_mailboxes,
        metrics.migration_condition,
        metrics.migration_collection_items,
    ):
        for labelvalues in list(gauge._metrics):
            if labelvalues[:2] == (namespace, name):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labelvalues)
