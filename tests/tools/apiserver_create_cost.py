"""The API server's own CPU per create, by what is created (a measurement, not a test).

Why a MailMigration's start cannot make 10,000 MailboxSyncs in 30 s on 2 cores: each create costs the
kube-apiserver a fixed amount of CPU, whatever the client does. For each kind below this starts a fresh
local API server, creates N objects with the same bodies (those the operator builds, 8 at a time on
kept-alive connections, as `operator/.../kube/bulk.py` does) and prints the API server's CPU seconds
per create (utime + stime from /proc):

  - configmap: a ConfigMap holding the same spec as a string (a built-in type, no CRD machinery);
  - cr-no-schema: a MailboxSync under a CRD whose spec and status preserve unknown fields (no schema,
    no defaults, no CEL): what any custom resource costs;
  - cr-no-cel: the real MailboxSync CRD without its CEL rules;
  - mailboxsync: the real CRD (crds/mailboxsyncs.mailferry.io.yaml).

    python tests/tools/apiserver_create_cost.py [--creates 3000] [--kinds configmap,mailboxsync]
    python tests/tools/apiserver_create_cost.py --pprof /tmp/api.pprof --kinds mailboxsync   # go tool pprof
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests")]

from fixtures.kubeapi import KubeAPI, find_bin_dir, start_envtest  # noqa: E402
from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec  # noqa: E402
from mailferry_operator.mailmigration.resources import mailbox_sync_body, mailbox_sync_template  # noqa: E402

CRD = REPO / "crds" / "mailboxsyncs.mailferry.io.yaml"
NS = "cost"
IN_FLIGHT = 8
ENDPOINT = {"host": "127.0.0.1", "port": 1143, "security": "none", "auth": {"secretRef": {"name": "creds"}}}


def _without_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [_without_cel(v) for v in node]
    return node


def _schemaless(crd: dict[str, Any]) -> dict[str, Any]:
    version = crd["spec"]["versions"][0]
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    version["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {"spec": free, "status": free},
    }
    version.pop("additionalPrinterColumns", None)
    return crd


CRDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]] | None] = {
    "configmap": None,
    "cr-no-schema": _schemaless,
    "cr-no-cel": _without_cel,
    "mailboxsync": lambda crd: crd,
}


def bodies(n: int) -> list[dict[str, Any]]:
    spec = MailMigrationSpec.model_validate({"source": ENDPOINT, "destination": {**ENDPOINT, "port": 2143}})
    template = mailbox_sync_template("cost", spec)
    out = []
    for i in range(n):
        body = mailbox_sync_body(
            "cost", "00000000-0000-0000-0000-000000000001", NS, spec,
            MailboxEntry(source=f"user{i}@example.test"), template,
        )  # fmt: skip
        body["metadata"].pop("ownerReferences")  # no MailMigration here
        out.append(body)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_all(kube: KubeAPI, path: str, objects: list[dict[str, Any]]) -> None:
    ctx = ssl.create_default_context(cafile=str(kube.ca_file))
    headers = {"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"}
    work = iter([json.dumps(o, separators=(",", ":")).encode() for o in objects])
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT, ssl=ctx)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_connection() -> None:
            for data in work:
                url = kube.server + path
                params = {"fieldManager": "mailferry-operator"}
                async with session.post(url, data=data, headers=headers, params=params) as resp:
                    text = await resp.text()
                    if resp.status >= 300:
                        raise SystemExit(f"HTTP {resp.status}: {text[:300]}")

        await asyncio.gather(*(one_connection() for _ in range(IN_FLIGHT)))


def measure(kind: str, n: int, pprof: Path | None) -> tuple[float, float]:
    """(API server CPU ms per create, seconds of wall time) for n creates of `kind`."""
    root = Path(tempfile.mkdtemp(prefix="mf-create-cost-"))
    args = ["--profiling=true"] if pprof else []
    kube = start_envtest(root / "kube", find_bin_dir(), apiserver_args=args)
    try:
        shape = CRDS[kind]
        if shape is not None:
            crds = root / "crds"
            crds.mkdir()
            (crds / CRD.name).write_text(yaml.safe_dump(shape(yaml.safe_load(CRD.read_text()))))
            kube.install_crds(crds)
        kube.kubectl("create", "namespace", NS)
        objects = bodies(n)
        path = f"/apis/mailferry.io/v1alpha1/namespaces/{NS}/mailboxsyncs"
        if shape is None:
            path = f"/api/v1/namespaces/{NS}/configmaps"
            objects = [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": o["metadata"],
                 "data": {"spec": json.dumps(o["spec"])}}
                for o in objects
            ]  # fmt: skip
        apiserver = next(p.pid for p in kube._procs if p.name == "kube-apiserver")
        profiler = None
        if pprof:
            profiler = subprocess.Popen(
                ["curl", "-sk", "-H", f"Authorization: Bearer {kube.token}", "-o", str(pprof),
                 f"{kube.server}/debug/pprof/profile?seconds=15"]
            )  # fmt: skip
        cpu0, t0 = cpu_seconds(apiserver), time.monotonic()
        asyncio.run(create_all(kube, path, objects))
        cpu1, t1 = cpu_seconds(apiserver), time.monotonic()
        if profiler:
            profiler.wait()
        return 1000 * (cpu1 - cpu0) / n, t1 - t0
    finally:
        kube.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--creates", type=int, default=3000)
    p.add_argument("--kinds", default=",".join(CRDS), help=f"comma-separated, of {', '.join(CRDS)}")
    p.add_argument("--pprof", type=Path, help="also write a 15 s CPU profile of the API server here")
    args = p.parse_args()
    print(f"{args.creates} creates per kind, {IN_FLIGHT} in flight; load average {os.getloadavg()[0]:.1f}")
    print("| created | API server CPU per create | wall s |")
    print("|---|---|---|")
    for kind in args.kinds.split(","):
        ms, wall = measure(kind.strip(), args.creates, args.pprof)
        print(f"| {kind} | {ms:.2f} ms | {wall:.1f} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
