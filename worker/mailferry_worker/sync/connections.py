"""A mailbox run's IMAP connections: the two sides' connectors as the run settings say, logins retried
with backoff while the server's refusal is transient, each side's folder listing, and where a run's
connections come from and go back to (``Sessions``: a round's own, or a follower's kept ones)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from mailferry_api.mailboxsync import MailboxSyncSpec
from mailferry_imap.client import FolderInfo, ImapClient
from mailferry_imap.credentials import Connector, SecretSource, Side, connectors
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


Listing = tuple[list[FolderInfo], tuple[str, str | None]]  # folders, (namespace prefix, delimiter)


async def listing(c: ImapClient) -> Listing:
    return await c.list_folders(), await c.namespace()


class Sessions(Protocol):
    """Where a run's logged-in connections and folder listings come from, and where they go after it."""

    async def take(self, c: Connector) -> ImapClient | None:
        """A logged-in connection of ``c``'s side to use instead of a new login (None: log in)."""
        ...

    async def give_back(self, side: Side, client: ImapClient) -> None:
        """The run is done with ``client`` (a closed one is dropped)."""
        ...

    async def listing(self, side: Side, client: ImapClient) -> Listing: ...

    def forget_listings(self) -> None:
        """The folder hierarchy may have changed: list again next time."""
        ...


class OwnSessions:
    """A round's run: its own logins, closed at its end; both sides listed once per run."""

    async def take(self, c: Connector) -> ImapClient | None:
        return None

    async def give_back(self, side: Side, client: ImapClient) -> None:
        await client.close()

    async def listing(self, side: Side, client: ImapClient) -> Listing:
        return await listing(client)

    def forget_listings(self) -> None:
        return None
