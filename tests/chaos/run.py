"""`make chaos`: fault-injection scenarios against the real worker and real Dovecot servers; prints figures.

    python tests/chaos/run.py [--scenario NAME ...] [--kills 20] [--messages 3000] [--json FILE] [--seed N]

Scenarios (all by default):
  hostile   the worker's IMAP client against each hostile-server behaviour at full volume (1 GiB endless
            line, 256 MiB of untagged responses): error type, RSS growth, still healthy afterwards
  kill9     kill -9 of the worker at N random moments of a bulk copy, then of a delta round; rerun
  cuts      connections reset at random (TCP fault proxy on both sides) during bulk and delta; rerun
  inject    [THROTTLED] and BYE injected at random into both IMAP streams; rerun
  crash     the destination, then the source Dovecot killed (SIGKILL) mid-copy and started again; rerun
  operator-kill  kill -9 of the operator N times during a 20-mailbox MailMigration (bulk, then complete),
            with the local job runner: duplicate Jobs, Jobs run twice, lost/duplicated, time to converge
  operator-phases  kill -9 of the operator N times spread over every MailMigration phase, Validating and
            AwaitingApproval included (slow IMAP logins through a delaying proxy; approval granted
            mid-run): kills, duplicate Jobs and skipped gates per phase, time to converge
            (tests/chaos/operator_faults.py)
  dns-kill  kill -9 of the operator N times across every DnsCutover phase on real PowerDNS, forward to
            Enforced and during the rollback: duplicate DNS writes, skipped gates, time to converge; then
            N times more with no spec gate, while each built-in gate (minDwell, oldTtl, recordsServed)
            holds and during the drain after the switch (tests/chaos/dns_kill.py)
  apiserver-restart  kube-apiserver killed and started again (same port, same etcd) --restarts times
            during a MailMigration and during a DnsCutover; the operator process stays up
  one-writer  2 and 5 workers at once on one MailboxSync (file store and API store), --repeat times each,
            and a worker SIGSTOPped past its Lease then resumed: exactly one copies, the resumed one writes
            nothing (tests/chaos/coexist.py)
  coexist   --rounds delta rounds of random mailbox life (expunge, move, flag, new, direct delivery to the
            destination) with kill -9 in a third of them, on a QRESYNC source and on one without
            QRESYNC/CONDSTORE: destination = source + its own mail after every round; safety cap trips
  watch-410  the operator's API connection cut (TCP proxy) while objects change and etcd is compacted,
            on an API server without watch cache: a real 410 Gone, Kopf re-lists (debug + audit log)
  notices-kill  kill -9 of the operator --kills times (at most 5) while it sends one approved notice to
            --recipients people (1,000) over real SMTP submission into Dovecot: missed and twice per recipient
            (tests/chaos/notices_kill.py)
Not in the default list (run with --scenario):
  load      2 peered operators, one N-row inventory (--rows) + M MailMigrations at once (--migrations):
            RSS, CPU, reconcile latency percentiles, API requests/s (tests/chaos/load.py)
  failover  the load scenario's objects created at once, kill -9 of the active replica while it creates
            the MailboxSyncs: time until the standby takes over, every MailboxSync exists once

Every scenario ends by counting messages by Message-ID on both servers: lost and duplicated must be 0.
Exit status 1 if any scenario's invariant fails. Needs dovecot (make deps) and the .venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from chaos.faultproxy import FaultProxy  # noqa: E402
from chaos.hostile_imap import BEHAVIOURS, MIB, HostileImap  # noqa: E402
from chaos.mailrun import HUNG, DestCounter, WorkerRun, compare, corpus, endpoint  # noqa: E402
from fixtures.dovecot import Dovecot  # noqa: E402

PROBE = Path(__file__).resolve().parent / "imap_probe.py"
HANG_DIR = Path(tempfile.gettempdir()) / "mailferry-chaos-hangs"
FOLDERS_SHARE = {"INBOX": 0.6, "Archive": 0.25, "Work/Reports": 0.15}


def say(msg: str) -> None:
    print(msg, flush=True)


@contextlib.contextmanager
def dovecot_pair(root: Path, src_caps: str | None = None) -> Iterator[tuple[Dovecot, Dovecot]]:
    (root / "src").mkdir(parents=True)
    (root / "dst").mkdir(parents=True)
    src = Dovecot(root / "src", "chaos-src", imap_capability=src_caps)
    dst = Dovecot(root / "dst", "chaos-dst")
    try:
        src.start()
        dst.start()
        yield src, dst
    finally:
        src.destroy()
        dst.destroy()


def folders(n: int) -> dict[str, int]:
    return {f: max(1, int(n * share)) for f, share in FOLDERS_SHARE.items()}


def new_mailbox(
    src: Dovecot,
    dst: Dovecot,
    work: Path,
    name: str,
    n: int,
    src_port: int | None = None,
    dst_port: int | None = None,
) -> tuple[str, WorkerRun, int]:
    user = f"{name}@chaos.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = corpus(src, user, folders(n), size=2500)
    run = WorkerRun(
        work / name,
        name,
        user,
        endpoint("127.0.0.1", src_port or src.port, read_timeout=5),
        endpoint("127.0.0.1", dst_port or dst.port, read_timeout=5),
        "pw-src",
        "pw-dst",
        connectionsPerMailbox=2,
    )
    run.hang_seconds = HANG_SECONDS[0]
    RUNS.append(run)
    return user, run, total


RUNS: list[WorkerRun] = []
HANG_SECONDS = [120.0]


def check(result: dict[str, Any], src: Dovecot, dst: Dovecot, user: str, prefix: str = "") -> bool:
    diff = compare(src, dst, user)
    result[prefix + "source"] = diff.source
    result[prefix + "destination"] = diff.destination
    result[prefix + "lost"] = diff.lost
    result[prefix + "duplicated"] = diff.duplicated
    if diff.detail:
        result[prefix + "detail"] = diff.detail[:10]
    return diff.lost == 0 and diff.duplicated == 0


# ------------------------------------------------------------------------------------------ scenarios
def scenario_hostile(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    volumes = {
        "endless_line": 1024 * MIB,
        "enormous_untagged_lines": 256 * MIB,
        "enormous_untagged_literals": 256 * MIB,
        "huge_literal_close": 64 * MIB,
    }
    triggers = {
        "garbage_after_greeting": "ANY",
        "malformed_literal": "UID FETCH",
        "literal_bad_count": "UID FETCH",
        "huge_literal_close": "UID FETCH",
        "close_mid_literal": "UID FETCH",
        "enormous_untagged_literals": "UID FETCH",
        "echo_credentials": "LOGIN",
    }
    rows: dict[str, Any] = {}
    ok = True
    with HostileImap("stall", on="NEVER") as good:
        for b in BEHAVIOURS:
            with HostileImap(b, on=triggers.get(b, "SELECT"), total=volumes.get(b)) as srv:
                cp = subprocess.run(
                    [sys.executable, str(PROBE), "--port", str(srv.port), "--followup-port", str(good.port)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                sent = srv.bytes_sent
            try:
                r = json.loads(cp.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                r = {
                    "error": "probe died",
                    "untyped": True,
                    "rss_growth_mb": None,
                    "followup_ok": False,
                    "stderr": cp.stderr[-300:],
                }
            row = {
                "server_sent_mib": round(sent / MIB, 1),
                "error": r.get("error"),
                "reason": r.get("reason"),
                "rss_growth_mb": r.get("rss_growth_mb"),
                "followup_ok": r.get("followup_ok"),
                "seconds": r.get("seconds"),
            }
            bounded = r.get("rss_growth_mb") is not None and r["rss_growth_mb"] < 96
            row["bounded"] = bounded
            ok &= bool(not r.get("untyped") and r.get("followup_ok"))
            rows[b] = row
            say(
                f"  {b:28s} sent={row['server_sent_mib']:>7} MiB  error={row['error']!s:18s} "
                f"rss_growth={row['rss_growth_mb']!s:>6} MB  bounded={bounded}  "
                f"healthy_after={row['followup_ok']}"
            )
    unbounded = [b for b, r in rows.items() if not r["bounded"]]
    return ok, {"behaviours": rows, "unbounded": unbounded}


def _kill_loop(
    run: WorkerRun,
    count: Callable[[], int],
    start: int,
    end: int,
    kills: int,
    rng: random.Random,
    logdir: Path,
    round_: str,
) -> dict[str, Any]:
    """Start the worker, kill -9 it when the destination passes a random point; ``kills`` times."""
    targets = sorted(rng.uniform(0.02, 0.97) for _ in range(kills))
    landed = 0
    mid_copy = 0
    finished_early = 0
    progress: list[int] = []
    t0 = time.monotonic()
    for i, frac in enumerate(targets):
        target = start + int((end - start) * frac)
        before = count()
        p = run.start(logdir / f"kill-{round_}-{i}.log", MAILFERRY_ROUND=round_)
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline and count() < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))  # a random moment inside the chunk in flight
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            landed += 1
        else:
            finished_early += 1
        p.wait()
        after = count()
        progress.append(after - start)
        mid_copy += after > before
    killed_at = time.monotonic()
    runs, secs, codes = run.run_until_done(MAILFERRY_ROUND=round_)
    return {
        "kills_landed": landed,
        "kills_after_progress_in_that_run": mid_copy,
        "worker_finished_before_kill": finished_early,
        "copied_at_each_kill": progress,
        "seconds_with_kills": round(killed_at - t0, 1),
        "reruns_to_complete": runs,
        "seconds_to_recover": round(secs, 1),
        "final_exit_codes": codes,
    }


def scenario_kill9(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    rng = random.Random(args.seed)
    res: dict[str, Any] = {}
    with dovecot_pair(work / "servers") as (src, dst):
        user, run, total = new_mailbox(src, dst, work, "kill9", args.messages)
        count = DestCounter(dst, user, list(FOLDERS_SHARE))
        try:
            res["bulk"] = _kill_loop(run, count, 0, total, args.kills, rng, work, "1")
            res["bulk"]["messages"] = total
            ok = check(res["bulk"], src, dst, user)
            say(f"  bulk : {json.dumps(res['bulk'])}")
            added = corpus(src, user, folders(args.messages // 2), size=2500, tag="delta")
            res["delta"] = _kill_loop(run, count, total, total + added, args.kills, rng, work, "2")
            res["delta"]["messages_added"] = added
            ok &= check(res["delta"], src, dst, user)
            say(f"  delta: {json.dumps(res['delta'])}")
        finally:
            count.close()
        res["attempts"] = run.status().get("attempts")
        ok &= run.status().get("phase") == "Synced"
    return ok, res


def scenario_cuts(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    res: dict[str, Any] = {}
    with (
        dovecot_pair(work / "servers") as (src, dst),
        FaultProxy("127.0.0.1", src.port) as sp,
        FaultProxy("127.0.0.1", dst.port) as dp,
    ):
        user, run, total = new_mailbox(src, dst, work, "cuts", args.messages, sp.port, dp.port)
        lo, hi = args.cut_range
        sp.random_cuts(lo, hi, seed=args.seed)
        dp.random_cuts(lo, hi, seed=args.seed + 1)
        runs, secs, codes = run.run_until_done(max_runs=60)
        res["cut_range_bytes"] = [lo, hi]
        res["bulk"] = {
            "messages": total,
            "runs": runs,
            "seconds": round(secs, 1),
            "exit_codes": codes,
            "resets": sp.stats.cuts + dp.stats.cuts,
            "connections": sp.stats.connections + dp.stats.connections,
        }
        ok = codes[-1] == 0 and check(res["bulk"], src, dst, user)
        say(f"  bulk : {json.dumps(res['bulk'])}")
        before = sp.stats.cuts + dp.stats.cuts
        added = corpus(src, user, folders(args.messages // 2), size=2500, tag="delta")
        runs, secs, codes = run.run_until_done(max_runs=60, MAILFERRY_ROUND="2")
        res["delta"] = {
            "messages_added": added,
            "runs": runs,
            "seconds": round(secs, 1),
            "exit_codes": codes,
            "resets": sp.stats.cuts + dp.stats.cuts - before,
        }
        ok &= codes[-1] == 0 and check(res["delta"], src, dst, user)
        say(f"  delta: {json.dumps(res['delta'])}")
    return ok, res


def scenario_inject(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    res: dict[str, Any] = {}
    with (
        dovecot_pair(work / "servers") as (src, dst),
        FaultProxy("127.0.0.1", src.port) as sp,
        FaultProxy("127.0.0.1", dst.port) as dp,
    ):
        user, run, total = new_mailbox(src, dst, work, "inject", args.messages, sp.port, dp.port)
        sp.inject_probability(throttle=0.1, bye=0.05, seed=args.seed)
        dp.inject_probability(throttle=0.1, bye=0.05, seed=args.seed + 1)
        runs, secs, codes = run.run_until_done(max_runs=60)
        res = {
            "messages": total,
            "runs": runs,
            "seconds": round(secs, 1),
            "exit_codes": codes,
            "throttled_injected": sp.stats.throttles + dp.stats.throttles,
            "bye_injected": sp.stats.byes + dp.stats.byes,
        }
        ok = codes[-1] == 0 and check(res, src, dst, user)
        say(f"  {json.dumps(res)}")
    return ok, res


def scenario_crash(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    res: dict[str, Any] = {}
    ok = True
    with dovecot_pair(work / "servers") as (src, dst):
        user, run, total = new_mailbox(src, dst, work, "crash", args.messages)
        count = DestCounter(dst, user, list(FOLDERS_SHARE))
        try:
            for server, frac, label in ((dst, 0.3, "crash_destination"), (src, 0.6, "crash_source")):
                p = run.start(work / f"crash-{label}.log")
                while p.poll() is None and count() < total * frac:
                    time.sleep(0.01)
                running = p.poll() is None
                t0 = time.monotonic()
                server.kill()
                server.start()
                count.conn = None
                try:
                    rc = p.wait(timeout=run.hang_seconds)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGUSR1)
                    time.sleep(2)
                    p.kill()
                    p.wait()
                    rc = HUNG
                    run.hangs.append((work / f"crash-{label}.log").read_text()[-20000:])
                res[label] = {
                    "killed_mid_copy": running,
                    "worker_exit": rc,
                    "seconds_worker_ran_after_crash": round(time.monotonic() - t0, 1),
                }
            runs, secs, codes = run.run_until_done()
            res["reruns_to_complete"] = runs
            res["seconds_to_recover"] = round(secs, 1)
            ok = codes[-1] == 0 and check(res, src, dst, user)
        finally:
            count.close()
        say(f"  {json.dumps(res)}")
    return ok, res


def scenario_operator_kill(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    """kill -9 of the operator at N random moments of a MailMigration (bulk, then complete); restart each."""
    sys.path.insert(0, str(TESTS / "tools"))
    import demolib as dl

    from fixtures.kubeapi import find_bin_dir, start_envtest

    rng = random.Random(args.seed)
    ns, name = "chaos", "acme"
    res: dict[str, Any] = {}
    kube = start_envtest(work / "kube", find_bin_dir())
    stack: list[Any] = [kube]
    try:
        kube.install_crds()
        with dovecot_pair(work / "servers") as (src, dst):
            org = dl.make_org(20, domain="chaos.test")
            dl.add_org_users(src, dst, org)
            total = dl.seed_org(src, org, 24)
            kube.kubectl("create", "namespace", ns)
            runner = dl.JobRunnerProcess(kube, [ns], work).start()
            stack.append(runner)
            op = dl.OperatorProcess(kube, [ns], work).start()
            stack.append(op)
            dl.apply(
                kube,
                dl.secret_manifest(f"{name}-source", ns, dl.credentials(org)),
                dl.secret_manifest(f"{name}-destination", ns, dl.credentials(org)),
                dl.migration_manifest(
                    name, ns, src, dst, org.addresses, batchSize=2, maxConcurrentJobs=2, deltaInterval="1h"
                ),
            )
            t0 = time.monotonic()
            phases: list[str] = []
            complete_at = args.kills * 2 // 3  # the last third of the kills land while completing
            for i in range(args.kills):
                if i == complete_at:
                    dl.wait_for(
                        lambda: (
                            (dl.condition(dl.migration(kube, ns, name), "BulkCopied") or {}).get("status")
                            == "True"
                        ),
                        600,
                        "bulk copy",
                    )
                    kube.kubectl(
                        "patch",
                        "mailmigration",
                        name,
                        "-n",
                        ns,
                        "--type=merge",
                        "-p",
                        '{"spec":{"complete":true}}',
                    )
                time.sleep(rng.uniform(0.2, 3.0))
                phases.append(str((dl.migration(kube, ns, name).get("status") or {}).get("phase")))
                op.kill()
                time.sleep(rng.uniform(0.0, 1.0))
                op.start()
            last_kill = time.monotonic()
            dl.wait_for(
                lambda: (dl.migration(kube, ns, name).get("status") or {}).get("phase") == "Completed",
                600,
                "phase Completed",
            )
            converge = time.monotonic() - last_kill
            jobs = dl.worker_jobs(kube, ns, name)
            labels = [j["metadata"]["labels"] for j in jobs]
            keys = [(lb.get("mailferry.io/round"), lb.get("mailferry.io/batch")) for lb in labels]
            runs_per_job = {p.stem: p.read_text().count("--- ") for p in sorted(runner.log_dir.glob("*.log"))}
            lost = dup = 0
            for addr in org.addresses:
                diff = compare(src, dst, addr)
                lost += diff.lost
                dup += diff.duplicated
            st = dl.migration(kube, ns, name)["status"]
            res = {
                "mailboxes": 20,
                "messages": total,
                "operator_kills": args.kills,
                "phases_at_kill": phases,
                "jobs": len(jobs),
                "duplicate_jobs": len(keys) - len(set(keys)),
                "jobs_run_more_than_once": sorted(k for k, v in runs_per_job.items() if v > 1),
                "seconds_with_kills": round(last_kill - t0, 1),
                "seconds_to_converge_after_last_kill": round(converge, 1),
                "copied_messages_status": (st.get("totals") or {}).get("copiedMessages"),
                "lost": lost,
                "duplicated": dup,
            }
            say(f"  {json.dumps(res)}")
            ok = (
                res["duplicate_jobs"] == 0
                and not res["jobs_run_more_than_once"]
                and lost == 0
                and dup == 0
                and res["copied_messages_status"] == total
            )
            return ok, res
    finally:
        for s in reversed(stack):
            with contextlib.suppress(Exception):
                s.stop()


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], tuple[bool, dict[str, Any]]]] = {
    "hostile": scenario_hostile,
    "kill9": scenario_kill9,
    "cuts": scenario_cuts,
    "inject": scenario_inject,
    "crash": scenario_crash,
    "operator-kill": scenario_operator_kill,
}
DEFAULT_SCENARIOS = list(SCENARIOS)


def scenario_load(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.load import scenario_load as load

    return load(args, work)


SCENARIOS["load"] = scenario_load  # opt-in only: not in DEFAULT_SCENARIOS


@contextlib.contextmanager
def envtest(work: Path, apiserver_args: tuple[str, ...] = ()) -> Iterator[Any]:
    from fixtures.kubeapi import find_bin_dir, start_envtest

    kube = start_envtest(work / "kube", find_bin_dir(), apiserver_args=apiserver_args)
    try:
        kube.install_crds()
        yield kube
    finally:
        kube.stop()


@contextlib.contextmanager
def powerdns(work: Path) -> Iterator[Any]:
    from fixtures.powerdns import PowerDNS

    (work / "pdns").mkdir(parents=True)
    pdns = PowerDNS(work / "pdns", "chaos")
    try:
        yield pdns.start()
    finally:
        pdns.close()


def scenario_operator_phases(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.operator_faults import mm_phase_kills

    with envtest(work) as kube, dovecot_pair(work / "servers") as (src, dst):
        kube.kubectl("create", "namespace", "chaos")
        ok, res = mm_phase_kills(kube, "chaos", src, dst, work / "mm", kills=args.kills, seed=args.seed)
    say(f"  {json.dumps({k: v for k, v in res.items() if k not in ('kills', 'kill_detail')})}")
    return ok, res


def _brief(res: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in res.items() if k != "faults_detail"})


def scenario_dns_kill(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.dns_kill import dns_builtin_faults, dns_faults

    res: dict[str, Any] = {}
    with envtest(work) as kube, powerdns(work) as pdns:
        kube.kubectl("create", "namespace", "chaos")
        ok_a, res["approval_gates"] = dns_faults(
            kube, "chaos", pdns, work / "dns", fault="kill", faults=args.kills, seed=args.seed
        )
        say(f"  approval gates: {_brief(res['approval_gates'])}")
        kube.kubectl("create", "namespace", "chaos-builtin")
        ok_b, res["builtin_gates"] = dns_builtin_faults(
            kube, "chaos-builtin", pdns, work / "dns-builtin", faults=args.kills, seed=args.seed
        )
        say(f"  built-in gates: {_brief(res['builtin_gates'])}")
    return ok_a and ok_b, res


def scenario_apiserver_restart(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.dns_kill import dns_faults
    from chaos.operator_faults import mm_apiserver_restart

    res: dict[str, Any] = {}
    with envtest(work) as kube, dovecot_pair(work / "servers") as (src, dst), powerdns(work) as pdns:
        kube.kubectl("create", "namespace", "chaos")
        ok_m, res["migration"] = mm_apiserver_restart(
            kube, "chaos", src, dst, work / "mm", restarts=args.restarts, seed=args.seed
        )
        say(f"  migration: {json.dumps(res['migration'])}")
        kube.kubectl("create", "namespace", "chaos-dns")
        ok_d, res["dnscutover"] = dns_faults(
            kube, "chaos-dns", pdns, work / "dns", fault="apiserver", faults=args.restarts, seed=args.seed
        )
        brief = {k: v for k, v in res["dnscutover"].items() if k != "faults_detail"}
        say(f"  dnscutover: {json.dumps(brief)}")
    return ok_m and ok_d, res


def scenario_watch_410(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.operator_faults import WATCH_410_APISERVER_ARGS, audit_args, mm_watch_gone

    flags = (*WATCH_410_APISERVER_ARGS, *audit_args(work / "audit"))
    with envtest(work, flags) as kube, dovecot_pair(work / "servers") as (src, dst):
        kube.kubectl("create", "namespace", "chaos")
        ok, res = mm_watch_gone(
            kube, "chaos", src, dst, work / "mm", seed=args.seed, audit_log=work / "audit" / "audit.log"
        )
    say(f"  {json.dumps(res)}")
    return ok, res


def scenario_failover(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.load import scenario_failover as failover

    return failover(args, work)


for _name, _fn in (
    ("operator-phases", scenario_operator_phases),
    ("dns-kill", scenario_dns_kill),
    ("apiserver-restart", scenario_apiserver_restart),
    ("watch-410", scenario_watch_410),
):
    SCENARIOS[_name] = _fn
    DEFAULT_SCENARIOS.append(_name)
SCENARIOS["failover"] = scenario_failover  # opt-in, like load


def scenario_notices_kill(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.notices_kill import notices_kill

    with envtest(work) as kube:
        kube.kubectl("create", "namespace", "chaos")
        ok, res = notices_kill(
            kube, "chaos", work / "notices", args.recipients, kills=min(args.kills, 5), seed=args.seed
        )
    say(f"  {json.dumps(res)}")
    return ok, res


SCENARIOS["notices-kill"] = scenario_notices_kill
DEFAULT_SCENARIOS.append("notices-kill")


def scenario_one_writer(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.coexist import ok_one_writer, one_writer

    with envtest(work) as kube, dovecot_pair(work / "servers") as (src, dst):
        kube.kubectl("create", "namespace", "chaos")
        res = one_writer(kube, "chaos", src, dst, work / "ow", args.repeat)
    say(f"  {json.dumps({k: v for k, v in res.items() if k != 'detail'})}")
    return ok_one_writer(res), res


def scenario_coexist(args: argparse.Namespace, work: Path) -> tuple[bool, dict[str, Any]]:
    from chaos.coexist import scenario_coexist as coexist

    ok, res = coexist(args, work, dovecot_pair)
    say(f"  {json.dumps({k: {kk: vv for kk, vv in v.items() if kk != 'detail'} for k, v in res.items()})}")
    return ok, res


for _name, _fn in (("one-writer", scenario_one_writer), ("coexist", scenario_coexist)):
    SCENARIOS[_name] = _fn
    DEFAULT_SCENARIOS.append(_name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "7")))
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument(
        "--cut-range",
        type=int,
        nargs=2,
        default=[100_000, 2_000_000],
        metavar=("LO", "HI"),
        help="cuts: reset each connection after U(LO, HI) bytes",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, status files)")
    ap.add_argument("--hang-seconds", type=float, default=120.0, help="a longer worker run is a hang")
    ap.add_argument("--rows", type=int, default=10_000, help="load: inventory rows of the big MailMigration")
    ap.add_argument("--migrations", type=int, default=50, help="load: MailMigrations created at once")
    ap.add_argument("--timeout", type=float, default=600.0, help="load: seconds to wait for each step")
    ap.add_argument("--restarts", type=int, default=4, help="apiserver-restart: restarts in each half")
    ap.add_argument("--repeat", type=int, default=3, help="one-writer: runs per store and worker count")
    ap.add_argument("--rounds", type=int, default=12, help="coexist: delta rounds per source kind")
    ap.add_argument("--recipients", type=int, default=1000, help="notices-kill: people the notice goes to")
    args = ap.parse_args()
    HANG_SECONDS[0] = args.hang_seconds
    work = Path(tempfile.mkdtemp(prefix="mailferry-chaos-"))
    HANG_DIR.mkdir(exist_ok=True)
    results: dict[str, Any] = {"seed": args.seed, "kills": args.kills, "messages": args.messages}
    failed: list[str] = []
    try:
        for name in args.scenario or DEFAULT_SCENARIOS:
            say(f"== {name}")
            t0 = time.monotonic()
            d = work / name
            d.mkdir()
            try:
                ok, figures = SCENARIOS[name](args, d)
            except Exception as exc:  # a scenario that blows up is a failed scenario, the others still run
                ok, figures = False, {"exception": f"{type(exc).__name__}: {exc}"[:500]}
                say(f"  EXCEPTION {figures['exception']}")
            figures["seconds"] = round(time.monotonic() - t0, 1)
            hangs = [h for r in RUNS for h in r.hangs]
            RUNS.clear()
            if hangs:  # a worker run that never ends is a failure too (liveness)
                ok = False
                figures["worker_hangs"] = len(hangs)
                figures["hang_dumps"] = []
                for i, text in enumerate(hangs):
                    f = HANG_DIR / f"{name}-hang-{i}.txt"
                    f.write_text(text)
                    figures["hang_dumps"].append(str(f))
                say(f"  worker hangs: {len(hangs)} (asyncio task dumps in {HANG_DIR})")
            figures["ok"] = ok
            results[name] = figures
            say(f"== {name}: {'PASS' if ok else 'FAIL'} in {figures['seconds']} s")
            if not ok:
                failed.append(name)
    finally:
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        if args.keep:
            say(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("chaos: " + ("all invariants held" if not failed else f"FAILED: {', '.join(failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
