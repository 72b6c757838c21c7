"""Carry out a NoticePlan run: settle the in-doubt, send in chunks behind the ledger, write status and Events.

Exactly once per recipient and notice, across restarts:
  1. before a chunk (CHUNK messages) is handed to SMTP, its recipients are written to the ledger as
     `intent`, with the ConfigMap's resourceVersion as a precondition (a second operator that raced this
     one gets 409 and stops: the ledger write is also the lock);
  2. each message is sent in its own SMTP transaction with a deterministic Message-ID;
  3. the outcomes are written (`sent`, `bounced`; a 4xx or an unattempted message loses its line).
A crash after 1 leaves at most CHUNK recipients `intent`. The next run looks each one up by Message-ID
in their mailbox (lookup.py): found -> sent; absent past spec.sending.inDoubtGrace -> sent again;
otherwise it waits. Nobody is sent to twice unless a message stays undelivered in an SMTP queue for
longer than the grace time and then arrives after all; nobody is missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailferry_api.common import GROUP_VERSION
from mailferry_api.noticeplan import NoticePlanStatus
from mailferry_api.problems import Problem
from mailferry_kube.client import MERGE_PATCH, KubeError

from .. import settings
from ..kube import client as kube
from ..mailmigration.durations import parse_duration
from . import ledger, lookup, smtp
from . import metrics as notice_metrics
from .decide import Send
from .message import build, envelope_sender, message_id, reply_to, sender
from .observe import Observed

log = logging.getLogger("mailferry.notices")

CHUNK = 20
PLURAL = "noticeplans"


@dataclass
class Books:
    """The ledgers being written this run: the books and each ConfigMap's resourceVersion."""

    namespace: str
    plan: str
    uid: str
    books: dict[tuple[str, str], ledger.Book]
    versions: dict[str, str]
    written: set[tuple[str, str]] = field(default_factory=set)

    def book(self, notice: str, cohort: str) -> ledger.Book:
        return self.books.setdefault((notice, cohort), {})

    async def write(self, notice: str, cohort: str) -> None:
        """Persist one cohort's book; KubeError 409 when someone else wrote the ledger meanwhile."""
        name = ledger.configmap_name(self.plan, notice)
        text = ledger.render(self.books[(notice, cohort)])
        api = await kube.api()
        if notice not in self.versions:
            owner = {"apiVersion": GROUP_VERSION, "kind": "NoticePlan", "name": self.plan, "uid": self.uid}
            body = {
                "metadata": {
                    "name": name,
                    "labels": {
                        "app.kubernetes.io/part-of": "mailferry",
                        "mailferry.io/noticeplan": self.plan,
                    },
                    "ownerReferences": [owner],
                },
                "data": {cohort: text},
            }
            made = await api.request("POST", f"/api/v1/namespaces/{self.namespace}/configmaps", body)
        else:
            patch = {"metadata": {"resourceVersion": self.versions[notice]}, "data": {cohort: text}}
            made = await api.request(
                "PATCH", f"/api/v1/namespaces/{self.namespace}/configmaps/{name}", patch, MERGE_PATCH
            )
        self.versions[notice] = str(made["metadata"]["resourceVersion"])


async def settle_in_doubt(obs: Observed, books: Books) -> None:
    """Every `intent` line: delivered (found by Message-ID) -> sent; absent past the grace -> forgotten
    (sent again this run or the next); else left for the next run."""
    snap = obs.snapshot
    if obs.migration is None:
        return
    grace = parse_duration(snap.spec.sending.in_doubt_grace)
    domain = sender(snap.spec.from_)[1].split("@")[1]
    now = time.time()
    for (notice, cohort), book in list(books.books.items()):
        changed = False
        for address, entry in list(book.items()):
            row = obs.entries.get(address)
            if entry.state != "intent" or row is None:
                continue
            msgid = message_id(snap.plan_uid, notice, address, domain)
            found = await lookup.delivered(
                books.namespace, obs.migration.source, obs.migration.destination, row, msgid
            )
            if found == "found":
                book[address] = ledger.Entry("sent", now, entry.hash)
                changed = True
            elif found == "absent" and now - entry.at > grace:
                del book[address]
                changed = True
            log.info("notice %s to %s was in doubt: %s", notice, address, found)
        if changed:
            await books.write(notice, cohort)


async def _credentials(namespace: str, obs: Observed) -> tuple[str, str] | Problem:
    cfg = obs.snapshot.spec.smtp
    values = await kube.read_secret_values(namespace, cfg.secret_ref.name)
    if values is None:
        return Problem(
            "SmtpSecretMissing", f"Secret {cfg.secret_ref.name} (spec.smtp.secretRef) does not exist", True
        )
    if values.refused is not None:  # not labelled mailferry.io/credentials=true (kube.consent)
        return values.refused
    user, password = values.values.get(cfg.username_key), values.values.get(cfg.password_key)
    if not user or not password:
        return Problem(
            "SmtpSecretMissing",
            f"Secret {cfg.secret_ref.name} needs keys {cfg.username_key} and {cfg.password_key}",
            True,
        )
    return user.strip(), password.rstrip("\r\n")


async def send(obs: Observed, books: Books, sends: list[Send]) -> Problem | None:
    """Send `sends` in chunks behind the ledger; a Problem when SMTP cannot be used at all."""
    if not sends:
        return None
    snap = obs.snapshot
    creds = await _credentials(books.namespace, obs)
    if isinstance(creds, Problem):
        return creds
    from_header, envelope_from = snap.spec.from_, envelope_sender(snap.spec)
    ca_file = settings.current().ca_file or None
    groups: dict[tuple[str, str], list[Send]] = {}
    for item in sends:
        groups.setdefault((item.notice, item.cohort), []).append(item)
    for (notice, cohort), items in groups.items():
        book = books.book(notice, cohort)
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            at = time.time()
            for item in chunk:
                book[item.address.lower()] = ledger.Entry("intent", at, item.hash)
            await books.write(notice, cohort)
            date = datetime.now(UTC)
            outgoing = [
                smtp.Outgoing(
                    item.address,
                    build(
                        from_header=from_header,
                        reply_to=reply_to(snap.spec),
                        to=item.address,
                        subject=item.subject,
                        text=item.text,
                        msgid=item.message_id,
                        date=date,
                        tag=f"{notice}/{cohort}/{item.hash}",
                    ),
                )
                for item in chunk
            ]
            try:
                results = await asyncio.to_thread(
                    smtp.send_chunk, snap.spec.smtp, creds[0], creds[1], envelope_from, outgoing, ca_file
                )
            except smtp.SmtpFailed as exc:  # connect or login: nothing of this chunk went out
                for item in chunk:
                    book.pop(item.address.lower(), None)
                await books.write(notice, cohort)
                return exc.problem
            done = time.time()
            for r in results:
                key = r.address.lower()
                if r.outcome in ("sent", "bounced"):
                    book[key] = ledger.Entry(r.outcome, done, book[key].hash)
                elif r.outcome == "retry":
                    book.pop(key, None)
                if r.outcome != "sent":
                    log.info("notice %s to %s: %s %s", notice, r.address, r.outcome, r.detail)
                notice_metrics.messages.labels(books.namespace, books.plan, r.outcome).inc()
            await books.write(notice, cohort)
    return None


def status_patch(status: NoticePlanStatus) -> dict[str, Any]:
    data = status.to_api()
    data.setdefault("drafts", [])
    data.setdefault("cohorts", [])
    return data


async def write_status(namespace: str, name: str, status: NoticePlanStatus) -> None:
    await kube.patch_custom_status(namespace, PLURAL, name, status_patch(status))
    notice_metrics.update(namespace, name, status)


def is_conflict(exc: KubeError) -> bool:
    return exc.status == 409


def merged_books(
    snapshot_ledgers: Mapping[tuple[str, str], ledger.Book],
) -> dict[tuple[str, str], ledger.Book]:
    return {key: dict(book) for key, book in snapshot_ledgers.items()}
