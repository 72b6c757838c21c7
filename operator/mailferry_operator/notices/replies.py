"""Read the replies mailbox (spec.replies): the messages that arrived since the last run, matched to the
ledger (inbound.py), then the new checkpoint for status.

Order, for a crash at any point: the ledgers are written first, the checkpoint (status.replies) after, with
the plan's status. A crash in between re-reads those messages next run; recording them is idempotent
(inbound.record), so no recipient is counted twice. Read-only (EXAMINE, BODY.PEEK): people may read and
file the mailbox as they like; only its UIDs matter. A new UIDVALIDITY means the folder was recreated:
it is read again from the start, harmlessly for the same reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailferry_api.noticeplan import Replies, RepliesRead
from mailferry_imap import ImapError
from mailferry_imap.credentials import Connector
from mailferry_imap.parser import Spool
from mailferry_imap.wire import MessageMeta

from .. import settings
from ..kube import client as kube
from ..mailmigration.durations import parse_duration
from . import inbound
from . import metrics as notice_metrics
from .apply import Books
from .lookup import OperatorSecrets
from .message import message_id, sender
from .observe import Observed

log = logging.getLogger("mailferry.notices")

FETCH_CHUNK = 20  # bodies per UID FETCH: at most 20 x max_message_bytes in memory


@dataclass
class Tally:
    """What one run read (added to the counts of status.replies)."""

    last_uid: int
    counts: dict[inbound.Outcome, int] = field(default_factory=dict)
    changed: set[tuple[str, str]] = field(default_factory=set)  # ledgers to write

    def add(self, outcome: inbound.Outcome) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1


def where(cfg: Replies) -> str:
    """The checkpoint's folder: a UID means nothing in another mailbox (UIDVALIDITY alone could collide)."""
    return f"{cfg.username}@{cfg.imap.host}:{cfg.imap.port}/{cfg.folder}"


async def _permitted(namespace: str, cfg: Replies) -> str:
    """Why the IMAP Secret may not be used ('' when it may): absent, or not opted in (kube.consent)."""
    name = cfg.imap.auth.secret_ref.name
    values = await kube.read_secret_values(namespace, name)
    if values is None:
        return f"Secret {name} (spec.replies.imap.auth.secretRef) does not exist"
    return values.refused.message if values.refused is not None else ""


def _body(literal: bytes | Spool | None) -> bytes:
    if isinstance(literal, Spool):
        try:
            return literal.read_all()
        finally:
            literal.close()
    return literal or b""


def consume(book_of: Books, index: inbound.Index, raw: bytes, at: float, tally: Tally) -> inbound.Outcome:
    """One message into the ledgers (in memory) and the tally."""
    outcome, who = inbound.match(inbound.parse(raw), index)
    tally.add(outcome)
    if who is not None and inbound.record(book_of.book(who.notice, who.cohort), outcome, who, at):
        tally.changed.add((who.notice, who.cohort))
    return outcome


async def _read(
    connector: Connector, cfg: Replies, before: RepliesRead, books: Books, idx: inbound.Index
) -> tuple[int | None, Tally]:
    client = await connector.open()
    try:
        info = await client.select(cfg.folder, readonly=True)
        same = before.uid_validity == info.uidvalidity and before.mailbox == where(cfg)
        last = before.last_uid if same else 0
        new: list[tuple[int, int]] = []

        def keep(meta: MessageMeta) -> None:
            if meta.uid > last:  # `n:*` also answers the highest UID when it is below n
                new.append((meta.uid, meta.size))

        await client.fetch_meta(f"{last + 1}:*", with_message_id=False, on_meta=keep)
        new = sorted(new)[: cfg.max_per_run]
        tally = Tally(last)
        now = time.time()
        for start in range(0, len(new), FETCH_CHUNK):
            chunk = new[start : start + FETCH_CHUNK]
            small = [uid for uid, size in chunk if size <= cfg.max_message_bytes]
            bodies = await client.fetch_bodies(small) if small else {}
            for uid, size in chunk:
                if size > cfg.max_message_bytes:
                    tally.add("unmatched")  # too large to be a bounce or a reply to a notice
                else:
                    consume(books, idx, _body(bodies.pop(uid, None)), now, tally)
                tally.last_uid = uid
        return info.uidvalidity, tally
    finally:
        await client.logout()


async def read(obs: Observed, books: Books) -> RepliesRead | None:
    """Read new messages of spec.replies into `books` (written here) and return the new status.replies.
    None without spec.replies, or when it was read less than spec.replies.interval ago. A mailbox that
    cannot be read keeps the checkpoint and says why in `error`."""
    snap = obs.snapshot
    cfg = snap.spec.replies
    if cfg is None:
        return None
    before = snap.previous.replies or RepliesRead()
    now = datetime.now(UTC).replace(microsecond=0)
    last = before.last_read_time
    if last is not None and (now - last).total_seconds() < parse_duration(cfg.interval):
        return None  # read recently: status keeps the previous checkpoint
    refused = await _permitted(books.namespace, cfg)
    if refused:
        return before.model_copy(update={"error": refused[:256], "last_read_time": now})
    domain = sender(snap.spec.from_)[1].split("@")[1]
    idx = inbound.index(
        books.books, lambda notice, address: message_id(snap.plan_uid, notice, address, domain)
    )
    connector = Connector(
        "destination",
        cfg.imap,
        cfg.username,
        OperatorSecrets(books.namespace),
        cfg.secret_key,
        None,
        settings.current().ca_file or None,
    )
    try:
        uid_validity, tally = await _read(connector, cfg, before, books, idx)
    except (ImapError, OSError, TimeoutError) as exc:
        # the class name only: a server's error text may echo the login
        log.warning("NoticePlan %s: reading the replies mailbox failed: %s", books.plan, type(exc).__name__)
        return before.model_copy(
            update={
                "error": f"reading {cfg.folder} of {cfg.username} failed: {type(exc).__name__}",
                "last_read_time": now,
            }
        )
    for notice, cohort in sorted(tally.changed):
        await books.write(notice, cohort)  # before the checkpoint moves (see the module's docstring)
    for outcome, n in tally.counts.items():
        notice_metrics.replies.labels(books.namespace, books.plan, outcome).inc(n)
    if tally.counts:
        log.info(
            "NoticePlan %s: replies mailbox read up to UID %d: %s", books.plan, tally.last_uid, tally.counts
        )
    c = tally.counts
    return RepliesRead(
        mailbox=where(cfg),
        uid_validity=uid_validity,
        last_uid=tally.last_uid,
        bounces=before.bounces + c.get("bounce", 0),
        acknowledgements=before.acknowledgements + c.get("acknowledgement", 0),
        auto_replies=before.auto_replies + c.get("auto-reply", 0),
        unmatched=before.unmatched + c.get("unmatched", 0),
        last_read_time=now,
    )
