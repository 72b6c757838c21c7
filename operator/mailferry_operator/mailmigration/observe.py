"""One pass's reads: the MailMigration body, its inventory, the spec checks that need I/O, the in-memory
indexes (MailboxSyncs, Jobs, other migrations, DnsCutovers) and the validation task -> a Snapshot.

`Runtime` is what one daemon remembers between passes; all of it can be rebuilt from the API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import kopf

from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec, MailMigrationStatus
from mailferry_api.problems import Problem

from .. import settings
from ..kube import client as kube
from . import discovery, ownership, review, spec_checks
from . import inventory as inv
from .naming import mailbox_sync_name
from .plan import CutoverHold, Event, Snapshot, ValidationState
from .views import ANNOTATION_APPROVED, ANNOTATION_RETRY_FAILED, JobView, MailboxView

INVENTORY_RECHECK_SECONDS = 60.0
CREATED_JOB_MEMORY_SECONDS = 120.0  # a Job this pass created counts until the index shows it

DestinationEntry = tuple[str, str, str, bool]  # (creationTimestamp, namespace, name, copying)


@dataclass
class Runtime:
    """What one daemon remembers between passes (all of it can be rebuilt from the API)."""

    inventory_key: tuple[Any, ...] | None = None
    inventory_checked: float = 0.0
    entries: list[MailboxEntry] = field(default_factory=list)
    names: dict[str, MailboxEntry] = field(default_factory=dict)  # MailboxSync name -> entry
    placeholders: dict[str, MailboxView] = field(default_factory=dict)  # the same, before it exists
    inventory_status: Any = None
    inventory_problem: Problem | None = None  # the inventory is unreadable
    spec_problem: Problem | None = None  # the spec cannot run (spec_checks)
    spec_checked_key: tuple[Any, ...] | None = None
    ensured_key: tuple[Any, ...] | None = None  # every MailboxSync matches this (inventory, spec)
    ensure_wanted: tuple[Any, ...] | None = None  # the (inventory, spec) the last pass asked for
    ensuring: asyncio.Task[None] | None = None  # creating / patching MailboxSyncs in the background
    ready: set[str] = field(default_factory=set)  # MailboxSync names confirmed for `ready_for`
    ready_for: tuple[Any, ...] | None = None
    taken: dict[str, str] = field(default_factory=dict)  # MailboxSync name -> who holds it (not us)
    validation_state: ValidationState = field(default_factory=lambda: ValidationState(now=0.0))
    validation: asyncio.Task[MailMigrationStatus] | None = None  # running in the background
    probed: set[str] = field(default_factory=set)  # MailboxSync names tested so far
    wake: asyncio.Event | None = None
    created_jobs: dict[str, tuple[float, JobView]] = field(default_factory=dict)
    deleted_jobs: dict[str, float] = field(default_factory=dict)  # Job name -> when this daemon deleted it
    last_status: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)  # found while reading (inventory rows skipped)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def store_values(index: kopf.Index[Any, Any] | None, key: Any) -> list[Any]:
    if index is None:
        return []
    try:
        return list(index.get(key, []))
    except Exception:  # a Store can change while being read by a concurrent watch event
        return []


def worker_defaults(spec: MailMigrationSpec) -> MailMigrationSpec:
    """The chart tells the operator which worker image and ServiceAccount to use unless the spec says."""
    worker = spec.worker
    image = settings.current().worker_image
    account = settings.current().worker_service_account
    changes: dict[str, Any] = {}
    if worker.image is None:  # the schema has no default, so the installation's image reaches the Jobs
        changes["image"] = image
    if worker.service_account_name is None:
        changes["service_account_name"] = account
    if not changes:
        return spec
    return spec.model_copy(update={"worker": worker.model_copy(update=changes)})


# ------------------------------------------------------------------------------------ inventory
async def _read_configmap(namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(data, binaryData) of a ConfigMap, None when absent. kubectl puts a file that is not UTF-8 into
    binaryData: the inventory is looked up in both so the message can say what is wrong with it."""
    cm = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    if cm is None:
        return None
    return dict(cm.get("data") or {}), dict(cm.get("binaryData") or {})


async def load_inventory(
    rt: Runtime, namespace: str, name: str, generation: int, spec: MailMigrationSpec
) -> None:
    """Inline mailboxes once per generation; an inventory ConfigMap at most every minute."""
    mono = time.monotonic()
    if spec.mailboxes is not None:
        key: tuple[Any, ...] = ("inline", generation)
        if key == rt.inventory_key:
            return
        parsed = inv.from_entries(spec.mailboxes)
        rt.inventory_problem = None
    else:
        ref = spec.inventory_ref
        assert ref is not None  # the CRD requires one of mailboxes / inventoryRef
        if (
            rt.inventory_key is not None
            and rt.inventory_key[1] == generation
            and (mono - rt.inventory_checked < INVENTORY_RECHECK_SECONDS)
        ):
            return
        rt.inventory_checked = mono
        cm = await _read_configmap(namespace, ref.name)
        refused = review.content_refused(ref, *cm) if cm is not None else None
        if refused is not None:  # discovered or reviewed: only the approved content is read
            rt.inventory_problem, rt.inventory_key = refused, None
            return
        text: str | inv.Inventory | None = None
        if cm is not None:
            data, binary = cm
            if ref.key in data:
                text = data[ref.key]
            elif ref.key in binary:
                text = inv.decode(base64.b64decode(binary[ref.key]))
        if text is None:
            if cm is None:
                problem = f"ConfigMap {ref.name} (spec.inventoryRef.name) not found in namespace {namespace}"
            else:
                keys = sorted([*cm[0], *cm[1]])[:10]
                problem = (
                    f"ConfigMap {ref.name} has no key {ref.key} (spec.inventoryRef.key); "
                    f"its keys: {', '.join(keys) or 'none'}"
                )
            rt.inventory_problem = Problem("InventoryNotFound", problem)
            rt.inventory_key = None
            return
        key = ("configmap", generation, hash(text) if isinstance(text, str) else id(text))
        rt.inventory_problem = None
        if key == rt.inventory_key:
            return
        parsed = inv.parse_text(text, ref.format) if isinstance(text, str) else text
        if parsed.problem is not None:
            reason, message = parsed.problem
            where = f"ConfigMap {ref.name} key {ref.key} (spec.inventoryRef)"
            rt.inventory_problem = Problem(reason, f"{where}: {message}")
            rt.inventory_key = None
            return
    rt.inventory_key = key
    rt.entries = parsed.entries
    rt.names = {mailbox_sync_name(name, e.source): e for e in parsed.entries}
    rt.placeholders = {  # what a pass shows for a MailboxSync the index does not hold (yet)
        n: MailboxView(name=n, source=e.source, destination=e.destination or e.source)
        for n, e in rt.names.items()
    }
    rt.inventory_status = parsed.status()
    if parsed.error_count:
        rt.events.append(
            Event(
                "Warning",
                "InventoryErrors",
                f"{parsed.error_count} inventory row(s) skipped; see status.inventory",
            )
        )


# ------------------------------------------------------------------------------------ spec checks
async def _addresses(host: str, port: int) -> set[str]:
    """The host's addresses (empty when it does not resolve within a few seconds)."""
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM), 5.0
        )
    except (OSError, TimeoutError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in infos}


async def check_spec(rt: Runtime, spec: MailMigrationSpec, generation: int) -> None:
    """Problems of the spec the schema cannot see (spec_checks.py): once per generation and inventory.
    Source == destination needs the inventory and the hosts' addresses."""
    key = (generation, rt.inventory_key)
    if key == rt.spec_checked_key:
        return
    rt.spec_checked_key = key
    install = settings.current()
    problem = (
        spec_checks.spec_problem(spec, date.today())
        or spec_checks.token_url_problem(spec, install.egress_allow)
        or spec_checks.worker_problem(
            spec.worker,
            install.worker_image,
            install.worker_service_account,
            install.worker_images_allowed,
            install.worker_service_accounts_allowed,
        )
    )
    if problem is None and rt.entries:
        same = spec.source.port == spec.destination.port and (
            spec_checks.normal_host(spec.source.host) == spec_checks.normal_host(spec.destination.host)
            or spec_checks.same_server(
                spec.source,
                spec.destination,
                await _addresses(spec.source.host, spec.source.port),
                await _addresses(spec.destination.host, spec.destination.port),
            )
        )
        problem = spec_checks.self_copy_problem(spec, rt.entries, same)
    rt.spec_problem = problem


async def taken_names(rt: Runtime, namespace: str, uid: str) -> Problem | None:
    """Names apply.ensure_mailboxsyncs found held by another object, read again each pass: the migration
    goes on once they are deleted (or given to it)."""
    for sync_name in list(rt.taken):
        obj = await kube.get_or_none(
            f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/mailboxsyncs/{sync_name}"
        )
        if obj is None or ownership.owned_by(obj, uid):
            del rt.taken[sync_name]
        else:
            rt.taken[sync_name] = ownership.owner_of(obj)
    return ownership.taken_problem(rt.taken)


def destination_key(host: str, port: Any) -> str:
    return f"{spec_checks.normal_host(host)}:{port}"


def mailbox_conflict(
    rt: Runtime,
    spec: MailMigrationSpec,
    namespace: str,
    name: str,
    created: str,
    by_destination: kopf.Index[str, DestinationEntry] | None,
    mailboxsyncs: kopf.Index[Any, Any],
) -> Problem | None:
    """An older MailMigration that is copying (validated; Syncing, InSync, Completing) into a destination
    mailbox of this one (same destination host:port): from the in-memory indexes, no API call. One that only
    validates or waits for approval writes nothing and blocks nobody."""
    if by_destination is None or not rt.entries:
        return None
    others = [
        e
        for e in store_values(by_destination, destination_key(spec.destination.host, spec.destination.port))
        if e[3] and (e[0], e[1], e[2]) < (created, namespace, name)
    ]
    mine = {(e.destination or e.source).lower() for e in rt.entries}
    for _, other_ns, other, _ in sorted(others):
        theirs = {
            v.destination.lower() for v in store_values(mailboxsyncs, (other_ns, other)) if v.destination
        }
        shared = sorted(mine & theirs)
        if shared:
            more = f" and {len(shared) - 1} more" if len(shared) > 1 else ""
            return Problem(
                "MailboxConflict",
                f"MailMigration {other_ns}/{other} (older, copying) already copies into "
                f"{shared[0]}{more} on {spec.destination.host}:{spec.destination.port}: two migrations "
                "writing one mailbox would copy messages twice; remove the mailbox from one of them or wait "
                "until that one is Completed",
            )
    return None


# ------------------------------------------------------------------------------------ snapshot
@dataclass(frozen=True)
class Indexes:
    """The Kopf indexes a pass reads (Kopf passes each as a kwarg named like its function)."""

    mailboxsyncs: kopf.Index[Any, Any]
    jobs: kopf.Index[Any, Any]
    by_destination: kopf.Index[str, DestinationEntry] | None = None
    cutovers: kopf.Index[Any, Any] | None = None


def _validation_state(rt: Runtime) -> ValidationState:
    state = rt.validation_state
    task = rt.validation
    result, crashed = None, False
    if task is not None and task.done():
        try:
            result = task.result()
        except (Exception, asyncio.CancelledError):
            crashed = True
    return ValidationState(
        now=time.monotonic(),
        running=task is not None and not task.done(),
        tested=frozenset(rt.probed),
        failures=state.failures,
        next_at=state.next_at,
        trigger=state.trigger,
        result=result,
        crashed=crashed,
    )


def _job_views(rt: Runtime, index: kopf.Index[Any, Any], namespace: str, name: str) -> list[JobView]:
    """The index's Jobs plus the ones this daemon created that the index does not show yet, less the
    ones it deleted that the index still shows."""
    mono = time.monotonic()
    for job_name, at in list(rt.deleted_jobs.items()):
        if mono - at > CREATED_JOB_MEMORY_SECONDS:
            rt.deleted_jobs.pop(job_name, None)
    jobs: list[JobView] = [j for j in store_values(index, (namespace, name)) if j.name not in rt.deleted_jobs]
    seen = {j.name for j in jobs}
    for job_name, (at, view) in list(rt.created_jobs.items()):
        if job_name in seen or mono - at > CREATED_JOB_MEMORY_SECONDS:
            rt.created_jobs.pop(job_name, None)
        else:
            jobs.append(view)
    return jobs


def _created_at(body: kopf.Body) -> datetime | None:
    with contextlib.suppress(Exception):
        return datetime.fromisoformat(str(body["metadata"]["creationTimestamp"]).replace("Z", "+00:00"))
    return None


async def observe(
    rt: Runtime, body: kopf.Body, namespace: str, name: str, spec: MailMigrationSpec, indexes: Indexes
) -> Snapshot:
    """Read what this pass needs into a Snapshot (the inventory and spec checks only when stale)."""
    meta = body.get("metadata", {})
    generation = int(meta.get("generation") or 0)
    annotations = meta.get("annotations") or {}
    status = MailMigrationStatus.model_validate(dict(body.get("status") or {}))
    reviewed = await discovery.observe_review(rt.wake, body, namespace, name, spec.inventory_ref, status)
    await load_inventory(rt, namespace, name, generation, spec)
    await check_spec(rt, spec, generation)
    if rt.inventory_status is not None:
        status.inventory = rt.inventory_status
    problem = (
        reviewed
        or rt.inventory_problem
        or rt.spec_problem
        or await taken_names(rt, namespace, meta.get("uid", ""))
    )
    if problem is None:
        created = str(meta.get("creationTimestamp") or "")
        problem = mailbox_conflict(
            rt, spec, namespace, name, created, indexes.by_destination, indexes.mailboxsyncs
        )
    existing: dict[str, MailboxView] = {
        v.name: v for v in store_values(indexes.mailboxsyncs, (namespace, name))
    }
    # the inventory's MailboxSyncs, as the index sees them (a just-created one may lag a moment)
    views = {sync_name: existing.get(sync_name) or rt.placeholders[sync_name] for sync_name in rt.names}
    cutovers: list[CutoverHold] = store_values(indexes.cutovers, (namespace, name))
    return Snapshot(
        name=name,
        generation=generation,
        spec=spec,
        status=status,
        mailboxes=views,
        jobs=_job_views(rt, indexes.jobs, namespace, name),
        now=now(),
        approved_annotation=str(annotations.get(ANNOTATION_APPROVED, "")).lower() == "true",
        retry_annotation=annotations.get(ANNOTATION_RETRY_FAILED),
        created_at=_created_at(body),
        validation=_validation_state(rt),
        problem=problem,
        inventory_ready=rt.inventory_key is not None,
        cutovers=sorted(cutovers, key=lambda c: c.name),
    )
