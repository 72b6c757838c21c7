"""CPU per MailboxSync create by call concurrency and HTTP pool size (a benchmark, not a test).

Starts the local API server, then creates N MailboxSyncs (bodies from `mailbox_sync_body`) per setting
through `mailferry_kube.client.KubeApi`, and prints process CPU per create and creates per second.

    .venv/bin/python tests/tools/bench_kube_pool.py [--creates 2000] [--settings 48:64,16:24]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.kubeapi import find_bin_dir, start_envtest
from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec
from mailferry_kube.client import KubeApi
from mailferry_operator.mailmigration.resources import mailbox_sync_body, mailbox_sync_template

SPEC = MailMigrationSpec.model_validate(
    {
        "source": {"host": "127.0.0.1", "port": 1, "security": "none", "auth": {"secretRef": {"name": "s"}}},
        "destination": {
            "host": "127.0.0.2",
            "port": 2,
            "security": "none",
            "auth": {"secretRef": {"name": "d"}},
        },
        "mailboxes": [{"source": "a@bench.test"}],
    }
)


async def run(kubeconfig: Path, namespace: str, n: int, concurrency: int, pool: int) -> tuple[float, float]:
    api = KubeApi.from_env(
        str(kubeconfig),
        timeout=60.0,
        connections=pool,
    )
    await api.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    template = mailbox_sync_template("bench", SPEC)
    todo = iter(range(n))
    path = f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/mailboxsyncs"

    async def lane() -> None:
        for i in todo:
            entry = MailboxEntry(source=f"u{i}@bench.test")
            await api.request(
                "POST", path, mailbox_sync_body("bench", "uid-1", namespace, SPEC, entry, template)
            )

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    await api.close()
    return cpu, wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--creates", type=int, default=2000)
    p.add_argument("--settings", default="48:64,16:24,48:64,16:24", help="concurrency:pool,...")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-pool-"))
    kube = start_envtest(work / "kube", find_bin_dir())
    try:
        kube.install_crds()
        for i, setting in enumerate(args.settings.split(",")):
            conc, pool = (int(x) for x in setting.split(":"))
            cpu, wall = asyncio.run(run(kube.kubeconfig, f"bench{i}", args.creates, conc, pool))
            print(
                f"concurrency {conc:3d}, pool {pool:3d}: {args.creates} creates, CPU {cpu:.2f} s "
                f"({1000 * cpu / args.creates:.2f} ms each), {args.creates / wall:.0f}/s",
                flush=True,
            )
    finally:
        kube.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
