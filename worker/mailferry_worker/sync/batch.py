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

    results = await written_if_needed(list(await asyncio.gather(*(one(n) for n in names))))
    return exit_code(results), results


async def written_if_needed(results: list[MailboxResult]) -> list[MailboxResult]:
    """Only exit 0 proves the no-ops left unwritten (sync/noopproof.py): a batch that will exit otherwise
    writes each of them now."""
    if exit_code(results) == EXIT_OK:
        return results
    return [await r.write_proof() if r.write_proof is not None else r for r in results]


def exit_code(results: Sequence[MailboxResult]) -> int:
    if any(r.outcome == "config" for r in results):
        return EXIT_CONFIG
    if any(r.outcome == "transient" for r in results):
        return EXIT_RETRY
    if any(r.outcome in ("busy", "lost") for r in results):
        return EXIT_BUSY
    return EXIT_OK
