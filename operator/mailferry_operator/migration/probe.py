"""Validation: log in to every mailbox on both sides, and scan the source (folders, counts, bytes).

Uses Python's imaplib in worker threads (bounded concurrency). The worker's async IMAP client is the
sync engine; a connection test needs only LOGIN/LIST/STATUS, and keeping it here means the operator
does not depend on the sync engine's internals. Credentials come from Secret data in memory and never
reach logs, status or exception messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailferry_api.imap import ImapEndpoint

_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<sep>"[^"]*"|NIL) (?P<name>.+)$')
_STATUS = re.compile(rb"\((?P<items>[^)]*)\)\s*$")


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str | None = None
    token: str | None = None  # XOAUTH2 access token


@dataclass
class ProbeResult:
    ok: bool
    reason: str = ""
    message: str = ""
    folders: int = 0
    messages: int = 0
    bytes: int = 0


class CredentialError(Exception):
    """The Secret lacks the key for this mailbox (the message names the key, never a value)."""


def credentials_for(
    endpoint: ImapEndpoint, username: str, secret_key: str, data: Mapping[str, str]
) -> Credentials:
    auth = endpoint.auth
    if auth.method == "master-user":
        for key in (auth.master_user_key, auth.master_password_key):
            if key not in data:
                raise CredentialError(f"Secret {auth.secret_ref.name} has no key {key}")
        login = f"{username}{auth.master_separator}{data[auth.master_user_key]}"
        return Credentials(login=login, password=data[auth.master_password_key])
    if auth.method == "xoauth2":
        token_key = auth.oauth2.token_key if auth.oauth2 else "token"
        if auth.oauth2 is not None and auth.oauth2.provider != "static":
            raise CredentialError(f"token provider {auth.oauth2.provider} is checked by the worker only")
        if token_key not in data:
            raise CredentialError(f"Secret {auth.secret_ref.name} has no key {token_key}")
        return Credentials(login=username, token=data[token_key])
    if secret_key not in data:
        raise CredentialError(f"Secret {auth.secret_ref.name} has no key {secret_key}")
    return Credentials(login=username, password=data[secret_key])


def _connect(endpoint: ImapEndpoint) -> imaplib.IMAP4:
    timeout = float(endpoint.connect_timeout_seconds)
    ctx = ssl.create_default_context()
    if not endpoint.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    client: imaplib.IMAP4
    if endpoint.security == "tls":
        client = imaplib.IMAP4_SSL(endpoint.host, endpoint.port, ssl_context=ctx, timeout=timeout)
    else:
        client = imaplib.IMAP4(endpoint.host, endpoint.port, timeout=timeout)
        if endpoint.security == "starttls":
            client.starttls(ssl_context=ctx)
    if client.sock is not None:
        client.sock.settimeout(float(endpoint.read_timeout_seconds))
    return client


def _login(client: imaplib.IMAP4, creds: Credentials) -> None:
    if creds.token is not None:
        raw = f"user={creds.login}\x01auth=Bearer {creds.token}\x01\x01".encode()
        client.authenticate("XOAUTH2", lambda _: raw)
    else:
        client.login(creds.login, creds.password or "")


def _decode_name(raw: bytes) -> bytes:
    raw = raw.strip()
    if raw.startswith(b'"') and raw.endswith(b'"'):
        return raw[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return raw


def _quote(name: bytes) -> str:
    text = name.decode("utf-8", "replace")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scan(client: imaplib.IMAP4) -> tuple[int, int, int]:
    typ, data = client.list()
    if typ != "OK":
        return 0, 0, 0
    caps = {c.upper() for c in client.capabilities}
    items = "(MESSAGES SIZE)" if "STATUS=SIZE" in caps else "(MESSAGES)"
    folders = messages = size = 0
    for line in data:
        if not isinstance(line, bytes):
            continue
        match = _LIST_LINE.match(line)
        if not match or b"\\noselect" in match.group("flags").lower():
            continue
        folders += 1
        typ, sdata = client.status(_quote(_decode_name(match.group("name"))), items)
        if typ != "OK" or not sdata or not isinstance(sdata[0], bytes):
            continue
        found = _STATUS.search(sdata[0])
        if not found:
            continue
        parts = found.group("items").split()
        values = dict(zip(parts[0::2], parts[1::2], strict=False))
        messages += int(values.get(b"MESSAGES", b"0"))
        size += int(values.get(b"SIZE", b"0"))
    return folders, messages, size


def probe_mailbox(endpoint: ImapEndpoint, creds: Credentials, scan: bool) -> ProbeResult:
    """Blocking: connect, log in, optionally scan, log out. Classifies failures into CamelCase reasons."""
    try:
        client = _connect(endpoint)
    except ssl.SSLError as exc:
        return ProbeResult(
            False, "TLSError", f"TLS with {endpoint.host}:{endpoint.port} failed: {exc.reason}"
        )
    except (OSError, imaplib.IMAP4.error) as exc:
        return ProbeResult(
            False,
            "ConnectionFailed",
            f"cannot connect to {endpoint.host}:{endpoint.port}: {type(exc).__name__}",
        )
    try:
        try:
            _login(client, creds)
        except imaplib.IMAP4.error:
            # the server's text may echo what was sent: never include it
            return ProbeResult(
                False, "AuthenticationFailed", f"login as {creds.login.split('*')[0]} was refused"
            )
        if not scan:
            return ProbeResult(True)
        folders, messages, size = _scan(client)
        return ProbeResult(True, folders=folders, messages=messages, bytes=size)
    except (TimeoutError, OSError, imaplib.IMAP4.error) as exc:
        return ProbeResult(
            False, "ConnectionFailed", f"{endpoint.host}:{endpoint.port}: {type(exc).__name__}"
        )
    finally:
        with contextlib.suppress(Exception):
            client.logout()


@dataclass(frozen=True)
class ProbeTask:
    mailbox: str  # source address, for reporting
    side: str  # "source" | "destination"
    endpoint: ImapEndpoint
    username: str
    secret_key: str
    scan: bool


async def probe_all(
    tasks: Sequence[ProbeTask],
    secrets: Mapping[str, Mapping[str, str]],
    concurrency: int = 32,
    on_result: Callable[[ProbeTask, ProbeResult], None] | None = None,
) -> list[tuple[ProbeTask, ProbeResult]]:
    """Run every probe, at most `concurrency` connections at once, roughly in the order given (so the
    first batches are tested first). `secrets`: side -> key -> value. Work is handed out lazily: memory
    stays flat however many mailboxes there are."""
    loop = asyncio.get_running_loop()
    results: list[tuple[ProbeTask, ProbeResult]] = []
    queue = iter(tasks)

    def one(task: ProbeTask) -> ProbeResult:
        try:
            creds = credentials_for(task.endpoint, task.username, task.secret_key, secrets.get(task.side, {}))
        except CredentialError as exc:
            return ProbeResult(False, "SecretNotFound", str(exc))
        return probe_mailbox(task.endpoint, creds, task.scan)

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="mf-probe") as pool:

        async def lane() -> None:
            for task in queue:
                result = await loop.run_in_executor(pool, one, task)
                results.append((task, result))
                if on_result is not None:
                    on_result(task, result)

        await asyncio.gather(*(lane() for _ in range(max(1, concurrency))))
    return results


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, str]:
    """Secret .data is base64; values stay in memory only."""
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value).decode("utf-8").rstrip("\r\n")
        except (ValueError, UnicodeDecodeError):
            continue
    return out
