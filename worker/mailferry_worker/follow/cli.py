"""`mailferry-worker follow`: the follower Job's entrypoint (flags and env as `sync`, docs/follow.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from mailferry_imap.credentials import DirSecrets
from mailferry_kube.client import KubeApi, KubeError

from .. import settings
from ..checkpoint import FileStatusStore, KubeStatusStore, StatusStore
from ..logs import log
from ..sync.batch import EXIT_CONFIG
from ..sync.run import RunSettings
from . import metrics
from .serve import FollowSettings, follow_batch


async def follow(args: argparse.Namespace) -> int:
    names = [n.strip() for arg in args.mailboxsync for n in arg.split(",") if n.strip()]
    names = names or list(settings.current().mailboxsyncs)
    if not names:
        log("config_error", "error", error="no MailboxSync names (MAILFERRY_MAILBOXSYNCS or --mailboxsync)")
        return EXIT_CONFIG
    api: KubeApi | None = None
    store: StatusStore
    if args.status_dir:
        store = FileStatusStore(Path(args.status_dir))
    else:
        if not args.namespace:
            log("config_error", "error", error="no namespace (MAILFERRY_NAMESPACE or --namespace)")
            return EXIT_CONFIG
        try:
            api = KubeApi.from_env(args.kubeconfig)
        except (KubeError, OSError, ValueError, KeyError) as exc:
            log("config_error", "error", error=f"cannot configure API access: {exc}"[:300])
            return EXIT_CONFIG
        store = KubeStatusStore(api, args.namespace, settings.current().lease_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics.serve(settings.current().metrics_port)
    run = RunSettings.from_env(round=args.round, job_name=args.job_name, connections=args.connections)
    fs = FollowSettings.from_env(args.job_name)
    start = time.monotonic()
    log("follow_started", mailboxsyncs=len(names), namespace=args.namespace, round=args.round, modes=fs.modes)
    try:
        code = await follow_batch(
            names, store, DirSecrets(Path(args.secrets_dir)), run, fs, args.concurrency, stop
        )
    finally:
        if api is not None:
            await api.close()
    log("follow_stopped", exit_code=code, seconds=round(time.monotonic() - start, 3))
    return code
