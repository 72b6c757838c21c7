"""Run a batch of MailboxSyncs with bounded concurrency; map outcomes to the Job exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mailferry_imap.credentials import SecretSource

from ..checkpoint import StatusStore
from ..groupware.mailbox import run_mailbox
from .run import MailboxResult, RunSettings

EXIT_OK = 0
EXIT_RETRY = 1
EXIT_CONFIG = 2
EXIT_BUSY = 3  # another worker holds a mailbox of the batch (AlreadyRunning) or took it over (LeaseLost)


async def run_batch(
    names: Sequence[str],
    store: StatusStore,
    secrets: SecretSource,
    settings: RunSettings,
    concurrency: int,
) -> tuple[int, list[MailboxResult]]:
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(name: str) -> MailboxResult:
        async with sem:
            return await run_mailbox(name, store, secrets, settings)  # mail, then contacts/calendars

    results = await asyncio.gather(*(one(n) for n in names))
    return exit_code(results), list(results)


def exit_code(results: Sequence[MailboxResult]) -> int:
    if any(r.outcome == "config" for r in results):
        return EXIT_CONFIG
    if any(r.outcome == "transient" for r in results):
        return EXIT_RETRY
    if any(r.outcome in ("busy", "lost") for r in results):
        return EXIT_BUSY
    return EXIT_OK
