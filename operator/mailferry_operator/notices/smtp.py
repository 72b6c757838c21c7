"""SMTP submission (RFC 6409) for notices: STARTTLS or implicit TLS, AUTH, one transaction per recipient.

smtplib runs in a thread (asyncio.to_thread) for one chunk at a time. Each recipient's outcome:
  sent     250 after DATA
  bounced  a 5xx for the recipient or its message (a permanent refusal: counted, never retried)
  retry    a 4xx: refused for now, not delivered; sent again in a later run
  doubt    the connection broke after the message was handed over: it may have been delivered
Errors never carry the password or the server's whole reply (only its code and first 120 characters).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mailferry_api.noticeplan import SmtpSubmission
from mailferry_api.problems import ProblemError

Outcome = Literal["sent", "bounced", "retry", "doubt"]


class SmtpFailed(ProblemError):
    reason = "SmtpFailed"
    transient = True


@dataclass(frozen=True)
class Outgoing:
    address: str
    data: bytes


@dataclass(frozen=True)
class Result:
    address: str
    outcome: Outcome
    detail: str = ""


def _reply(code: int, text: bytes | str) -> str:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(shown.split())[:120]}"


def _connect(cfg: SmtpSubmission, ca_file: str | None) -> smtplib.SMTP:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if not cfg.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        if cfg.security == "tls":
            return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=ctx)
        client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        client.ehlo()
        if not client.has_extn("starttls"):
            client.close()
            raise SmtpFailed(
                f"{cfg.host}:{cfg.port} does not offer STARTTLS: refusing to send the login in clear",
                "SmtpNoTls",
                False,
            )
        client.starttls(context=ctx)
        client.ehlo()
        return client
    except (OSError, smtplib.SMTPException) as exc:
        if isinstance(exc, SmtpFailed):
            raise
        raise SmtpFailed(
            f"cannot reach SMTP submission {cfg.host}:{cfg.port}: {type(exc).__name__}"
        ) from None


def send_chunk(
    cfg: SmtpSubmission,
    username: str,
    password: str,
    envelope_from: str,
    messages: Sequence[Outgoing],
    ca_file: str | None = None,
) -> list[Result]:
    """Send each message to its one recipient; stops at the first broken connection (the rest: retry)."""
    client = _connect(cfg, ca_file)
    results: list[Result] = []
    try:
        try:
            client.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise SmtpFailed(
                f"SMTP login to {cfg.host} refused ({_reply(exc.smtp_code, exc.smtp_error)}): check the "
                f"Secret {cfg.secret_ref.name}",
                "SmtpAuthFailed",
                False,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpFailed(f"SMTP login to {cfg.host} failed: {type(exc).__name__}") from None
        for item in messages:
            results.append(_send_one(client, envelope_from, item))
            if results[-1].outcome == "doubt":
                break
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    done = {r.address for r in results}
    return results + [Result(m.address, "retry", "not attempted") for m in messages if m.address not in done]


def _send_one(client: smtplib.SMTP, envelope_from: str, item: Outgoing) -> Result:
    try:
        refused = client.sendmail(envelope_from, [item.address], item.data)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return Result(item.address, "bounced" if code >= 500 else "retry", _reply(code, text))
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
        return Result(
            item.address,
            "bounced" if exc.smtp_code >= 500 else "retry",
            _reply(exc.smtp_code, exc.smtp_error),
        )
    except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as exc:
        return Result(item.address, "doubt", type(exc).__name__)
    if refused:
        code, text = next(iter(refused.values()))
        return Result(item.address, "bounced" if code >= 500 else "retry", _reply(code, text))
    return Result(item.address, "sent")
