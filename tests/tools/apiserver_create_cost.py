"""The API server's own CPU per create, by what is created (a measurement, not a test).

Why a MailMigration's start cannot make 10,000 MailboxSyncs in 30 s on 2 cores: each create costs the
kube-apiserver a fixed amount of CPU, whatever the client does. For each kind below this starts a fresh
local API server, creates N objects with the same bodies (those the operator builds, 8 at a time on
kept-alive connections, as the operator does: `KubeApi.create`) and prints the API server's CPU seconds
per create (utime + stime from /proc):

  - configmap: a ConfigMap holding the same spec as a string (a built-in type, no CRD machinery);
  - cr-no-schema: a MailboxSync under a CRD whose spec and status preserve unknown fields (no schema,
    no defaults, no CEL): what any custom resource costs;
  - cr-no-cel: the real MailboxSync CRD without its CEL rules;
  - mailboxsync: the real CRD (crds/mailboxsyncs.mailferry.io.yaml), which applies no defaults, and the
    operator's bodies, which omit the fields equal to the model's defaults;
  - defaulted: as before that change: the CRD rendered with the model's defaults (the API server applies
    them) and bodies holding every field.

    python tests/tools/apiserver_create_cost.py [--creates 3000] [--kinds configmap,mailboxsync]
    python tests/tools/apiserver_create_cost.py --pprof /tmp/api.pprof --kinds mailboxsync   # go tool pprof
    python tests/tools/apiserver_create_cost.py --kinds mailboxsync --status-patches 2   # + status writes

`--status-patches K` then merge-patches each MailboxSync's status once (six folder checkpoints, three
conditions) and K times more as a no-op round's end does, and prints the API server's CPU per one of
those K: the floor of a delta round's cost per mailbox while every mailbox's status is written.
`--small-patches`: those K carry only what a no-op changes (round, lastSyncTime, attempts, jobName).
`--reads`: then the API server's CPU per MailboxSync read, each one read as a worker could: a GET (read
from etcd), a GET with resourceVersion=0 (from the watch cache) and a LIST of 200 names at a time by a
label holding the name (`labelSelector=... in (...)`, from the watch cache).
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests")]

from fixtures.kubeapi import KubeAPI, find_bin_dir, start_envtest  # noqa: E402
from mailferry_api import crd as mailferry_crd  # noqa: E402
from mailferry_api.conditions import set_condition  # noqa: E402
from mailferry_api.mailboxsync import FolderCheckpoint, MailboxSyncStatus  # noqa: E402
from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec  # noqa: E402
from mailferry_operator.mailmigration.resources import (  # noqa: E402
    for_mailbox,
    mailbox_sync_body,
    mailbox_sync_template,
)
from mailferry_worker.checkpoint import status_patch  # noqa: E402

CRD = REPO / "crds" / "mailboxsyncs.mailferry.io.yaml"
MAILBOXSYNC = next(r for r in mailferry_crd.RESOURCES if r.kind == "MailboxSync")
NS = "cost"
IN_FLIGHT = 8
NAME_LABEL = "cost.test/name"
LIST_NAMES = 200
ENDPOINT = {"host": "127.0.0.1", "port": 1143, "security": "none", "auth": {"secretRef": {"name": "creds"}}}


def _without(key: str) -> Callable[[Any], Any]:
    """A CRD transform dropping every `key` of its schema (CEL rules, defaults)."""

    def drop(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: drop(v) for k, v in node.items() if k != key}
        if isinstance(node, list):
            return [drop(v) for v in node]
        return node

    return drop


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
    "cr-no-cel": _without("x-kubernetes-validations"),
    "mailboxsync": lambda crd: crd,
    "defaulted": lambda crd: yaml.safe_load(mailferry_crd.dump(replace(MAILBOXSYNC, api_defaults=True))),
}
WHOLE_BODIES = {"defaulted"}  # kinds whose bodies hold every field, defaults too


def bodies(n: int, whole: bool = False) -> list[dict[str, Any]]:
    """The operator's MailboxSync bodies; `whole`: with every field, defaults too (as before)."""
    spec = MailMigrationSpec.model_validate({"source": ENDPOINT, "destination": {**ENDPOINT, "port": 2143}})
    template = mailbox_sync_template("cost", spec)
    out = []
    for i in range(n):
        entry = MailboxEntry(source=f"user{i}@example.test")
        body = mailbox_sync_body("cost", "00000000-0000-0000-0000-000000000001", NS, spec, entry, template)
        if whole:
            body["spec"] = for_mailbox(template.full, entry)
        body["metadata"].pop("ownerReferences")  # no MailMigration here
        body["metadata"]["labels"][NAME_LABEL] = body["metadata"]["name"]  # for --reads' LIST by names
        out.append(body)
    return out


def noop_status(attempt: int) -> dict[str, Any]:
    """A no-op round's status write, as the worker sends it (checkpoint.status_patch)."""
    st = MailboxSyncStatus(phase="Synced", round=attempt, attempts=attempt, job_name=f"cost-r{attempt}-b0")
    st.folders = [
        FolderCheckpoint(
            name=f, destination=f, uid_validity=1_700_000_000, last_uid=2, uid_next=3, highest_mod_seq=5,
            dest_uid_validity=1_700_000_001, dest_uid_next=3, floor_uid=2, owned="1:2", messages=2, copied=2,
            bytes=1600,
        )
        for f in ("INBOX", "Sent", "Drafts", "Archive", "Projects", "Receipts")
    ]  # fmt: skip
    for kind in ("Ready", "Synced", "Stalled"):
        value = "False" if kind == "Stalled" else "True"
        st.conditions = set_condition(st.conditions, kind, value, "Synced", "copied 0 message(s) in this run")
    return {"status": status_patch(st)}


def small_noop_status(attempt: int) -> dict[str, Any]:
    """Only what a no-op round changes (round, lastSyncTime, attempts, jobName), the rest as stored."""
    full = noop_status(attempt)["status"]
    return {"status": {k: full[k] for k in ("round", "attempts", "jobName")} | {"lastSyncTime": now_text()}}


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def patch_statuses(
    kube: KubeAPI, path: str, names: list[str], times: int, body: Callable[[int], dict[str, Any]]
) -> None:
    requests = [
        (f"{path}/{name}/status", json.dumps(body(k + 1)).encode()) for k in range(times) for name in names
    ]
    await send_all(kube, "PATCH", requests, "application/merge-patch+json", "mailferry-worker")


async def send_all(
    kube: KubeAPI, method: str, requests: list[tuple[str, bytes]], content_type: str, manager: str
) -> None:
    """Each (path, body), IN_FLIGHT at a time on kept-alive connections; exit on any error."""
    ctx = ssl.create_default_context(cafile=str(kube.ca_file))
    headers = {"Authorization": f"Bearer {kube.token}", "Content-Type": content_type}
    work = iter(requests)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT, ssl=ctx)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_connection() -> None:
            for path, data in work:
                params = {"fieldManager": manager} if method != "GET" else None
                async with session.request(
                    method, kube.server + path, data=data or None, headers=headers, params=params
                ) as resp:
                    text = await resp.text()
                    if resp.status >= 300:
                        raise SystemExit(f"HTTP {resp.status}: {text[:300]}")

        await asyncio.gather(*(one_connection() for _ in range(IN_FLIGHT)))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read_all(kube: KubeAPI, path: str, names: list[str], how: str) -> None:
    if how == "list":
        requests = [
            (f"{path}?labelSelector={NAME_LABEL}+in+({','.join(names[i : i + LIST_NAMES])})", b"")
            for i in range(0, len(names), LIST_NAMES)
        ]
    else:
        query = "?resourceVersion=0" if how == "get-cached" else ""
        requests = [(f"{path}/{name}{query}", b"") for name in names]
    await send_all(kube, "GET", requests, "application/json", "mailferry-worker")


async def create_all(kube: KubeAPI, path: str, objects: list[dict[str, Any]]) -> None:
    requests = [(path, json.dumps(o, separators=(",", ":")).encode()) for o in objects]
    await send_all(kube, "POST", requests, "application/json", "mailferry-operator")


def measure(
    kind: str, n: int, pprof: Path | None, patches: int = 0, small: bool = False, reads: bool = False
) -> tuple[float, float, float | None, dict[str, float]]:
    """(API server CPU ms per create, seconds of wall time, ms per status patch) for n creates of `kind`
    and then `patches` status patches of each (None: none asked, or a ConfigMap). The first status
    write (the whole status) is not counted; `small`: the counted ones carry only what a no-op changes;
    `reads`: also ms per object read, by how (read_all)."""
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
        objects = bodies(n, whole=kind in WHOLE_BODIES)
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
        per_patch = None
        per_read: dict[str, float] = {}
        names = [o["metadata"]["name"] for o in objects]
        if (patches or reads) and shape is not None:
            asyncio.run(patch_statuses(kube, path, names, 1, noop_status))
        for how in ("get", "get-cached", "list") if reads else ():
            before = cpu_seconds(apiserver)
            asyncio.run(read_all(kube, path, names, how))
            per_read[how] = 1000 * (cpu_seconds(apiserver) - before) / n
        if patches and shape is not None:
            cpu2 = cpu_seconds(apiserver)
            body = small_noop_status if small else noop_status
            asyncio.run(patch_statuses(kube, path, names, patches, lambda k: body(k + 1)))
            per_patch = 1000 * (cpu_seconds(apiserver) - cpu2) / (n * patches)
        return 1000 * (cpu1 - cpu0) / n, t1 - t0, per_patch, per_read
    finally:
        kube.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--creates", type=int, default=3000)
    p.add_argument("--kinds", default=",".join(CRDS), help=f"comma-separated, of {', '.join(CRDS)}")
    p.add_argument("--pprof", type=Path, help="also write a 15 s CPU profile of the API server here")
    p.add_argument("--status-patches", type=int, default=0, help="then patch each one's status this often")
    p.add_argument("--small-patches", action="store_true", help="status patches of a no-op's changes only")
    p.add_argument("--reads", action="store_true", help="then ms per read: GET, cached GET, LIST by names")
    args = p.parse_args()
    print(f"{args.creates} creates per kind, {IN_FLIGHT} in flight; load average {os.getloadavg()[0]:.1f}")
    print("| created | API server CPU per create | wall s | per status patch | per read |")
    print("|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        ms, wall, patch, reads = measure(
            kind.strip(), args.creates, args.pprof, args.status_patches, args.small_patches, args.reads
        )
        per_patch = "-" if patch is None else f"{patch:.2f} ms"
        per_read = ", ".join(f"{how} {v:.2f} ms" for how, v in reads.items()) or "-"
        print(f"| {kind} | {ms:.2f} ms | {wall:.1f} | {per_patch} | {per_read} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
