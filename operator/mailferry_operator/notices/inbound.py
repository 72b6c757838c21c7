"""What comes back to the replies mailbox, parsed and matched to the notices sent. Pure: no I/O.

Two things are counted, per notice and recipient, in the ledger:
  bounce           a delivery status notification (RFC 3464: multipart/report; report-type=delivery-status)
                   with a recipient whose Action is `failed`, about a message whose Message-ID is one of
                   ours (found in its returned headers: text/rfc822-headers or message/rfc822, else in its
                   In-Reply-To/References as some MTAs write it)
  acknowledgement  a reply (In-Reply-To or References naming one of our Message-IDs) whose From is the
                   address that notice went to (case-insensitive), and that is not automatic (RFC 3834
                   Auto-Submitted, Precedence, X-Autoreply, a null Return-Path: out-of-office answers carry
                   In-Reply-To too, and are nobody's acknowledgement)
Anything else (delay notifications, a reply from another address, spam, garbage, a message over the size
bound) is unmatched: counted, never an error. Our Message-IDs are derived from the plan's uid (message.py)
and cannot be guessed by a stranger; whoever received a notice can forge a bounce or reply for it, which
is the same trust a person's own reply gets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Literal

from . import ledger

Kind = Literal["dsn", "reply", "auto-reply", "other"]
Outcome = Literal["bounce", "acknowledgement", "auto-reply", "unmatched"]

# A report nests a few parts; a hostile message may nest thousands: walking stops here.
MAX_PARTS = 64
MAX_IDS = 32
_MSGID = re.compile(r"<([^<>\s]{1,250}@[^<>\s]{1,250})>")
_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
_RETURNED = {"text/rfc822-headers", "message/rfc822-headers", "message/rfc822"}


@dataclass(frozen=True)
class Inbound:
    """One message of the replies mailbox, as far as notices care."""

    kind: Kind
    message_ids: tuple[str, ...] = ()  # Message-IDs it refers to (lower case), ours or not
    sender: str = ""  # the From address (lower case), for replies
    failed: bool = False  # a DSN with at least one recipient whose Action is failed


@dataclass(frozen=True)
class Recipient:
    """Whom one of our Message-IDs went to."""

    notice: str
    cohort: str
    address: str  # lower case, as the ledger keys it


Index = Mapping[str, Recipient]  # Message-ID (lower case, without <>) -> recipient


def _ids(values: Iterable[object]) -> list[str]:
    out: list[str] = []
    for value in values:
        for m in _MSGID.finditer(str(value)):
            if len(out) < MAX_IDS:
                out.append(m.group(1).lower())
    return out


def _walk(msg: Message) -> Iterator[Message]:
    """The message's parts, depth first, at most MAX_PARTS (email's own walk has no bound)."""
    stack, seen = [msg], 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        yield part
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))


def _returned_ids(part: Message) -> list[str]:
    """Message-ID of the original message a report carries (headers only, or the whole message)."""
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822 (and message/rfc822-headers, parsed alike)
        return _ids(p.get("Message-ID", "") for p in payload if isinstance(p, Message))
    if isinstance(payload, str):  # text/rfc822-headers: the headers as text
        text = part.get_payload(decode=True)
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else payload
        return _ids(
            [HeaderParser(policy=policy.compat32).parsestr(raw, headersonly=True).get("Message-ID", "")]
        )
    return []


def _failed(part: Message) -> bool:
    """message/delivery-status: the email package parses its field blocks into a list of Messages."""
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if isinstance(payload, str):  # a report the parser did not split: read its fields as header blocks
        blocks = [HeaderParser(policy=policy.compat32).parsestr(b) for b in re.split(r"\r?\n\r?\n", payload)]
    return any(
        str(b.get("Action", "")).strip().lower().startswith("failed")
        for b in blocks
        if isinstance(b, Message)
    )


def _automatic(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() in _AUTO_PRECEDENCE:
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    # delivered with a null envelope sender: the mark of automatic mail (RFC 3834 section 3.3)
    return any(str(v).strip() == "<>" for v in msg.get_all("Return-Path") or [])


def parse(raw: bytes) -> Inbound:
    """Classify one message; never raises (a message that does not parse is `other`)."""
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
        references = _ids([*(msg.get_all("In-Reply-To") or []), *(msg.get_all("References") or [])])
        is_report = msg.get_content_type() == "multipart/report"
        if is_report or msg.get_content_type() == "message/delivery-status":
            failed, returned = False, []
            for part in _walk(msg):
                ctype = part.get_content_type()
                if ctype == "message/delivery-status":
                    failed = failed or _failed(part)
                elif ctype in _RETURNED and part is not msg:
                    returned += _returned_ids(part)
            report_type = str(msg.get_param("report-type", "") or "").lower()
            if report_type == "delivery-status" or failed:
                return Inbound("dsn", tuple(dict.fromkeys(returned + references)), failed=failed)
        if not references:
            return Inbound("other")
        if _automatic(msg):
            return Inbound("auto-reply", tuple(references))
        addresses = getaddresses([str(v) for v in msg.get_all("From") or []])
        sender = parseaddr(str(msg.get("From", "")))[1] if not addresses else addresses[0][1]
        return Inbound("reply", tuple(references), sender.strip().lower())
    except Exception:  # hostile or broken input (RecursionError, odd encodings): never the operator's crash
        return Inbound("other")


def match(item: Inbound, index: Index) -> tuple[Outcome, Recipient | None]:
    """What the message means for our notices."""
    ours = [index[i] for i in item.message_ids if i in index]
    if item.kind == "dsn":
        return ("bounce", ours[0]) if ours and item.failed else ("unmatched", None)
    if item.kind == "auto-reply":
        return ("auto-reply", ours[0]) if ours else ("unmatched", None)
    if item.kind == "reply":
        mine = next((r for r in ours if r.address == item.sender), None)
        return ("acknowledgement", mine) if mine else ("unmatched", None)
    return "unmatched", None


def record(book: ledger.Book, outcome: Outcome, who: Recipient, at: float) -> bool:
    """Put the outcome into the recipient's ledger line; True when the line changed. Idempotent: a message
    read twice (a crash before the checkpoint was saved) changes nothing the second time, so nobody is
    counted twice. A reply proves delivery: it settles an `intent` as sent and outweighs any bounce (a
    DSN from one hop of a forwarding while the person got it); a bounce after an acknowledgement is
    ignored."""
    entry = book.get(who.address)
    if entry is None:  # not in the ledger (a retry that lost its line): nothing to count against
        return False
    if outcome == "bounce" and entry.state != "bounced" and not entry.acked:
        book[who.address] = ledger.Entry("bounced", entry.at, entry.hash)
        return True
    if outcome == "acknowledgement" and not entry.acked:
        book[who.address] = ledger.Entry("sent", entry.at, entry.hash, acked=at)
        return True
    return False


def index(
    books: Mapping[tuple[str, str], ledger.Book], message_id_of: Callable[[str, str], str]
) -> dict[str, Recipient]:
    """Our Message-IDs (lower case, without <>) for every ledger line; message_id_of(notice, address)."""
    out: dict[str, Recipient] = {}
    for (notice, cohort), book in books.items():
        for address in book:
            out[message_id_of(notice, address).strip("<>").lower()] = Recipient(notice, cohort, address)
    return out
