"""`mailferry-worker`: the Job entrypoint.

    mailferry-worker sync                      # in a Job: everything from the env (see docs/job-contract.md)
    mailferry-worker sync --mailboxsync NAME [--mailboxsync NAME2 ...] --namespace NS --secrets-dir DIR
        [--kubeconfig FILE] [--round N] [--concurrency N] [--connections N]
    mailferry-worker follow ...                # the same flags: serve the batch until SIGTERM (follow/)

Exit codes: 0 every mailbox finished or failed permanently (reason in its status); 1 a transient
failure (retry helps); 2 configuration error (MailboxSync unreadable, API unreachable); 3 another worker
holds a mailbox of the batch (AlreadyRunning) or took it over (LeaseLost): this one wrote nothing for it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mailferry_imap.credentials import DirSecrets

from . import settings
from .batchstore import open_batch
from .logs import log
from .sync.batch import EXIT_CONFIG, run_batch
from .sync.run import RunSettings


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak: Linux keeps it across exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mailferry-worker", description="mailferry IMAP sync worker")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sync", help="sync a batch of MailboxSyncs")
    s.add_argument(
        "--mailboxsync", action="append", default=[], help="MailboxSync name (repeatable, or a,b,c)"
    )
    s.add_argument("--namespace", default=settings.current().namespace or None)
    s.add_argument("--secrets-dir", default=settings.current().secrets_dir)
    s.add_argument("--kubeconfig", default=None)
    s.add_argument("--status-dir", default=None, help="development: MailboxSyncs as JSON files here, no API")
    s.add_argument("--round", type=int, default=settings.current().round)
    s.add_argument("--concurrency", type=int, default=settings.current().mailbox_concurrency)
    s.add_argument("--connections", type=int, default=None, help="override spec.connectionsPerMailbox")
    s.add_argument("--job-name", default=settings.current().job_name or None)
    # Live follow mode (issue 20): the same batch flags, served until SIGTERM.
    f = sub.add_parser("follow", help="follow a batch of MailboxSyncs (NOTIFY/IDLE) until SIGTERM")
    for action in s._actions[1:]:
        f._add_action(action)
    return p


async def _sync(args: argparse.Namespace) -> int:
    batch = open_batch(args)
    if batch is None:
        return EXIT_CONFIG
    names, store = batch.names, batch.store
    run = RunSettings.from_env(round=args.round, job_name=args.job_name, connections=args.connections)
    start = time.monotonic()
    log("batch_started", mailboxsyncs=names, namespace=args.namespace, round=args.round)
    try:
        code, results = await run_batch(
            names, store, DirSecrets(Path(args.secrets_dir)), run, args.concurrency
        )
    finally:
        await batch.close()
    elapsed = time.monotonic() - start
    copied = sum(r.copied for r in results)
    log(
        "batch_finished",
        exit_code=code,
        seconds=round(elapsed, 3),
        copied=copied,
        bytes=sum(r.bytes for r in results),
        messages_per_second=round(copied / elapsed, 1) if elapsed > 0 else 0,
        peak_rss_mb=round(_peak_rss_mb(), 1),
        outcomes={r.name: r.outcome for r in results},
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sync":
        return asyncio.run(_sync(args))
    if args.command == "follow":
        from .follow.cli import follow

        return asyncio.run(follow(args))
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
