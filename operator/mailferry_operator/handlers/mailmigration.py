"""MailMigration -> MailboxSyncs -> worker Jobs, in rounds, with validation, approval and status.

One Kopf daemon per MailMigration runs a reconcile loop. Each pass reads the world (the live
MailMigration body, MailboxSyncs and worker Jobs from in-memory Kopf indexes), asks the pure state
machine in `mailferry_operator.migration.reconcile` what to do, creates the Jobs it names
(deterministic names: a restart or a repeated pass never doubles a Job), then writes status, Events
and metrics. Watch events on MailboxSyncs, Jobs and the MailMigration wake the loop early.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, get_args

import kopf
from pydantic import ValidationError

from mailferry_api.common import API_GROUP, API_VERSION, MAX_ERRORS
from mailferry_api.conditions import get_condition, set_condition
from mailferry_api.mailmigration import (
    InventoryStatus,
    MailboxEntry,
    MailboxError,
    MailMigrationSpec,
    MailMigrationStatus,
    MigrationPhase,
    ScanStatus,
)

from .. import metrics, settings
from ..kube import client as kube
from ..migration import inventory as inv
from ..migration import spec_checks
from ..migration.durations import validation_retry_delay
from ..migration.naming import mailbox_sync_name
from ..migration.probe import ProbeResult, ProbeTask, probe_all
from ..migration.reconcile import Plan, Snapshot, decide
from ..migration.resources import job_body, mailbox_sync_body, mailbox_sync_template, spec_hash
from ..migration.views import (
    ANNOTATION_APPROVED,
    ANNOTATION_RETRY_FAILED,
    LABEL_APP,
    LABEL_MIGRATION,
    WORKER_APP,
    JobView,
    MailboxView,
    job_view,
    mailbox_view,
)

log = logging.getLogger("mailferry.migration")

PLURAL = "mailmigrations"
MAILBOXSYNCS = "mailboxsyncs"
# 16 calls at once: on the envtest API server 48 were slower and cost 2.5x the CPU per MailboxSync
INVENTORY_RECHECK_SECONDS = 60.0
MIN_PASS_INTERVAL = 0.5
PHASES = get_args(MigrationPhase)

_wakeups: dict[tuple[str, str], asyncio.Event] = {}


def _wake(namespace: str | None, name: str | None) -> None:
    event = _wakeups.get((namespace or "", name or ""))
    if event is not None:
        event.set()


# ------------------------------------------------------------------------------------------ indexes
@kopf.index(API_GROUP, API_VERSION, MAILBOXSYNCS, labels={LABEL_MIGRATION: kopf.PRESENT})
async def mailboxsyncs_by_migration(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], MailboxView]:
    """(namespace, migration) -> small summaries of its MailboxSyncs; a change wakes the migration.

    The index handlers are coroutines: Kopf runs a sync handler in a thread, one hop per watch event
    (10,000 MailboxSyncs: 10,000+ hops), and an asyncio.Event must be set from the loop's thread."""
    migration = labels[LABEL_MIGRATION]
    _wake(namespace, migration)
    return {(namespace or "", migration): mailbox_view(body)}


@kopf.index("batch", "v1", "jobs", labels={LABEL_APP: WORKER_APP, LABEL_MIGRATION: kopf.PRESENT})
async def worker_jobs_by_migration(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], JobView]:
    migration = labels[LABEL_MIGRATION]
    _wake(namespace, migration)
    return {(namespace or "", migration): job_view(body)}


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def wake_on_migration_change(namespace: str | None, name: str | None, **_: Any) -> None:
    """Wake the daemon when the MailMigration changes (an index, not an event handler: no log line per
    event; it indexes nothing)."""
    _wake(namespace, name)


DestinationEntry = tuple[str, str, str, bool]  # (creationTimestamp, namespace, name, copying)
COPYING_PHASES = ("Syncing", "InSync", "Completing")
_by_destination: kopf.Index[str, DestinationEntry] | None = None


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def migrations_by_destination(
    namespace: str | None, name: str | None, spec: Any, meta: Any, status: Any, **_: Any
) -> dict[str, DestinationEntry]:
    """destination host:port -> the MailMigrations writing there (two must not write one mailbox)."""
    dest = (spec or {}).get("destination") or {}
    key = f"{spec_checks.normal_host(str(dest.get('host', '')))}:{dest.get('port', 993)}"
    # phase alone is not enough: a round starts (Syncing) while validation still runs, even one that fails
    validated = any(
        c.get("type") == "Validated" and c.get("status") == "True"
        for c in (status or {}).get("conditions") or []
    )
    copying = validated and (status or {}).get("phase") in COPYING_PHASES
    return {key: (str(meta.get("creationTimestamp") or ""), namespace or "", name or "", copying)}


def _mailbox_conflict(
    rt: Runtime,
    spec: MailMigrationSpec,
    namespace: str,
    name: str,
    created: str,
    mailboxsyncs: kopf.Index[Any, Any],
) -> tuple[str, str] | None:
    """An older MailMigration that is copying (validated; Syncing, InSync, Completing) into a destination
    mailbox of this one (same destination host:port): from the in-memory indexes, no API call. One that only
    validates or waits for approval writes nothing and blocks nobody."""
    if _by_destination is None or not rt.entries:
        return None
    key = f"{spec_checks.normal_host(spec.destination.host)}:{spec.destination.port}"
    try:
        others = [
            e
            for e in _by_destination.get(key, [])
            if e[3] and (e[0], e[1], e[2]) < (created, namespace, name)
        ]
    except Exception:  # a Store can change while being read by a concurrent watch event
        return None
    if not others:
        return None
    mine = {(e.destination or e.source).lower() for e in rt.entries}
    for _, other_ns, other, _ in sorted(others):
        theirs = {
            v.destination.lower() for v in _store_values(mailboxsyncs, (other_ns, other)) if v.destination
        }
        shared = sorted(mine & theirs)
        if shared:
            more = f" and {len(shared) - 1} more" if len(shared) > 1 else ""
            return (
                "MailboxConflict",
                f"MailMigration {other_ns}/{other} (older, copying) already copies into "
                f"{shared[0]}{more} on {spec.destination.host}:{spec.destination.port}: two migrations "
                "writing one mailbox would copy messages twice; remove the mailbox from one of them or wait "
                "until that one is Completed",
            )
    return None


# ------------------------------------------------------------------------------------ runtime state
@dataclass
class Runtime:
    """What one daemon remembers between passes (all of it can be rebuilt from the API)."""

    inventory_key: tuple[Any, ...] | None = None
    inventory_checked: float = 0.0
    entries: list[MailboxEntry] = field(default_factory=list)
    names: dict[str, MailboxEntry] = field(default_factory=dict)  # MailboxSync name -> entry
    inventory_status: Any = None
    inventory_problem: tuple[str, str] | None = None  # (reason, message) when the inventory is unreadable
    spec_problem: tuple[str, str] | None = None  # (reason, message): the spec cannot run (spec_checks)
    spec_checked_key: tuple[Any, ...] | None = None
    conflict: tuple[str, str] | None = None  # (reason, message): an older migration copies into a mailbox
    ensured_key: tuple[Any, ...] | None = None
    next_validation: float = 0.0
    validation_failures: int = 0  # failed validations in a row: the retry backs off (logins lock accounts)
    validation_trigger: tuple[int, str | None] | None = None  # (generation, retry token) last tested
    validation: asyncio.Task[MailMigrationStatus] | None = None  # running in the background
    probed: set[str] = field(default_factory=set)  # MailboxSync names tested so far
    wake: asyncio.Event | None = None
    created_jobs: dict[str, tuple[float, JobView]] = field(default_factory=dict)
    last_status: dict[str, Any] | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _store_values(index: kopf.Index[Any, Any], key: tuple[str, str]) -> list[Any]:
    try:
        return list(index.get(key, []))
    except Exception:  # a Store can change while being read by a concurrent watch event
        return []


# ------------------------------------------------------------------------------------ reads
async def _read_configmap(namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(data, binaryData) of a ConfigMap, None when absent. kubectl puts a file that is not UTF-8 into
    binaryData: the inventory is looked up in both so the message can say what is wrong with it."""
    cm = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    if cm is None:
        return None
    return dict(cm.get("data") or {}), dict(cm.get("binaryData") or {})


async def _addresses(host: str, port: int) -> set[str]:
    """The host's addresses (empty when it does not resolve within a few seconds)."""
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM), 5.0
        )
    except (OSError, TimeoutError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in infos}


async def _check_spec(rt: Runtime, spec: MailMigrationSpec, generation: int) -> None:
    """Problems of the spec the schema cannot see (migration/spec_checks.py): once per generation and
    inventory. Source == destination needs the inventory and the hosts' addresses."""
    key = (generation, rt.inventory_key)
    if key == rt.spec_checked_key:
        return
    rt.spec_checked_key = key
    problem = spec_checks.spec_problem(spec, date.today())
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
    rt.spec_problem = (problem.reason, problem.message) if problem is not None else None


# ------------------------------------------------------------------------------------ inventory
async def _load_inventory(
    rt: Runtime, body: kopf.Body, namespace: str, name: str, generation: int, spec: MailMigrationSpec
) -> None:
    now = time.monotonic()
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
            and (now - rt.inventory_checked < INVENTORY_RECHECK_SECONDS)
        ):
            return
        rt.inventory_checked = now
        cm = await _read_configmap(namespace, ref.name)
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
            rt.inventory_problem = ("InventoryNotFound", problem)
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
            rt.inventory_problem = (reason, f"{where}: {message}")
            rt.inventory_key = None
            return
    rt.inventory_key = key
    rt.entries = parsed.entries
    rt.names = {mailbox_sync_name(name, e.source): e for e in parsed.entries}
    rt.inventory_status = parsed.status()
    if parsed.error_count:
        kopf_event_safe(
            body,
            "Warning",
            "InventoryErrors",
            f"{parsed.error_count} inventory row(s) skipped; see status.inventory",
        )


async def _ensure_mailboxsyncs(
    rt: Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    spec: MailMigrationSpec,
    existing: Mapping[str, MailboxView],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Create missing MailboxSyncs and update drifted specs, `create_concurrency` calls at a time."""
    key = (rt.inventory_key, spec_hash(spec.to_api()))
    if key == rt.ensured_key:
        return
    created = updated = 0
    template = mailbox_sync_template(name, spec)
    todo = iter(list(rt.names.items()))

    async def lane() -> None:
        # create_concurrency lanes take the next mailbox when free: no task per mailbox is waiting
        # (10,000 of them cost ~12 MB), and a body is built only when its turn comes.
        nonlocal created, updated
        for sync_name, entry in todo:
            wanted = mailbox_sync_body(name, uid, namespace, spec, entry, template)
            want = wanted["metadata"]["annotations"]
            have = existing.get(sync_name)
            if have is not None and have.spec_hash == want["mailferry.io/spec-hash"]:
                continue
            if have is None and await kube.create_custom(namespace, MAILBOXSYNCS, wanted):
                created += 1
                continue
            await kube.patch_custom(
                namespace,
                MAILBOXSYNCS,
                sync_name,
                {"metadata": {"annotations": want}, "spec": wanted["spec"]},
            )
            updated += 1

    started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(max(1, settings.current().create_concurrency))))
    rt.ensured_key = key
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
def _inventory_summary(spec: MailMigrationSpec, inventory: InventoryStatus | None) -> str:
    """`; first: spec.mailboxes[1]: duplicate source ... (see status.inventory.errors)` or ``."""
    if inventory is None or not inventory.errors:
        return "" if inventory is None or inventory.total else "; it has no rows"
    first = inventory.errors[0]
    where = f"spec.mailboxes[{first.line - 1}]" if spec.mailboxes is not None else f"line {first.line}"
    return f"; first: {where}: {first.reason} (see status.inventory.errors)"


def _mailbox_key_problem(
    task: ProbeTask,
    entry: MailboxEntry,
    checks: Mapping[str, tuple[str | None, str, list[str]]],
    secrets: Mapping[str, Mapping[str, str]],
) -> spec_checks.Problem | None:
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


async def _validate(
    namespace: str,
    spec: MailMigrationSpec,
    entries: Iterable[MailboxEntry],
    status: MailMigrationStatus,
    generation: int,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    on_mailbox: Callable[[str], None] | None = None,
    inventory: InventoryStatus | None = None,
) -> None:
    """Connection + credential test of every mailbox on both sides, and a scan of the source.

    Mailboxes are tested in the order given (batch order); `on_mailbox(source)` is called as soon as
    both sides of one are done, so the first batches can start while the rest is still being tested.
    """
    entries = list(entries)
    secrets: dict[str, Mapping[str, str]] = {}
    checks: dict[str, tuple[str | None, str, list[str]]] = {}  # side -> (type, Secret name, not UTF-8)
    for side, endpoint in (("source", spec.source), ("destination", spec.destination)):
        secret_name = endpoint.auth.secret_ref.name
        found = await kube.read_secret_values(namespace, secret_name)  # shared by concurrent readers
        problem: spec_checks.Problem | None = None
        if found is None:
            problem = spec_checks.Problem(
                "SecretNotFound",
                f"{side} Secret {secret_name} (spec.{side}.auth.secretRef) not found "
                f"in namespace {namespace}",
            )
        else:
            secrets[side], not_text = found.values, list(found.not_text)
            checks[side] = (found.type, secret_name, not_text)
            problem = spec_checks.endpoint_secret_problem(side, endpoint, found.type, secrets[side], not_text)
        if problem is not None:
            status.conditions = set_condition(
                status.conditions, "Validated", "False", problem.reason, problem.message, generation
            )
            return
    started = time.monotonic()
    sides_done: dict[str, int] = {}

    def progress(task: ProbeTask, _result: ProbeResult) -> None:
        sides_done[task.mailbox] = sides_done.get(task.mailbox, 0) + 1
        if sides_done[task.mailbox] == 2 and on_mailbox is not None:
            on_mailbox(task.mailbox)

    tasks: list[ProbeTask] = []
    results: list[tuple[ProbeTask, ProbeResult]] = []
    first_key: spec_checks.Problem | None = None
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
        # not one mailbox has its key: say so once, with the first key that is missing
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "False",
            first_key.reason,
            f"{first_key.message}; no mailbox has its key (see status.scan.errors)"
            if len(entries) > 1
            else first_key.message,
            generation,
        )
        status.scan = ScanStatus(
            mailboxes=len(entries),
            completed_at=_now(),
            errors=[
                MailboxError(mailbox=t.mailbox, side=t.side, reason=r.reason[:128], message=r.message[:1024])
                for t, r in results[:MAX_ERRORS]
            ],
        )
        return
    results += await probe_all(
        tasks, secrets, concurrency=settings.current().probe_concurrency, on_result=progress
    )
    del secrets
    scan = ScanStatus(mailboxes=len(entries), completed_at=_now())
    problems: dict[str, list[tuple[str, ProbeResult]]] = {}
    error_count = 0
    for task, result in results:
        if result.ok:
            scan.folders += result.folders
            scan.messages += result.messages
            scan.bytes += result.bytes
        else:
            problems.setdefault(task.mailbox, []).append((task.side, result))
    for mailbox, sides in problems.items():
        error_count += 1
        if len(scan.errors) < MAX_ERRORS:
            side = sides[0][0] if len(sides) == 1 else "both"
            first = sides[0][1]
            scan.errors.append(
                MailboxError(
                    mailbox=mailbox, side=side, reason=first.reason[:128], message=first.message[:1024]
                )
            )
    scan.reachable = len(entries) - error_count
    status.scan = scan
    logger.info(
        "validated %d mailboxes in %.1fs: %d reachable, %d folders, %d messages",
        len(entries),
        time.monotonic() - started,
        scan.reachable,
        scan.folders,
        scan.messages,
    )
    first_error = ""
    if scan.errors:
        e0 = scan.errors[0]
        first_error = f": {e0.mailbox} ({e0.side}): {e0.reason}: {e0.message}"
    if not entries:
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "False",
            "NoMailboxes",
            "the inventory has no valid mailbox" + _inventory_summary(spec, inventory),
            generation,
        )
    elif scan.reachable == 0:
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "False",
            "NoMailboxReachable",
            f"none of {len(entries)} mailboxes passed the connection test{first_error[:600]}"
            " (see status.scan.errors)",
            generation,
        )
    elif error_count:
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "True",
            "SomeMailboxesUnreachable",
            f"{error_count} of {len(entries)} mailboxes failed the connection test{first_error[:600]} "
            "(see status.scan.errors); they are still attempted and fail with a reason if the problem stays",
            generation,
        )
    elif inventory is not None and inventory.invalid:
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "True",
            "InventoryRowsSkipped",
            f"{len(entries)} mailboxes passed the connection test; "
            f"{inventory.invalid} inventory row(s) skipped" + _inventory_summary(spec, inventory),
            generation,
        )
    else:
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "True",
            "AllMailboxesReachable",
            f"{len(entries)} mailboxes: {scan.folders} folders, {scan.messages} messages, {scan.bytes} bytes",
            generation,
        )


async def _drive_validation(
    rt: Runtime,
    body: kopf.Body,
    namespace: str,
    spec: MailMigrationSpec,
    status: MailMigrationStatus,
    generation: int,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Start the validation in the background when due; fold its result into `status` when done."""
    task = rt.validation
    if task is not None and task.done():
        rt.validation = None
        try:
            result = task.result()
        except Exception:
            delay = _validation_failed(rt)
            logger.exception("validation failed; retrying in %.0fs", delay)
            return
        if result.scan is not None:
            status.scan = result.scan
        validated = get_condition(result.conditions, "Validated")
        if validated is not None:
            status.conditions = [c for c in status.conditions if c.type != "Validated"] + [validated]
            if validated.status != "True":
                delay = _validation_failed(rt)
                validated.message = (
                    f"{validated.message}; tested again in {delay:.0f}s, or at once when the spec changes "
                    f"or spec.retryFailed / the {ANNOTATION_RETRY_FAILED} annotation gets a new value"
                )
                kopf_event_safe(body, "Warning", validated.reason, validated.message)
            else:
                rt.validation_failures = 0
                kopf_event_safe(body, "Normal", "Validated", validated.message)
        return
    if task is not None:
        status.conditions = set_condition(
            status.conditions,
            "Validated",
            "Unknown",
            "InProgress",
            f"{len(rt.probed)} of {len(rt.names)} mailboxes tested",
            generation,
        )
        return
    validated = get_condition(status.conditions, "Validated")
    trigger = (
        generation,
        spec.retry_failed or body.get("metadata", {}).get("annotations", {}).get(ANNOTATION_RETRY_FAILED),
    )
    if trigger != rt.validation_trigger:  # a new spec or a retry request: test now, back-off reset
        rt.validation_trigger, rt.validation_failures, rt.next_validation = trigger, 0, 0.0
    due = (
        rt.inventory_problem is None
        and rt.spec_problem is None
        and rt.conflict is None
        and rt.inventory_key is not None
        and (
            validated is None
            or (
                validated.status == "Unknown" and validated.reason == "InProgress"
            )  # interrupted by a restart
            or (validated.status != "True" and time.monotonic() >= rt.next_validation)
        )
    )
    if not due:
        return
    kopf_event_safe(
        body, "Normal", "Validating", f"testing {len(rt.entries)} mailboxes on source and destination"
    )
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

    async def run() -> MailMigrationStatus:
        scratch = MailMigrationStatus()
        await _validate(
            namespace, spec, ordered, scratch, generation, logger, on_mailbox=tested, inventory=inventory
        )
        if rt.wake is not None:
            rt.wake.set()
        return scratch

    rt.validation = asyncio.create_task(
        run(), name=f"validate-{namespace}-{body.get('metadata', {}).get('name')}"
    )
    status.conditions = set_condition(
        status.conditions,
        "Validated",
        "Unknown",
        "InProgress",
        f"0 of {len(rt.names)} mailboxes tested",
        generation,
    )


def _validation_failed(rt: Runtime) -> float:
    """Schedule the next validation after a failed one; returns the delay in seconds."""
    delay = validation_retry_delay(rt.validation_failures)
    rt.validation_failures += 1
    rt.next_validation = time.monotonic() + delay
    return delay


# ------------------------------------------------------------------------------------ events, metrics
def kopf_event_safe(body: kopf.Body, type_: str, reason: str, message: str) -> None:
    with contextlib.suppress(Exception):
        kopf.event(body, type=type_, reason=reason, message=message[:1024])


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
    ):
        for labelvalues in list(gauge._metrics):
            if labelvalues[:2] == (namespace, name):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labelvalues)


# ------------------------------------------------------------------------------------ one pass
def _worker_defaults(spec: MailMigrationSpec) -> MailMigrationSpec:
    """The chart tells the operator which worker image and ServiceAccount to use unless the spec says."""
    worker = spec.worker
    image = settings.current().worker_image
    account = settings.current().worker_service_account
    changes: dict[str, Any] = {}
    if image and "image" not in worker.model_fields_set:
        changes["image"] = image
    if account and "service_account_name" not in worker.model_fields_set:
        changes["service_account_name"] = account
    if not changes:
        return spec
    return spec.model_copy(update={"worker": worker.model_copy(update=changes)})


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


def _status_dict(status: MailMigrationStatus) -> dict[str, Any]:
    data = status.to_api()
    data.pop("kopf", None)
    return data


async def reconcile_once(
    rt: Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    mailboxsyncs: kopf.Index[Any, Any],
    jobs_index: kopf.Index[Any, Any],
) -> float:
    generation = int(body.get("metadata", {}).get("generation") or 0)
    annotations = body.get("metadata", {}).get("annotations") or {}
    try:
        spec = _worker_defaults(MailMigrationSpec.model_validate(dict(body.get("spec") or {})))
    except ValidationError as exc:
        logger.error("invalid spec: %s", exc.errors(include_input=False)[:3])
        status = MailMigrationStatus.model_validate(dict(body.get("status") or {}))
        status.conditions = set_condition(
            status.conditions, "Ready", "False", "InvalidSpec", "spec is invalid", generation
        )
        status.phase = "Failed"
        await kube.patch_custom_status(namespace, PLURAL, name, _status_dict(status))
        return 60.0
    status = MailMigrationStatus.model_validate(dict(body.get("status") or {}))
    if rt.last_status is None:
        rt.last_status = _status_dict(status)

    await _load_inventory(rt, body, namespace, name, generation, spec)
    await _check_spec(rt, spec, generation)
    if rt.inventory_status is not None:
        status.inventory = rt.inventory_status
    existing: dict[str, MailboxView] = {v.name: v for v in _store_values(mailboxsyncs, (namespace, name))}
    rt.conflict = None
    if rt.inventory_problem is None and rt.spec_problem is None:
        created = str(body.get("metadata", {}).get("creationTimestamp") or "")
        rt.conflict = _mailbox_conflict(rt, spec, namespace, name, created, mailboxsyncs)
    problem = rt.inventory_problem or rt.spec_problem or rt.conflict
    if problem is not None:
        reason, message = problem
        before = get_condition(status.conditions, "Validated")
        if before is None or (before.reason, before.message) != (reason, message):
            kopf_event_safe(body, "Warning", reason, message)
        status.conditions = set_condition(
            status.conditions, "Validated", "False", reason, message, generation
        )
        if rt.validation is not None:  # started before the problem appeared: its result no longer holds
            rt.validation.cancel()
            rt.validation = None
    elif rt.inventory_key is not None:
        await _ensure_mailboxsyncs(rt, body, namespace, name, uid, spec, existing, logger)
        existing = {v.name: v for v in _store_values(mailboxsyncs, (namespace, name))}

    await _drive_validation(rt, body, namespace, spec, status, generation, logger)
    validated_names: frozenset[str] | None = frozenset(rt.probed) if rt.validation is not None else None

    # the inventory's MailboxSyncs, as the index sees them (a just-created one may lag a moment)
    views: dict[str, MailboxView] = {}
    for sync_name, entry in rt.names.items():
        views[sync_name] = existing.get(sync_name) or MailboxView(
            name=sync_name, source=entry.source, destination=entry.destination or entry.source
        )

    job_views = _store_values(jobs_index, (namespace, name))
    seen = {j.name for j in job_views}
    mono = time.monotonic()
    for job_name_, (at, view) in list(rt.created_jobs.items()):
        if job_name_ in seen or mono - at > 120:
            rt.created_jobs.pop(job_name_, None)
        else:
            job_views.append(view)

    created_at = None
    with contextlib.suppress(Exception):
        created_at = datetime.fromisoformat(str(body["metadata"]["creationTimestamp"]).replace("Z", "+00:00"))
    snap = Snapshot(
        name=name,
        generation=generation,
        spec=spec,
        status=status,
        mailboxes=views,
        jobs=job_views,
        now=_now(),
        approved_annotation=str(annotations.get(ANNOTATION_APPROVED, "")).lower() == "true",
        retry_annotation=annotations.get(ANNOTATION_RETRY_FAILED),
        created_at=created_at,
        validated_names=validated_names,
    )
    plan: Plan = decide(snap)

    for job in plan.create_jobs:
        made = await kube.create_job(namespace, job_body(name, uid, namespace, spec, job))
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

    new_status = _status_dict(plan.status)
    if new_status != rt.last_status:
        await kube.patch_custom_status(namespace, PLURAL, name, merge_patch(rt.last_status or {}, new_status))
        rt.last_status = new_status
    for event in plan.events:
        kopf_event_safe(body, event.type, event.reason, event.message)
    update_metrics(namespace, name, plan.status)
    return plan.requeue_after


# ------------------------------------------------------------------------------------ the daemon
@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_timeout=10.0)
async def migration_daemon(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    # Kopf passes every index as a kwarg named like its function.
    mailboxsyncs_by_migration: kopf.Index[Any, Any] = kwargs["mailboxsyncs_by_migration"]
    worker_jobs_by_migration: kopf.Index[Any, Any] = kwargs["worker_jobs_by_migration"]
    global _by_destination
    _by_destination = kwargs.get("migrations_by_destination", _by_destination)
    rt = Runtime()
    namespace = namespace or ""
    key = (namespace, name)
    wake = asyncio.Event()
    _wakeups[key] = wake
    rt.wake = wake
    backoff = 1.0
    try:
        while not stopped:
            wake.clear()
            try:
                delay = await reconcile_once(
                    rt,
                    body,
                    namespace,
                    name,
                    uid,
                    logger,
                    mailboxsyncs_by_migration,
                    worker_jobs_by_migration,
                )
                backoff = 1.0
            except kube.KubeError as exc:
                if stopped:
                    break
                metrics.reconcile_errors.labels("MailMigration").inc()
                if exc.status == 404:
                    logger.info("MailMigration is gone")
                    break
                logger.warning(
                    "API error %s %s; retrying in %.0fs", exc.status or "unreachable", exc.reason, backoff
                )
                delay, backoff = backoff, min(backoff * 2, 60.0)
            except (TimeoutError, OSError) as exc:
                if stopped:
                    break
                metrics.reconcile_errors.labels("MailMigration").inc()
                logger.warning("%s; retrying in %.0fs", type(exc).__name__, backoff)
                delay, backoff = backoff, min(backoff * 2, 60.0)
            except Exception:
                if stopped:  # the operator is shutting down (its HTTP client may be closed already)
                    break
                metrics.reconcile_errors.labels("MailMigration").inc()
                logger.exception("reconcile failed; retrying in %.0fs", backoff)
                delay, backoff = backoff, min(backoff * 2, 60.0)
            waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())}
            _done, pending = await asyncio.wait(
                waiters, timeout=max(delay, MIN_PASS_INTERVAL), return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if not stopped:
                await asyncio.sleep(MIN_PASS_INTERVAL)  # let a burst of watch events settle
    finally:
        if rt.validation is not None:
            rt.validation.cancel()
        _wakeups.pop(key, None)
        forget_metrics(namespace, name)
