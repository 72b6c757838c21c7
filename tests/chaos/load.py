"""`make chaos CHAOS_ARGS="--scenario load"`: two peered operator replicas under load (opt-in scenario).

Real kube-apiserver + etcd, two `mailferry-operator` processes with `--peering load` (Kopf's KopfPeering CRD
rendered from the Helm chart), no job runner and approval required (no Job runs: the operator is measured,
not IMAP; source/destination point at a closed loopback port, so validation fails, which is part of the load).

  1. one MailMigration with an N-row inventory ConfigMap (`--rows`, default 10,000): time until every
     MailboxSync exists;
  2. M MailMigrations at once (`--migrations`, default 50) with small inline mailbox lists: reconcile
     latency (creation -> status.phase first seen by polling every 0.25 s), p50/p95/p99.

Figures: peak RSS (VmHWM) and CPU seconds (utime+stime) of each operator from /proc, which replica acted
(log lines with handler activity), MailboxSync count vs rows (no duplicates), every migration's status
written, 409 Conflicts in the operator logs, and API requests/s from the API server's
`apiserver_request_total` (before/after, minus this harness's own requests).
Reuses demo_bench.py (count_mailboxsyncs, peak_rss_mb) and demolib.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "tools"))

import demo_bench as bench  # noqa: E402
import demolib as dl  # noqa: E402

from fixtures.kubeapi import find_bin_dir, start_envtest  # noqa: E402

NS = bench.NS
PEERING = "load"
HARNESS_REQUESTS = [0]  # API requests this harness made while measuring (subtracted from the total)


def say(msg: str) -> None:
    print(msg, flush=True)


class PeeredOperator(dl.OperatorProcess):
    """demolib's OperatorProcess with `--peering NAME --priority P` and its own log file."""

    def __init__(self, kube: Any, namespaces: list[str], log_dir: Path, name: str, priority: int) -> None:
        super().__init__(
            kube,
            namespaces,
            log_dir,
            name=name,
            log_level=os.environ.get("MAILFERRY_CHAOS_OPERATOR_LOG_LEVEL", "info"),
            extra_args=["--peering", PEERING, "--priority", str(priority)],
        )
        self.priority = priority


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def api_requests(kube: Any) -> int:
    text = kube.kubectl("get", "--raw", "/metrics").stdout
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("apiserver_request_total{")
        )
    )


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens here afterwards: connections are refused
    return port


def list_migrations(kube: Any) -> list[dict[str, Any]]:
    HARNESS_REQUESTS[0] += 1
    return list(dl.get(kube, "mailmigrations.mailferry.io", NS)["items"])


def activity(log: Path) -> dict[str, int]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return {
        "object_log_lines": len(re.findall(r"kopf\.objects ", text)),
        "mailboxsyncs_created": sum(int(n) for n in re.findall(r"MailboxSyncs: (\d+) created", text)),
        "conflicts_409": len(re.findall(r"\b409\b|Conflict(?!ing)", text)),
    }


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))], 2) if s else float("nan")


def install_peering(kube: Any, work: Path) -> None:
    """The namespace and Kopf's KopfPeering CRD + object, rendered from the chart."""
    chart = TESTS.parent / "charts" / "mailferry"
    rendered = kube.helm(
        "template",
        "mf",
        str(chart),
        "--namespace",
        NS,
        "--set",
        "operator.peering.enabled=true",
        "--set",
        f"operator.peering.name={PEERING}",
        "--show-only",
        "templates/kopf-peering-crds.yaml",
    ).stdout
    crd = work / "peering.yaml"
    crd.write_text(rendered)
    kube.kubectl("create", "namespace", NS)
    kube.kubectl("apply", "-f", str(crd), check=False)  # the CRD first; its KopfPeering once it is served
    kube.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    kube.kubectl("apply", "-f", str(crd))


def create_inventory(kube: Any, rows: int) -> None:
    """Secret `creds` and ConfigMap `inventory` with `rows` mailboxes u*@load.test."""
    org = dl.make_org(rows, domain="load.test", prefix="u")
    rows_csv = "".join(f"{a},{a},{a.replace('@', '_')}\n" for a in org.addresses)
    csv = "source,destination,secretKey\n" + rows_csv
    dl.apply(
        kube,
        dl.secret_manifest("creds", NS, dl.credentials(org)),
        dl.inventory_manifest("inventory", NS, csv),
        verb=("create",),
    )


DEAD_DESTINATION = SimpleNamespace(port=closed_port())


def migration_spec(name: str, dead: Any, **kw: Any) -> dict[str, Any]:
    """A MailMigration needing approval, both sides at closed ports (validation fails: part of the load).
    Two different ports: the operator refuses a source that is the destination (SourceIsDestination)."""
    mf = dl.migration_manifest(
        name,
        NS,
        dead,
        DEAD_DESTINATION,
        approval={"required": True, "approved": False},
        deltaInterval="1h",
        **kw,
    )
    for side in ("source", "destination"):
        mf["spec"][side]["auth"]["secretRef"]["name"] = "creds"
    return mf


def scenario_load(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    rows, m = args.rows, args.migrations
    res: dict[str, Any] = {"rows": rows, "migrations": m}
    kube = start_envtest(work / "kube", find_bin_dir())
    stack: list[Any] = [kube]
    try:
        kube.install_crds()
        install_peering(kube, work)
        dead = SimpleNamespace(port=closed_port())
        create_inventory(kube, rows)
        # Different priorities: with equal ones Kopf pauses both replicas ("Possibly conflicting operators").
        ops = [
            PeeredOperator(kube, [NS], work, f"operator-{i}", prio).start() for i, prio in ((1, 100), (2, 50))
        ]
        stack += ops
        time.sleep(3)  # let the peers see each other
        cpu0 = {o.name: cpu_seconds(o.pid) for o in ops}
        req0 = api_requests(kube)
        HARNESS_REQUESTS[0] = 0
        t_start = time.monotonic()

        def spec(name: str, **kw: Any) -> dict[str, Any]:
            return migration_spec(name, dead, **kw)

        # (1) one MailMigration with the big inventory
        t0 = time.monotonic()
        dl.apply(kube, spec("big", inventory_configmap="inventory", batchSize=50))
        all_syncs = None
        while time.monotonic() - t0 < args.timeout:
            HARNESS_REQUESTS[0] += 1
            if bench.count_mailboxsyncs(kube) >= rows:
                all_syncs = time.monotonic() - t0
                break
            time.sleep(0.5)
        res["seconds_until_all_mailboxsyncs"] = None if all_syncs is None else round(all_syncs, 1)
        say(f"  (1) {rows} rows: every MailboxSync after {res['seconds_until_all_mailboxsyncs']} s")
        t1 = time.monotonic()
        while time.monotonic() - t1 < 120:  # the big one's status
            if (dl.migration(kube, NS, "big").get("status") or {}).get("phase"):
                break
            time.sleep(0.5)
        res["big_phase"] = (dl.migration(kube, NS, "big").get("status") or {}).get("phase")

        # (2) M MailMigrations at once
        docs = [
            spec(f"m{i:03d}", mailboxes=[f"u{j}@load.test" for j in range(i % 5 * 3, i % 5 * 3 + 3)])
            for i in range(m)
        ]
        created = time.monotonic()
        dl.apply(kube, *docs, verb=("create",))
        created_end = time.monotonic()
        seen: dict[str, float] = {}
        while time.monotonic() - created < args.timeout and len(seen) < m:
            now = time.monotonic()
            for mm in list_migrations(kube):
                n = mm["metadata"]["name"]
                if n != "big" and n not in seen and (mm.get("status") or {}).get("phase"):
                    seen[n] = now - created
            time.sleep(0.25)
        lat = list(seen.values())
        res["latency_seconds"] = {
            "p50": pct(lat, 50),
            "p95": pct(lat, 95),
            "p99": pct(lat, 99),
            "max": round(max(lat), 2) if lat else None,
            "create_call_seconds": round(created_end - created, 2),
        }
        res["migrations_with_status"] = len(seen)
        say(f"  (2) {m} migrations: status on {len(seen)}; latency {res['latency_seconds']}")
        time.sleep(5)  # let the operators settle before the end figures
        elapsed = time.monotonic() - t_start
        req1 = api_requests(kube)
        harness = HARNESS_REQUESTS[0] + 2
        res["elapsed_seconds"] = round(elapsed, 1)
        res["api_requests_total"] = req1 - req0
        res["api_requests_harness"] = harness
        res["api_requests_per_second_operators"] = round((req1 - req0 - harness) / elapsed, 1)
        HARNESS_REQUESTS[0] += 1
        syncs = bench.count_mailboxsyncs(kube)
        expected = rows + sum(len(d["spec"]["mailboxes"]) for d in docs)
        res["mailboxsyncs"] = syncs
        res["mailboxsyncs_expected"] = expected
        res["operators"] = {}
        for o in ops:
            res["operators"][o.name] = {
                "pid": o.pid,
                "peak_rss_mb": round(bench.peak_rss_mb(o.pid)),
                "cpu_seconds": round(cpu_seconds(o.pid) - cpu0[o.name], 1),
                **activity(o.log),
            }
        active = [n for n, f in res["operators"].items() if f["object_log_lines"] > 0]
        res["active_replicas"] = active
        peering = json.loads(
            kube.kubectl("get", "kopfpeerings.kopf.dev", PEERING, "-n", NS, "-o", "json").stdout
        )
        res["peers_in_kopfpeering"] = sorted((peering.get("status") or {}).keys())
        res["mailboxsync_creations_logged"] = sum(
            f["mailboxsyncs_created"] for f in res["operators"].values()
        )
        say(f"  {json.dumps(res)}")
        ok = (
            all_syncs is not None
            and len(seen) == m
            and syncs == expected
            and len(active) == 1
            and res["mailboxsync_creations_logged"] == expected
            and sum(f["conflicts_409"] for f in res["operators"].values()) < 10
        )
        return ok, res
    finally:
        for s in reversed(stack):
            with contextlib.suppress(Exception):
                s.stop()


# ------------------------------------------------------------------------------------------ failover
def mailboxsync_owners(kube: Any) -> dict[str, Any]:
    """Every MailboxSync in NS: how many per (migration, source address) - each must be exactly 1."""
    HARNESS_REQUESTS[0] += 1
    items = dl.get(kube, "mailboxsyncs.mailferry.io", NS)["items"]
    seen: dict[tuple[str, str], int] = {}
    for it in items:
        key = (it["metadata"]["labels"].get("mailferry.io/migration", "?"), it["spec"]["source"]["username"])
        seen[key] = seen.get(key, 0) + 1
    return {"mailboxsyncs": len(items), "sources_with_more_than_one": sum(1 for n in seen.values() if n > 1)}


def resumed_after(log: Path, since: float) -> float | None:
    """Seconds from `since` (epoch) to Kopf's "Resuming operations after the pause" in `log` (the
    standby un-paused: the dead peer's keep-alive ran out)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for m in re.finditer(r"^\[(\S+ \S+)\] \S+\s+\[INFO\s*\] Resuming operations", text, re.M):
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
        if t >= since:
            return round(t - since, 1)
    return None


def failover_under_load(
    work: Path, rows: int = 10_000, migrations: int = 50, kill_fraction: float = 0.4, timeout: float = 900
) -> tuple[bool, dict[str, Any]]:
    """Two peered operators; one N-row MailMigration + M small ones created at once; kill -9 of the
    active replica once `kill_fraction` of the N MailboxSyncs exist. The standby must take over (Kopf
    peering: after the dead peer's keep-alive lifetime, 60 s, runs out) and create the rest, each once."""
    res: dict[str, Any] = {"rows": rows, "migrations": migrations, "kill_at_fraction": kill_fraction}
    kube = start_envtest(work / "kube", find_bin_dir())
    stack: list[Any] = [kube]
    try:
        kube.install_crds()
        install_peering(kube, work)
        dead = SimpleNamespace(port=closed_port())
        create_inventory(kube, rows)
        active = PeeredOperator(kube, [NS], work, "operator-1", 100).start()
        standby = PeeredOperator(kube, [NS], work, "operator-2", 50).start()
        stack += [active, standby]
        time.sleep(3)  # let the peers see each other
        docs = [migration_spec("big", dead, inventory_configmap="inventory", batchSize=50)] + [
            migration_spec(
                f"m{i:03d}", dead, mailboxes=[f"u{j}@load.test" for j in range(i % 5 * 3, i % 5 * 3 + 3)]
            )
            for i in range(migrations)
        ]
        expected = rows + 3 * migrations
        t0 = time.monotonic()
        dl.apply(kube, *docs, verb=("create",))
        count = 0
        while time.monotonic() - t0 < timeout:
            HARNESS_REQUESTS[0] += 1
            count = bench.count_mailboxsyncs(kube)
            if count >= kill_fraction * rows:
                break
            time.sleep(0.2)
        standby_lines_before = activity(standby.log)["object_log_lines"]
        active_log = activity(active.log)
        t_kill = time.monotonic()
        wall_kill = time.time()
        active.kill()
        res["mailboxsyncs_at_kill"] = count
        res["seconds_from_create_to_kill"] = round(t_kill - t0, 1)
        res["active_before_kill"] = {
            "operator-1": active_log["object_log_lines"],
            "operator-2": standby_lines_before,
        }
        first_new = None
        resumed = None
        all_done = None
        last = count
        while time.monotonic() - t_kill < timeout:
            HARNESS_REQUESTS[0] += 1
            now_count = bench.count_mailboxsyncs(kube)
            now = time.monotonic()
            if first_new is None and activity(standby.log)["object_log_lines"] > standby_lines_before:
                first_new = now - t_kill
            if resumed is None and now_count > last:
                resumed = now - t_kill
            last = max(last, now_count)
            if now_count >= expected:
                all_done = now - t_kill
                break
            time.sleep(0.5)
        res["seconds_until_standby_resumed"] = resumed_after(standby.log, wall_kill)
        res["seconds_until_standby_acted"] = None if first_new is None else round(first_new, 1)
        res["seconds_until_mailboxsyncs_grew_again"] = None if resumed is None else round(resumed, 1)
        res["seconds_until_all_mailboxsyncs_after_kill"] = None if all_done is None else round(all_done, 1)
        time.sleep(3)
        owners = mailboxsync_owners(kube)
        res.update(owners)
        res["mailboxsyncs_expected"] = expected
        statuses = [
            m
            for m in dl.get(kube, "mailmigrations.mailferry.io", NS)["items"]
            if (m.get("status") or {}).get("phase")
        ]
        res["migrations_with_status"] = len(statuses)
        res["standby"] = {"peak_rss_mb": round(bench.peak_rss_mb(standby.pid)), **activity(standby.log)}
        say(f"  {json.dumps(res)}")
        ok = (
            all_done is not None
            and owners["mailboxsyncs"] == expected
            and owners["sources_with_more_than_one"] == 0
            and len(statuses) == migrations + 1
            and res["standby"]["object_log_lines"] > standby_lines_before
        )
        return ok, res
    finally:
        for s in reversed(stack):
            with contextlib.suppress(Exception):
                s.stop()


def scenario_failover(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    return failover_under_load(work, args.rows, args.migrations, timeout=args.timeout)
