"""`make bench-operator`: how the operator copes with a 5,000-row inventory (a benchmark, not a test).

Starts the local API server and two Dovecots (source, destination) with the same 5,000 users (two
servers: the operator refuses a migration that would copy a mailbox onto itself), puts a 5,000-row CSV
inventory in a ConfigMap, applies a MailMigration, and measures with the operator running as a process:
  - seconds until every MailboxSync exists,
  - seconds until validation (10,000 IMAP logins + source scan) is done,
  - seconds until the first batch Job exists,
  - the operator's peak RSS (VmHWM) and CPU seconds: at the first Job, and once every MailboxSync exists
    and validation is done (the whole start's work: per mailbox, the figure to compare across changes),
  - the API requests made meanwhile by verb and resource (kube-apiserver's own counter; the harness's
    own polling — GET mailmigrations, LIST mailboxsyncs/jobs, on one kept-alive connection — is in it),
  - CPU seconds by process tree (operator, API server, etcd, Dovecots, harness): in the first 30 s,
    until every MailboxSync exists, and in all (proctree_cpu.py).
No job runner runs: the Jobs are created, not executed.

    python tests/tools/demo_bench.py [--rows 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.bench.delta_round
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demolib as d
from proctree_cpu import CpuSampler
from tests.bench.delta_round import api_requests, diff

from fixtures.dovecot import Dovecot
from fixtures.kubeapi import find_bin_dir, start_envtest
from mailferry_kube.client import connection

NS = "bench"
NAME = "bench"
PROGRESS_EVERY = 10.0  # seconds between progress lines (MailboxSyncs so far) while they are created


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_mailboxsyncs(kube: d.KubeAPI) -> int:
    """The same count through kubectl, for harnesses without a Poller (tests/chaos/load.py)."""
    path = f"/apis/mailferry.io/v1alpha1/namespaces/{NS}/mailboxsyncs?limit=1"
    return listed_count(json.loads(kube.kubectl("get", "--raw", path).stdout))


def listed_count(data: dict[str, Any]) -> int:
    """The size of a list answered with limit=1: its items + remainingItemCount."""
    return len(data.get("items", [])) + int(data.get("metadata", {}).get("remainingItemCount") or 0)


class Poller:
    """The harness's reads, on one kept-alive HTTPS connection: a kubectl run per read (Go start-up and
    API discovery, ~12 runs a second) took a large share of the 2 cores the measured processes share."""

    def __init__(self, kube: d.KubeAPI) -> None:
        server, tls, token = connection(str(kube.kubeconfig))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server, verify=tls, headers=headers, timeout=30)

    def get(self, path: str) -> dict[str, Any]:
        resp = self.http.get(path)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def count_mailboxsyncs(self) -> int:
        """One cheap list call (limit=1): items + remainingItemCount."""
        return listed_count(self.get(f"/apis/mailferry.io/v1alpha1/namespaces/{NS}/mailboxsyncs?limit=1"))

    def migration_status(self) -> dict[str, Any]:
        found = self.get(f"/apis/mailferry.io/v1alpha1/namespaces/{NS}/mailmigrations/{NAME}")
        return dict(found.get("status") or {})

    def worker_jobs(self) -> list[dict[str, Any]]:
        path = f"/apis/batch/v1/namespaces/{NS}/jobs?labelSelector=mailferry.io%2Fmigration%3D{NAME}"
        return list(self.get(path).get("items") or [])


def print_cpu_split(sampler: CpuSampler, all_syncs: float | None) -> None:
    """CPU seconds per process tree (operator, API server, etcd, both Dovecots, the harness with its
    kubectl polling): in the first 30 s, until every MailboxSync existed, and in all."""
    windows = [("first 30 s", 30.0)]
    if all_syncs is not None:
        windows.append((f"to every MailboxSync ({all_syncs:.0f} s)", all_syncs))
    windows.append(("whole run", float("inf")))
    cuts = [(label, sampler.at(t)) for label, t in windows]
    groups = sorted(cuts[-1][1], key=lambda g: -cuts[-1][1][g])
    print("CPU seconds by process      " + " | ".join(label for label, _ in cuts))
    for group in groups:
        if cuts[-1][1][group] >= 0.05:
            print(f"  {group:<26} " + " | ".join(f"{cut.get(group, 0.0):7.1f}" for _, cut in cuts))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--keep", action="store_true", help="keep the work dir (operator log) afterwards")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailferry-bench-"))
    parts: list[object] = []
    try:
        kube = start_envtest(work / "kube", find_bin_dir())
        parts.append(kube)
        kube.install_crds()
        org = d.make_org(args.rows, domain="bench.test", prefix="u")
        servers = []
        for role in ("source", "destination"):
            (work / role).mkdir()
            server = Dovecot(work / role, f"bench-{role}")
            parts.append(server)
            server.start()
            server.add_users(dict(org.users))
            servers.append(server)
        src, dst = servers
        csv = "source,destination,secretKey\n" + "".join(
            f"{a},{a},{a.replace('@', '_')}\n" for a in org.addresses
        )
        kube.kubectl("create", "namespace", NS)
        operator = d.OperatorProcess(kube, [NS], work).start()
        parts.append(operator)
        cm = d.inventory_manifest("inventory", NS, csv)
        manifest = d.migration_manifest(
            NAME,
            NS,
            src,
            dst,
            inventory_configmap="inventory",
            batchSize=50,
            maxConcurrentJobs=4,
            deltaInterval="1h",
        )
        manifest["spec"]["source"]["auth"]["secretRef"]["name"] = "creds"
        manifest["spec"]["destination"]["auth"]["secretRef"]["name"] = "creds"
        d.apply(kube, cm, d.secret_manifest("creds", NS, d.credentials(org)), verb=("create",))
        print(
            f"inventory: {args.rows} rows ({len(csv) // 1024} KiB CSV); operator pid {operator.pid}",
            flush=True,
        )
        requests_before = api_requests(kube)
        sampler = CpuSampler(name_of=lambda pid, comm: "operator" if pid == operator.pid else comm)
        sampler.start()
        sampler.start_clock()
        poll = Poller(kube)
        t0 = time.monotonic()
        d.apply(kube, manifest)
        all_syncs = first_job = validated = None
        cpu_first_job = 0.0
        next_progress = PROGRESS_EVERY
        while time.monotonic() - t0 < 900:
            now = time.monotonic() - t0
            if all_syncs is None:
                count = poll.count_mailboxsyncs()
                if now >= next_progress:
                    print(f"  {now:5.1f}s: {count} MailboxSyncs", flush=True)
                    next_progress += PROGRESS_EVERY
                if count >= args.rows:
                    all_syncs = now
                    print(f"  all {args.rows} MailboxSyncs exist after {now:.1f}s", flush=True)
            st = poll.migration_status()
            if validated is None and (d.condition({"status": st}, "Validated") or {}).get("status") == "True":
                validated = now
                print(
                    f"  validation done after {now:.1f}s (scan: {json.dumps(st.get('scan', {}))[:160]})",
                    flush=True,
                )
            if first_job is None and poll.worker_jobs():
                first_job = now
                cpu_first_job = cpu_seconds(operator.pid)
                print(f"  first batch Job exists after {now:.1f}s", flush=True)
            if all_syncs is not None and first_job is not None and validated is not None:
                break
            time.sleep(0.25)
        time.sleep(2)
        sampler.stop()
        rss = peak_rss_mb(operator.pid)
        cpu = cpu_seconds(operator.pid)
        requests = diff(api_requests(kube), requests_before)
        jobs = poll.worker_jobs()
        print()
        print(f"rows                         {args.rows}")
        print(f"every MailboxSync exists     {all_syncs if all_syncs is None else round(all_syncs, 1)} s")
        print(f"validation finished          {validated if validated is None else round(validated, 1)} s")
        print(f"first batch Job exists       {first_job if first_job is None else round(first_job, 1)} s")
        print(f"Jobs created (max 4 at once) {len(jobs)}")
        print(f"operator peak RSS            {rss:.0f} MB")
        print(f"operator CPU at first Job    {cpu_first_job:.1f} s")
        print(f"operator CPU (utime+stime)   {cpu:.1f} s = {1000 * cpu / args.rows:.1f} ms per mailbox")
        top = sorted(requests.items(), key=lambda kv: -kv[1])[:8]
        print("API requests                 " + ", ".join(f"{k} {v}" for k, v in top))
        print(f"load average                 {os.getloadavg()[0]:.1f}")
        print_cpu_split(sampler, all_syncs)
        ok = first_job is not None and first_job <= 5 and all_syncs is not None and all_syncs <= 30
        print(
            "target (first Job <= 5 s, every MailboxSync <= 30 s, issue 20): "
            + ("met" if ok and rss < 300 else "NOT met")
        )
        return 0
    finally:
        for part in reversed(parts):
            try:
                if isinstance(part, Dovecot):
                    part.destroy()
                else:
                    part.stop()  # type: ignore[attr-defined]
            except Exception as exc:
                print(f"teardown: {exc}", file=sys.stderr)
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
