"""Validation: log in to every mailbox on both sides, and scan the source (folders, counts, bytes).

Runs the worker's own code: `mailferry_imap.credentials.Connector` (connect, STARTTLS, LOGIN /
AUTHENTICATE PLAIN, master user, XOAUTH2 with the static / Google service-account / Microsoft
client-credentials token sources) on the worker's asyncio IMAP client, so a mailbox that validates here
logs in the same way in its Job. Everything runs on the operator's event loop, `concurrency` connections
at once (no threads). Credentials come from Secret data in memory and never reach logs, status or
exception messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from mailferry_api.imap import ImapEndpoint
from mailferry_imap import CommandFailed, ImapClient, ImapError
from mailferry_imap.auth import TokenSource
from mailferry_imap.credentials import Connector, MissingSecret, StaticSecrets

from .. import settings

Side = Literal["source", "destination"]
TOKEN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str = ""
    message: str = ""
    folders: int = 0
    messages: int = 0
    bytes: int = 0


OK = ProbeResult(True)


@dataclass(frozen=True, slots=True)
class ProbeTask:
    mailbox: str  # source address, for reporting
    side: Side
    endpoint: ImapEndpoint
    username: str
    secret_key: str | None  # the mailbox's Secret key (password auth); None: the worker's default
    scan: bool
    fallback_key: str | None = None  # tried when `secret_key` is absent (the worker's fallback)


async def scan_mailbox(client: ImapClient) -> tuple[int, int, int]:
    """(selectable folders, messages, bytes): one LIST and one pipelined STATUS round trip. Bytes need
    STATUS=SIZE (RFC 8438); without it they stay 0. A refused LIST or STATUS counts as nothing."""
    try:
        folders = [f.name for f in await client.list_folders() if f.selectable]
    except CommandFailed:
        return 0, 0, 0
    if not folders:
        return 0, 0, 0
    items = ("MESSAGES", "SIZE") if client.has("STATUS=SIZE") else ("MESSAGES",)
    messages = size = 0
    for found in (await client.status_many(folders, items)).values():
        if isinstance(found, dict):
            messages += found.get("MESSAGES", 0)
            size += found.get("SIZE", 0)
    return len(folders), messages, size


def _failure(exc: BaseException, task: ProbeTask) -> ProbeResult:
    """CamelCase reason + a message that names no credential (the worker's messages never do; a
    master-user login is reported by the mailbox's name alone, not the master user's)."""
    if isinstance(exc, MissingSecret):
        return ProbeResult(False, "SecretNotFound", exc.message)
    if isinstance(exc, ImapError):
        message = exc.message
        if task.endpoint.auth.method == "master-user" and exc.reason == "AuthenticationFailed":
            message = f"login as {task.username} (master user) was refused"
        return ProbeResult(False, exc.reason, message)
    if isinstance(exc, httpx.HTTPError):
        return ProbeResult(False, "ConnectionFailed", f"token endpoint: {type(exc).__name__}")
    if isinstance(exc, ValueError | LookupError):  # an unusable service-account key / JSON
        return ProbeResult(
            False, "AuthenticationFailed", f"OAuth2 credentials unusable: {type(exc).__name__}"
        )
    ep = task.endpoint
    return ProbeResult(False, "ConnectionFailed", f"{ep.host}:{ep.port}: {type(exc).__name__}")


_EXPECTED = (ImapError, OSError, TimeoutError, httpx.HTTPError, ValueError, LookupError)


async def probe_mailbox(connector: Connector, task: ProbeTask) -> ProbeResult:
    """Connect, log in, optionally scan, log out. Never raises for an IMAP, TLS, token or socket failure."""
    try:
        client = await connector.open()
    except _EXPECTED as exc:
        return _failure(exc, task)
    try:
        if not task.scan:
            return OK
        folders, messages, size = await scan_mailbox(client)
        return ProbeResult(True, folders=folders, messages=messages, bytes=size)
    except (ImapError, OSError, TimeoutError) as exc:
        return _failure(exc, task)
    finally:
        await client.logout()


class _Connectors:
    """One Connector per probe, built when its turn comes. Token sources whose token does not depend on
    the mailbox (static, Microsoft client credentials) are shared per side and asked once, so 10,000
    mailboxes cost one token request, not 10,000 (a refusal is remembered for the rest of the run);
    Google (domain-wide delegation: one subject per mailbox) asks one token per mailbox."""

    def __init__(self, secrets: StaticSecrets) -> None:
        self.secrets = secrets
        self.http: httpx.AsyncClient | None = None  # made on first need: one costs ~1 MB and 20 ms (CAs)
        self.ca_file = settings.current().ca_file or None  # as the worker reads it
        self.shared: dict[str, TokenSource | BaseException] = {}
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def get(self, task: ProbeTask) -> Connector:
        oauth2 = task.endpoint.auth.oauth2
        token_http = (
            task.endpoint.auth.method == "xoauth2" and oauth2 is not None and oauth2.provider != "static"
        )
        if token_http and self.http is None:
            self.http = httpx.AsyncClient(timeout=TOKEN_TIMEOUT)
        c = Connector(
            task.side,
            task.endpoint,
            task.username,
            self.secrets,
            task.secret_key,
            task.fallback_key,
            self.ca_file,
            http=self.http,
            egress_allow=settings.current().egress_allow,  # token URLs only where the installer allows
        )
        if task.endpoint.auth.method != "xoauth2" or oauth2 is None or oauth2.provider == "google":
            return c
        async with self.lock:
            shared = self.shared.get(task.side)
            if shared is None:
                try:
                    source = await c.token_source()
                    await source.token(self.http)  # cached in the source from now on
                    shared = source
                except (ImapError, httpx.HTTPError, ValueError, LookupError) as exc:
                    shared = exc
                self.shared[task.side] = shared
        if isinstance(shared, BaseException):
            raise shared
        c._token_source = shared  # the Connector's own cache slot
        return c


async def probe_all(
    tasks: Sequence[ProbeTask],
    secrets: Mapping[str, Mapping[str, str]],
    concurrency: int = 32,
    on_result: Callable[[ProbeTask, ProbeResult], None] | None = None,
    pace: Callable[[int], Awaitable[None]] | None = None,
) -> list[tuple[ProbeTask, ProbeResult]]:
    """Run every probe, at most `concurrency` connections at once, roughly in the order given (so the
    first batches are tested first). `secrets`: side -> key -> value. Work is handed out lazily: memory
    stays flat however many mailboxes there are."""
    results: list[tuple[ProbeTask, ProbeResult]] = []
    queue = iter(enumerate(tasks))
    connectors = _Connectors(StaticSecrets(secrets))  # type: ignore[arg-type]  # read-only use
    try:

        async def one(task: ProbeTask) -> ProbeResult:
            try:
                connector = await connectors.get(task)
            except _EXPECTED as exc:  # the side's shared token source was refused
                return _failure(exc, task)
            return await probe_mailbox(connector, task)

        async def lane() -> None:
            for index, task in queue:
                if pace is not None:  # `await pace(index)` before the probe at that position
                    await pace(index)
                result = await one(task)
                results.append((task, result))
                if on_result is not None:
                    on_result(task, result)

        await asyncio.gather(*(lane() for _ in range(max(1, concurrency))))
    finally:
        await connectors.close()
    return results
