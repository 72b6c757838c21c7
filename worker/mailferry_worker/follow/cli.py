"""`mailferry-worker follow`: the follower Job's entrypoint (flags and env as `sync`, docs/follow.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from mailferry_imap.credentials import DirSecrets

from .. import settings
from ..batchstore import open_batch
from ..logs import log
from ..sync.batch import EXIT_CONFIG
from ..sync.run import RunSettings
from . import metrics
from .serve import FollowSettings, follow_batch


async def follow(args: argparse.Namespace) -> int:
    batch = open_batch(args)
    if batch is None:
        return EXIT_CONFIG
    names, store = batch.names, batch.store
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
        await batch.close()
    log("follow_stopped", exit_code=code, seconds=round(time.monotonic() - start, 3))
    return code
