"""Was an interrupted notice delivered? Look for its Message-ID in the recipient's INBOX, on both sides.

A crash between handing a message to the SMTP server and writing `sent` in the ledger leaves an
`intent` line. The message went either to the old provider (before the MX switch) or to the new
one (after), and the migration may already have copied it across: it is searched on the source and
the destination, with the migration's own credentials (the IMAP Secrets, read through the API).
Found anywhere: delivered. Not found: not delivered *yet* - the SMTP server may still hold it in its
queue, so it is sent again only after `spec.sending.inDoubtGrace`. A lookup that fails (login,
network) decides nothing: the recipient stays in doubt and is looked up again in the next run.
"""

from __future__ import annotations

import logging
from typing import Literal

from mailferry_api.imap import ImapEndpoint, default_secret_key
from mailferry_api.mailmigration import MailboxEntry
from mailferry_imap import ImapError
from mailferry_imap.credentials import Connector, Side

from .. import settings
from ..kube import client as kube

log = logging.getLogger("mailferry.notices")

Found = Literal["found", "absent", "unknown"]


class OperatorSecrets:
    """Secret values through the operator's shared reader (one GET for overlapping reads); a Secret without
    the consent label reads as absent. Also used for the replies mailbox (replies.py)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    async def get(self, side: Side, secret_name: str, key: str) -> str | None:
        values = await kube.read_secret_values(self.namespace, secret_name)
        if values is None or values.refused is not None:  # absent, or not opted in (kube.consent)
            return None
        value = values.values.get(key)
        return value.rstrip("\r\n") if value is not None else None


async def _search(connector: Connector, msgid: str) -> bool:
    client = await connector.open()
    try:
        await client.select("INBOX", readonly=True)
        return bool(await client.search_message_id(msgid))
    finally:
        await client.logout()


async def delivered(
    namespace: str, source: ImapEndpoint, destination: ImapEndpoint, entry: MailboxEntry, msgid: str
) -> Found:
    secrets = OperatorSecrets(namespace)
    ca_file = settings.current().ca_file or None
    sides: list[tuple[Side, ImapEndpoint, str]] = [
        ("destination", destination, entry.destination or entry.source),
        ("source", source, entry.source),
    ]
    answered = 0
    for side, endpoint, username in sides:
        fallback = default_secret_key(entry.source)  # as the MailboxSync's worker reads it
        connector = Connector(side, endpoint, username, secrets, entry.secret_key, fallback, ca_file)
        try:
            if await _search(connector, msgid):
                return "found"
            answered += 1
        except (ImapError, OSError, TimeoutError) as exc:
            log.info("notice lookup on the %s of %s failed: %s", side, entry.source, type(exc).__name__)
    return "absent" if answered == len(sides) else "unknown"
