"""The batch a worker entrypoint serves: its MailboxSync names and the status store behind them.

Shared by `sync` and `follow`, so both read the same flags and env and both draw on the Job's share
of the migration's budgets (issue 15).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mailferry_api.budgets import JobShare
from mailferry_kube.client import KubeApi, KubeError

from . import settings
from .checkpoint import FileStatusStore, KubeStatusStore, StatusStore
from .logs import log
from .sync.budget import BudgetedStore
from .sync.pacing import set_job_share


@dataclass
class Batch:
    names: list[str]
    store: StatusStore
    api: KubeApi | None  # closed by the caller when set

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()


def open_batch(args: argparse.Namespace) -> Batch | None:
    """The batch named by the flags (or MAILFERRY_MAILBOXSYNCS); None after logging a configuration error."""
    names = [n.strip() for arg in args.mailboxsync for n in arg.split(",") if n.strip()]
    names = names or list(settings.current().mailboxsyncs)
    if not names:
        log("config_error", "error", error="no MailboxSync names (MAILFERRY_MAILBOXSYNCS or --mailboxsync)")
        return None
    api: KubeApi | None = None
    store: StatusStore
    if args.status_dir:
        store = FileStatusStore(Path(args.status_dir))
    else:
        if not args.namespace:
            log("config_error", "error", error="no namespace (MAILFERRY_NAMESPACE or --namespace)")
            return None
        try:
            api = KubeApi.from_env(args.kubeconfig)
        except (KubeError, OSError, ValueError, KeyError) as exc:
            log("config_error", "error", error=f"cannot configure API access: {exc}"[:300])
            return None
        # A round's run reads each MailboxSync first from the API server's watch cache (checkpoint.py); a
        # follower reads once per mailbox for hours of serving it: from etcd.
        store = KubeStatusStore(
            api, args.namespace, settings.current().lease_seconds, first_read_cached=args.command == "sync"
        )
    # The Job's share of the migration's budgets, and the mailboxes' own budgets across Jobs.
    share = JobShare.from_json(settings.current().budget)
    set_job_share(share)
    return Batch(names, BudgetedStore(store, share), api)
