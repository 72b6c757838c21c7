"""Read what a NoticePlan depends on into a decide.Snapshot: its MailMigration and inventory (cohorts),
the MailboxSyncs (who started, whose mailbox is complete), the DnsCutover (switchedAt), the templates
ConfigMap and the ledgers. A missing or unreadable object becomes `Snapshot.problem`, never a crash.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.labels import LABEL_MIGRATION
from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec
from mailferry_api.noticeplan import NoticePlanSpec, NoticePlanStatus
from mailferry_api.problems import Problem

from ..kube import client as kube
from ..mailmigration.batching import plan_batches
from ..mailmigration.inventory import Inventory, decode, from_entries, parse_text
from ..mailmigration.naming import mailbox_sync_name
from . import ledger
from .decide import Member, Snapshot

STARTED = {"Syncing", "Synced", "Throttled", "Failed"}
SYNC_ANCHORS = {"batchStart", "mailboxCompleted"}
SECURITY_WORDS = {"tls": "SSL/TLS", "starttls": "STARTTLS", "none": "none"}


@dataclass
class Observed:
    """The snapshot plus what apply needs beside it."""

    snapshot: Snapshot
    migration: MailMigrationSpec | None = None
    entries: dict[str, MailboxEntry] = field(default_factory=dict)  # recipient address -> inventory row
    ledger_versions: dict[str, str] = field(default_factory=dict)  # notice -> ConfigMap resourceVersion


def _path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def _configmap_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


async def _inventory(namespace: str, spec: MailMigrationSpec) -> Inventory:
    if spec.inventory_ref is None:
        return from_entries(spec.mailboxes or [])
    ref = spec.inventory_ref
    cm = await kube.get_or_none(_configmap_path(namespace, ref.name))
    if cm is None:
        return Inventory().fail(f"inventory ConfigMap {ref.name} does not exist")
    text = (cm.get("data") or {}).get(ref.key)
    if text is None:
        raw = (cm.get("binaryData") or {}).get(ref.key)
        if raw is None:
            return Inventory().fail(f"inventory ConfigMap {ref.name} has no key {ref.key}")
        decoded = decode(base64.b64decode(raw))
        if isinstance(decoded, Inventory):
            return decoded
        text = decoded
    return parse_text(text, ref.format)


def cohorts(
    migration: str, spec: MailMigrationSpec, entries: list[MailboxEntry]
) -> dict[str, list[MailboxEntry]]:
    """The inventory's `cohort` column; rows without one are in their batch's cohort `batch-<n>` (the
    batch numbers of the worker Jobs)."""
    by_name = {mailbox_sync_name(migration, e.source): e for e in entries}
    batch_of: dict[str, int] = {}
    for number, names in enumerate(plan_batches(by_name, spec.batch_size)):
        batch_of.update({n: number for n in names})
    out: dict[str, list[MailboxEntry]] = {}
    for sync_name, entry in by_name.items():
        out.setdefault(entry.cohort or f"batch-{batch_of[sync_name]}", []).append(entry)
    return out


def recipient(entry: MailboxEntry) -> str | None:
    """The address notices go to: the source login when it is an address, else the destination's."""
    for candidate in (entry.source, entry.destination):
        if candidate and "@" in candidate:
            return candidate
    return None


def migration_facts(name: str, spec: MailMigrationSpec, domain: str) -> dict[str, str]:
    return {
        "migration": name,
        "domain": domain,
        "new_imap_host": spec.destination.host,
        "new_imap_port": str(spec.destination.port),
        "new_imap_security": SECURITY_WORDS[spec.destination.security],
        "old_imap_host": spec.source.host,
    }


async def observe(
    namespace: str,
    name: str,
    uid: str,
    generation: int,
    body_spec: Mapping[str, Any],
    body_status: Mapping[str, Any],
) -> Observed:
    now = datetime.now(UTC).replace(microsecond=0)
    previous = NoticePlanStatus.model_validate(dict(body_status or {}))
    spec = NoticePlanSpec.model_validate(dict(body_spec))

    def snapshot(problem: Problem | None = None, **kw: Any) -> Snapshot:
        base: dict[str, Any] = {"members": {}, "facts": {}, "templates": {}, "ledgers": {}}
        return Snapshot(name, uid, generation, spec, now, previous, problem=problem, **(base | kw))

    mm = await kube.get_or_none(_path(namespace, "mailmigrations", spec.migration_ref.name))
    if mm is None:
        return Observed(
            snapshot(
                Problem("MigrationNotFound", f"MailMigration {spec.migration_ref.name} does not exist", True)
            )
        )
    try:
        mspec = MailMigrationSpec.model_validate(dict(mm.get("spec") or {}))
    except ValidationError:
        return Observed(
            snapshot(
                Problem(
                    "MigrationInvalid", f"MailMigration {spec.migration_ref.name} has an invalid spec", True
                )
            )
        )
    inv = await _inventory(namespace, mspec)
    if inv.problem is not None:
        return Observed(snapshot(Problem("InventoryInvalid", inv.problem[1], True)), mspec)
    templates_cm = await kube.get_or_none(_configmap_path(namespace, spec.templates_ref.name))
    if templates_cm is None:
        return Observed(
            snapshot(
                Problem(
                    "TemplatesNotFound", f"templates ConfigMap {spec.templates_ref.name} does not exist", True
                )
            ),
            mspec,
        )
    switched_at = None
    domain = spec.from_.rsplit("@", 1)[-1].strip(" >")
    if spec.cutover_ref is not None:
        cutover = await kube.get_or_none(_path(namespace, "dnscutovers", spec.cutover_ref.name))
        if cutover is not None:
            switched_at = _time((cutover.get("status") or {}).get("switchedAt"))
            domain = str((cutover.get("spec") or {}).get("domain") or domain)

    # The MailboxSyncs (10,000 of them: megabytes) are listed only for a plan whose notices need them.
    syncs = None
    if any(n.at.anchor in SYNC_ANCHORS for n in spec.notices):
        syncs = await kube.get_or_none(
            _path(namespace, "mailboxsyncs") + f"?labelSelector={LABEL_MIGRATION}%3D{spec.migration_ref.name}"
        )
    phases: dict[str, str] = {}
    for item in (syncs or {}).get("items") or []:
        username = str(((item.get("spec") or {}).get("source") or {}).get("username") or "").lower()
        phases[username] = str((item.get("status") or {}).get("phase") or "")

    members: dict[str, list[Member]] = {}
    entries: dict[str, MailboxEntry] = {}
    started = {c.cohort: c.batch_started_at for c in previous.cohorts if c.batch_started_at}
    for cohort, rows in cohorts(spec.migration_ref.name, mspec, inv.entries).items():
        people = []
        for entry in rows:
            address = recipient(entry)
            phase = phases.get(entry.source.lower(), "")
            if phase in STARTED and cohort not in started:
                started[cohort] = now
            if address is not None:
                entries[address.lower()] = entry
                people.append(Member(address, phase == "Synced"))
        members[cohort] = sorted(people, key=lambda m: m.address.lower())

    ledgers: dict[tuple[str, str], ledger.Book] = {}
    versions: dict[str, str] = {}
    for notice in spec.notices:
        cm = await kube.get_or_none(_configmap_path(namespace, ledger.configmap_name(name, notice.name)))
        if cm is None:
            continue
        versions[notice.name] = str(cm["metadata"]["resourceVersion"])
        for cohort, text in (cm.get("data") or {}).items():
            ledgers[(notice.name, cohort)] = ledger.parse(text)

    snap = snapshot(
        members=members,
        facts=migration_facts(spec.migration_ref.name, mspec, domain),
        templates=dict(templates_cm.get("data") or {}),
        ledgers=ledgers,
        batch_started=started,
        switched_at=switched_at,
    )
    return Observed(snap, mspec, entries, versions)
