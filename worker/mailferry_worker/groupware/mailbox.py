"""One MailboxSync of a batch: its mail (the sync engine), then its contacts and calendars, as
`spec.content` says. The mail engine plans from the copy read here (its first write checks it is still
current, checkpoint.py); contacts and calendars read it again under their own hold of the lease."""

from __future__ import annotations

from dataclasses import replace

from mailferry_api.mailboxsync import MailboxSyncSpec, MailboxSyncStatus
from mailferry_imap.credentials import SecretSource

from ..checkpoint import StatusStore
from ..sync.engine import MailboxRunner
from ..sync.run import MailboxResult, RunSettings

Loaded = tuple[MailboxSyncSpec, MailboxSyncStatus, int | None]


class PreloadedStore:
    """A StatusStore whose next `load` of one name answers with what was already read (no second GET)."""

    def __init__(self, inner: StatusStore, name: str, loaded: Loaded) -> None:
        self.inner, self.name = inner, name
        self.loaded: Loaded | None = loaded

    def __getattr__(self, attr: str) -> object:  # lease() and whatever else the store offers
        return getattr(self.inner, attr)

    async def load(self, name: str) -> Loaded:
        if name == self.name and self.loaded is not None:
            loaded, self.loaded = self.loaded, None
            return loaded
        return await self.inner.load(name)

    async def save(self, name: str, status: MailboxSyncStatus) -> None:
        await self.inner.save(name, status)


async def run_mailbox(
    name: str, store: StatusStore, secrets: SecretSource, settings: RunSettings
) -> MailboxResult:
    try:
        loaded = await store.load(name)
    except Exception:  # the mail runner reads it again and reports why it cannot (MailboxSyncUnreadable)
        return await MailboxRunner(name, store, secrets, settings).run()
    spec = loaded[0]
    if "mail" in spec.content:
        shared = PreloadedStore(store, name, loaded)
        mail = await MailboxRunner(name, shared, secrets, settings).run()  # type: ignore[arg-type]
    else:
        mail = MailboxResult(name, "synced")
    if not spec.groupware_kinds() or mail.outcome in ("config", "suspended", "busy", "lost"):
        return mail
    from .runner import GroupwareRunner  # here: a mail-only round never loads the DAV clients (httpx)

    # Contacts/calendars read the MailboxSync again under their lease (the read above preceded it).
    groupware = await GroupwareRunner(name, store, secrets, settings.ca_file).run()
    if groupware.outcome == "transient" and mail.outcome == "synced":
        return replace(mail, outcome="transient", reason=groupware.reason)
    if groupware.outcome in ("busy", "lost"):
        return replace(mail, outcome=groupware.outcome, reason=groupware.reason)
    return mail
