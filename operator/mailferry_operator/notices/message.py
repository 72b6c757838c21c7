"""One notice as an RFC 5322 message, with a Message-ID that is the same every time it is built.

The Message-ID depends on the plan (uid), the notice and the recipient only: a send that was cut off
is found in the recipient's mailbox by it (lookup.py), whatever version of the draft went out.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from mailferry_api.noticeplan import NoticePlanSpec

from .templates import HeaderInjection, check_header


def message_id(plan_uid: str, notice: str, address: str, domain: str) -> str:
    digest = hashlib.sha256("\x00".join((plan_uid, notice, address.lower())).encode()).hexdigest()[:32]
    return f"<notice.{notice}.{digest}@{domain}>"


def sender(from_header: str, where: str = "spec.from") -> tuple[str, str]:
    """(the From header, the bare address for the envelope); HeaderInjection when unsafe."""
    check_header("From", from_header, where)
    _name, address = parseaddr(from_header)
    if address.count("@") != 1 or not address.split("@")[1] or any(c in address for c in " <>,;"):
        raise HeaderInjection(f"{where}: {from_header[:80]!r} is not 'Display Name <address@domain>'")
    return from_header, address


def reply_to(spec: NoticePlanSpec) -> str | None:
    """Where a recipient's reply goes: spec.replyTo, else the replies mailbox (acknowledgements are read
    there), else nowhere special (their client answers From)."""
    return spec.reply_to or (spec.replies.address if spec.replies else None)


def envelope_sender(spec: NoticePlanSpec) -> str:
    """MAIL FROM (the Return-Path, where mail servers send bounces): the replies mailbox when there is one,
    so that delivery status notifications reach the mailbox the operator reads."""
    return spec.replies.address if spec.replies else sender(spec.from_)[1]


def build(
    *,
    from_header: str,
    reply_to: str | None,
    to: str,
    subject: str,
    text: str,
    msgid: str,
    date: datetime,
    tag: str,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_header
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = msgid
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the notice
    msg["X-Mailferry-Notice"] = tag
    msg.set_content(text)
    return msg.as_bytes()
