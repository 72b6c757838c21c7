"""A mailbox run's IMAP connections: the two sides' connectors as the run settings say, logins retried
with backoff while the server's refusal is transient, and each side's folder listing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mailferry_api.mailboxsync import MailboxSyncSpec
from mailferry_imap.client import FolderInfo, ImapClient
from mailferry_imap.credentials import Connector, SecretSource, connectors
from mailferry_imap.errors import ImapError

from ..lease import MailboxLease
from .run import RunSettings, backoff


def connectors_for(
    spec: MailboxSyncSpec, secrets: SecretSource, settings: RunSettings, lease: MailboxLease | None
) -> tuple[Connector, Connector]:
    """Source and destination connectors; with a lease, every destination write is fenced by it."""
    src_c, dst_c = connectors(spec.source, spec.destination, secrets, spec.secret_key, settings.egress_allow)
    src_c.ca_file = dst_c.ca_file = settings.ca_file
    if lease is not None:
        dst_c.guard = lease.check
    return src_c, dst_c


async def open_retrying(c: Connector, settings: RunSettings, log: Callable[..., None]) -> ImapClient:
    attempt = 0
    while True:
        try:
            return await c.open()
        except ImapError as exc:
            if not exc.transient or attempt >= settings.max_retries:
                raise
            delay = backoff(
                attempt,
                settings.backoff_base,
                settings.backoff_cap,
                getattr(exc, "retry_after", None),
            )
            log("connect_retry", side=c.side, reason=exc.reason, delay=round(delay, 2), attempt=attempt)
            attempt += 1
            await asyncio.sleep(delay)


async def listing(c: ImapClient) -> tuple[list[FolderInfo], tuple[str, str | None]]:
    return await c.list_folders(), await c.namespace()
