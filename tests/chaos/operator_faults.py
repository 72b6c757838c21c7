"""Operator faults during a MailMigration: kill -9 in every phase, kube-apiserver restarts, 410 Gone.

The real `mailferry-operator`, the local job runner (standing in for kubelet + Job controller) and the
real worker against two Dovecot servers. Both Dovecots sit behind a TCP fault proxy that delays every
new connection (`login_delay`: a slow remote IMAP login), so validation takes long enough for kills to
land in it. Functions here take running servers (tests pass fixtures) and return (ok, figures).

  mm_phase_kills   kill -9 of the operator N times spread over Validating, AwaitingApproval (approval
                   required, granted mid-run), Syncing, InSync, Completing (complete=true) and Completed
  mm_apiserver_restart  kube-apiserver killed and started again on the same port/etcd mid-migration
  mm_watch_gone    the operator's connection to the API server is cut (a TCP proxy) while objects change
                   and etcd is compacted, so Kopf's watch resumes with a compacted resourceVersion and
                   kube-apiserver answers 410 Gone; Kopf re-lists

Figures: kills (or faults) per phase, duplicate Jobs per round, Jobs run twice, skipped gates (see
`gate_checks`), messages lost/duplicated by Message-ID, seconds to converge after the last fault.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
for _p in (TESTS, TESTS / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import demolib as dl  # noqa: E402

from chaos.faultproxy import FaultProxy  # noqa: E402
from chaos.mailrun import compare  # noqa: E402
from chaos.opslib import Operator, Version, Watcher, condition, epoch, phase_of, proxied_kubeconfig, say  # noqa: E402
from fixtures.dovecot import Dovecot  # noqa: E402
from fixtures.kubeapi import KubeAPI  # noqa: E402

MM_PHASES = ["Validating", "AwaitingApproval", "Syncing", "InSync", "Completing", "Completed"]
PLURAL_PATH = "/apis/mailferry.io/v1alpha1/namespaces/{ns}/mailmigrations"


def spread(kills: int, phases: list[str]) -> dict[str, int]:
    """`kills` over `phases` as evenly as possible, earlier phases first."""
    base, extra = divmod(kills, len(phases))
    return {p: base + (1 if i < extra else 0) for i, p in enumerate(phases)}


class MigrationRig:
    """One namespace with: Dovecot pair behind delaying proxies, Secrets, job runner, operator, watcher."""

    def __init__(
        self,
        kube: KubeAPI,
        ns: str,
        src: Dovecot,
        dst: Dovecot,
        work: Path,
        mailboxes: int = 20,
        per_mailbox: int = 24,
        login_delay: float = 0.0,
        operator_env: dict[str, str] | None = None,
        operator_kubeconfig: Path | None = None,
        log_level: str = "info",
        name: str = "acme",
    ) -> None:
        self.kube, self.ns, self.src, self.dst, self.work, self.name = kube, ns, src, dst, work, name
        work.mkdir(parents=True, exist_ok=True)
        self.org = dl.make_org(mailboxes, domain=f"{ns}.test")
        dl.add_org_users(src, dst, self.org)
        self.total = dl.seed_org(src, self.org, per_mailbox)
        self.proxies = [FaultProxy("127.0.0.1", src.port).start(), FaultProxy("127.0.0.1", dst.port).start()]
        for p in self.proxies:
            p.connect_delay(login_delay)
        self.runner: dl.JobRunnerProcess | None = None
        env = dict(operator_env or {})
        if operator_kubeconfig is not None:
            env["KUBECONFIG"] = str(operator_kubeconfig)
        self.op = Operator(kube, [ns], work / "operator.log", env=env, log_level=log_level)
        self.watch = Watcher(kube, PLURAL_PATH.format(ns=ns), name)
        self.runner_restarts = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, **spec: Any) -> MigrationRig:
        self.runner = dl.JobRunnerProcess(self.kube, [self.ns], self.work).start()
        self.watch.start()
        self.op.start()
        src = SimpleNamespace(port=self.proxies[0].port)
        dst = SimpleNamespace(port=self.proxies[1].port)
        creds = dl.credentials(self.org)
        dl.apply(
            self.kube,
            dl.secret_manifest(f"{self.name}-source", self.ns, creds),
            dl.secret_manifest(f"{self.name}-destination", self.ns, creds),
            dl.migration_manifest(
                self.name,
                self.ns,
                src,
                dst,
                self.org.addresses,
                **{"batchSize": 2, "maxConcurrentJobs": 2, "deltaInterval": "1h", **spec},
            ),
        )
        return self

    def keep_runner_alive(self) -> None:
        """The job runner (test tooling) may exit when the API server goes away: start it again."""
        if self.runner is not None and not self.runner.proc.running():
            self.runner_restarts += 1
            self.runner = dl.JobRunnerProcess(self.kube, [self.ns], self.work).start()

    def close(self) -> None:
        for step in (self.op.stop, self.watch.stop, *(p.stop for p in self.proxies)):
            with contextlib.suppress(Exception):
                step()
        if self.runner is not None:
            with contextlib.suppress(Exception):
                self.runner.stop()

    # ------------------------------------------------------------------ reading
    def phase(self) -> str | None:
        return phase_of(self.watch.latest())

    def wait_phase_at_least(self, phase: str, timeout: float = 300) -> str:
        want = MM_PHASES.index(phase)

        def ok(v: Version) -> bool:
            p = phase_of(v)
            return p in MM_PHASES and MM_PHASES.index(p) >= want

        try:
            return str(phase_of(self.watch.wait(ok, timeout, f"MailMigration phase >= {phase}")))
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nphase={self.phase()}\noperator log:\n{self.op.log_text()[-3000:]}"
            ) from None

    def patch(self, spec: dict[str, Any]) -> float:
        self.kube.kubectl(
            "patch",
            "mailmigration",
            self.name,
            "-n",
            self.ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": spec}),
        )
        return time.time()

    def jobs(self) -> list[dict[str, Any]]:
        return dl.worker_jobs(self.kube, self.ns, self.name)

    def messages(self) -> tuple[int, int]:
        lost = dup = 0
        for addr in self.org.addresses:
            d = compare(self.src, self.dst, addr)
            lost += d.lost
            dup += d.duplicated
        return lost, dup

    def runs_per_job(self) -> dict[str, int]:
        assert self.runner is not None
        return {p.stem: p.read_text().count("--- ") for p in sorted(self.runner.log_dir.glob("*.log"))}

    def reruns_without_failure(self) -> list[str]:
        """Jobs whose pod ran again although no earlier pod failed (a pod that exits non-zero is re-run
        up to backoffLimit, as the Job controller does: e.g. the worker could not reach the API server)."""
        log = (self.work / "jobrunner.log").read_text(errors="replace") if self.runner else ""
        failed = Counter(re.findall(r"Job \S+/(\S+): pod exited", log))
        return sorted(k for k, v in self.runs_per_job().items() if v - 1 > failed.get(k.split("_", 1)[-1], 0))


# ---------------------------------------------------------------------------------------- figures
def job_figures(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Duplicate Jobs per round: more than one Job for one (round, batch) unless the earlier attempts
    failed (a retry after a failure is a new attempt, `-a<n>`, not a duplicate)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for j in jobs:
        lb = j["metadata"]["labels"]
        groups.setdefault((lb.get("mailferry.io/round", "?"), lb.get("mailferry.io/batch", "?")), []).append(
            j
        )
    dup_by_round: Counter[str] = Counter()
    retries = 0
    for (rnd, _b), group in groups.items():
        failed = sum(1 for j in group if (j.get("status") or {}).get("failed"))
        extra = max(0, len(group) - 1 - failed)
        retries += len(group) - 1 - extra
        dup_by_round[rnd] += extra
    per_round = Counter(k[0] for k in groups)
    return {
        "jobs": len(jobs),
        "batches_per_round": dict(sorted(per_round.items())),
        "duplicate_jobs": sum(dup_by_round.values()),
        "duplicate_jobs_by_round": {r: dup_by_round.get(r, 0) for r in sorted(per_round)},
        "retried_after_failure": retries,
    }


def history_times(obj: dict[str, Any]) -> dict[str, float]:
    """First time each phase was entered (status.history, second resolution)."""
    out: dict[str, float] = {}
    for h in (obj.get("status") or {}).get("history") or []:
        t = epoch(h.get("time"))
        if t is not None and h.get("phase") not in out:
            out[h["phase"]] = t
    return out


def gate_checks(
    versions: list[Version],
    jobs: list[dict[str, Any]],
    approved_at: float | None,
    complete_at: float | None,
    mailboxes: int,
) -> dict[str, list[str]]:
    """Skipped gates, per phase transition (each is a list of what was wrong; empty = held).

    - Validating -> AwaitingApproval: the scan of every mailbox was complete (status.scan) and
      Validated=True in the first version showing AwaitingApproval;
    - AwaitingApproval -> Syncing: no Job created before approval was granted, and no version showing
      Approved=True or a copying phase before it;
    - Syncing -> InSync: every round-1 batch Job had completed (completionTime) by the InSync entry time;
    - InSync -> Completing: the final round started only after spec.complete was set;
    - Completing -> Completed: every final-round Job had completed by the Completed entry time.
    """
    out: dict[str, list[str]] = {p: [] for p in MM_PHASES[1:]}
    first: dict[str, Version] = {}
    for v in versions:
        p = phase_of(v)
        if p and p not in first:
            first[p] = v
    final = versions[-1].obj if versions else {}
    entered = history_times(final)
    if "AwaitingApproval" in first:
        v = first["AwaitingApproval"]
        scan = v.status.get("scan") or {}
        validated = condition(v.obj, "Validated")
        if scan.get("mailboxes") != mailboxes or not scan.get("completedAt"):
            out["AwaitingApproval"].append(f"scan incomplete at AwaitingApproval: {scan}")
        if validated.get("status") != "True":
            out["AwaitingApproval"].append(f"Validated={validated.get('status')} at AwaitingApproval")
    if approved_at is not None:
        cutoff = int(approved_at)  # creationTimestamp has second resolution
        early = [
            j["metadata"]["name"] for j in jobs if (epoch(j["metadata"]["creationTimestamp"]) or 0) < cutoff
        ]
        out["Syncing"] += [f"Job {n} created before approval" for n in early]
        for v in versions:
            if v.wall >= approved_at:
                break
            appr = condition(v.obj, "Approved")
            if appr.get("status") == "True" or phase_of(v) in MM_PHASES[2:]:
                out["Syncing"].append(f"approved/copying before approval (phase {phase_of(v)})")
                break

    def round_jobs(kind_round: str) -> list[dict[str, Any]]:
        return [j for j in jobs if j["metadata"]["labels"].get("mailferry.io/round") == kind_round]

    def done_by(phase: str, rnd: str) -> None:
        t = entered.get(phase)
        if t is None:
            return
        for j in round_jobs(rnd):
            ct = epoch((j.get("status") or {}).get("completionTime"))
            if ct is None or ct > t:
                out[phase].append(f"{phase} at {t} before Job {j['metadata']['name']} completed ({ct})")

    done_by("InSync", "1")
    final_round = str(((final.get("status") or {}).get("round") or {}).get("number") or "")
    if complete_at is not None and "Completing" in entered and entered["Completing"] < int(complete_at):
        out["Completing"].append("final round started before spec.complete was set")
    if final_round and final_round != "1":
        done_by("Completed", final_round)
    return out


def status_write_after(records: list[dict[str, Any]], versions: list[Version]) -> dict[str, Any]:
    """Per phase: seconds from each kill until the restarted operator wrote status again (the first
    version after the restart whose status differs from the one before it); max and count."""
    out: dict[str, list[float]] = {}
    for r in records:
        prev = None
        for v in versions:
            if v.mono < r["back_at"]:
                prev = v.status
                continue
            if v.status != prev:
                out.setdefault(str(r["phase_at_kill"]), []).append(round(v.mono - r["killed_at"], 1))
                break
    return {p: {"max": max(xs), "values": xs} for p, xs in out.items()}


# ---------------------------------------------------------------------------------------- scenario 1
def mm_phase_kills(
    kube: KubeAPI,
    ns: str,
    src: Dovecot,
    dst: Dovecot,
    work: Path,
    kills: int = 20,
    seed: int = 7,
    mailboxes: int = 20,
    per_mailbox: int = 24,
    login_delay: float = 1.5,
    probe_concurrency: int = 8,
    phases: list[str] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """kill -9 of the operator in every MailMigration phase (`spread` over `phases`), restart each time."""
    rng = random.Random(seed)
    plan = spread(kills, phases or MM_PHASES)
    rig = MigrationRig(
        kube,
        ns,
        src,
        dst,
        work,
        mailboxes,
        per_mailbox,
        login_delay,
        operator_env={"MAILFERRY_PROBE_CONCURRENCY": str(probe_concurrency)},
    )
    # validation: 2 probes per mailbox, `probe_concurrency` at a time, each waiting `login_delay`
    validation_estimate = login_delay * -(-2 * mailboxes // probe_concurrency)
    records: list[dict[str, Any]] = []
    approved_at = complete_at = None
    last_restart = 0.0
    try:
        rig.start(approval={"required": True, "approved": False})
        t0 = time.monotonic()
        for phase in MM_PHASES:
            if phase == "Completing":
                complete_at = rig.patch({"complete": True})
            reached = rig.wait_phase_at_least(phase)
            n = plan.get(phase, 0)
            for i in range(n):
                if phase == "AwaitingApproval" and i == n - 1 and n > 1:
                    approved_at = rig.patch({"approval": {"approved": True}})
                    delay = rng.uniform(0.0, 0.5)  # a kill right at the approval
                elif phase == "Validating":
                    delay = rng.uniform(0.3, max(0.6, 0.6 * validation_estimate))
                else:
                    delay = rng.uniform(0.2, 2.0)
                time.sleep(delay)
                at = rig.phase()
                last_restart = time.monotonic()  # convergence counts from the kill
                rig.op.kill()
                time.sleep(rng.uniform(0.0, 0.5))
                rig.op.start()
                records.append(
                    {
                        "planned": phase,
                        "phase_at_kill": at,
                        "after_seconds": round(delay, 2),
                        "killed_at": last_restart,
                        "back_at": time.monotonic(),
                    }
                )
            if phase == "AwaitingApproval" and approved_at is None:
                approved_at = rig.patch({"approval": {"approved": True}})
            say(f"  {phase}: reached ({reached}); {n} kill(s)")
        rig.wait_phase_at_least("Completed", timeout=600)
        converge = time.monotonic() - max(last_restart, t0)
        time.sleep(1.0)  # the last status versions reach the watcher
        jobs = rig.jobs()
        versions = rig.watch.snapshot()
        gates = gate_checks(versions, jobs, approved_at, complete_at, mailboxes)
        lost, dup = rig.messages()
        runs = rig.runs_per_job()
        final = versions[-1].obj
        per_phase = {
            p: {
                "kills": sum(1 for r in records if r["phase_at_kill"] == p),
                "skipped_gates": len(gates.get(p, [])),
            }
            for p in MM_PHASES
        }
        resume = status_write_after(records, versions)
        jf = job_figures(jobs)
        validations = len(re.findall(r"validated \d+ mailboxes", rig.op.log_text()))
        res: dict[str, Any] = {
            "mailboxes": mailboxes,
            "messages": rig.total,
            "operator_kills": len(records),
            "kills_per_phase": {p: per_phase[p]["kills"] for p in MM_PHASES},
            "planned_per_phase": plan,
            "kill_detail": [
                {k: v for k, v in r.items() if k not in ("killed_at", "back_at")} for r in records
            ],
            **jf,
            "jobs_run_more_than_once": sorted(k for k, v in runs.items() if v > 1),
            "skipped_gates_per_phase": {p: per_phase[p]["skipped_gates"] for p in MM_PHASES[1:]},
            "seconds_kill_to_next_status_write": resume,
            "skipped_gates": sum(len(v) for v in gates.values()),
            "skipped_gate_details": {k: v for k, v in gates.items() if v},
            "validation_runs_completed": validations,
            "seconds_total": round(time.monotonic() - t0, 1),
            "seconds_to_converge_after_last_kill": round(converge, 1),
            "copied_messages_status": ((final.get("status") or {}).get("totals") or {}).get("copiedMessages"),
            "lost": lost,
            "duplicated": dup,
            "login_delay_seconds": login_delay,
        }
        ok = (
            jf["duplicate_jobs"] == 0
            and not res["jobs_run_more_than_once"]
            and res["skipped_gates"] == 0
            and lost == 0
            and dup == 0
            and res["copied_messages_status"] == rig.total
        )
        return ok, res
    finally:
        rig.close()


# ---------------------------------------------------------------------------------------- scenario 3
def converge_migration(
    rig: MigrationRig, t_fault: float, complete_after_bulk: bool = True, timeout: float = 600
) -> float:
    """Drive the migration to Completed (complete=true once bulk-copied); seconds from `t_fault`."""
    deadline = time.monotonic() + timeout
    if complete_after_bulk:
        while time.monotonic() < deadline:
            rig.keep_runner_alive()
            if rig.phase() in ("InSync", "Completing", "Completed"):
                break
            time.sleep(0.3)
        rig.patch({"complete": True})
    while time.monotonic() < deadline:
        rig.keep_runner_alive()
        if rig.phase() == "Completed":
            return time.monotonic() - t_fault
        time.sleep(0.3)
    raise AssertionError(f"not Completed in {timeout}s (phase {rig.phase()})\n{rig.op.log_text()[-3000:]}")


def migration_result(rig: MigrationRig) -> tuple[bool, dict[str, Any]]:
    time.sleep(1.0)
    jobs = rig.jobs()
    jf = job_figures(jobs)
    lost, dup = rig.messages()
    final = rig.watch.snapshot()[-1].obj
    runs = rig.runs_per_job()
    res = {
        **jf,
        "jobs_run_more_than_once": sorted(k for k, v in runs.items() if v > 1),
        "jobs_rerun_without_a_pod_failure": rig.reruns_without_failure(),
        "copied_messages_status": ((final.get("status") or {}).get("totals") or {}).get("copiedMessages"),
        "messages": rig.total,
        "lost": lost,
        "duplicated": dup,
        "job_runner_restarts": rig.runner_restarts,
    }
    ok = (
        jf["duplicate_jobs"] == 0
        and not res["jobs_rerun_without_a_pod_failure"]
        and lost == 0
        and dup == 0
        and res["copied_messages_status"] == rig.total
    )
    return ok, res


def mm_apiserver_restart(
    kube: KubeAPI,
    ns: str,
    src: Dovecot,
    dst: Dovecot,
    work: Path,
    restarts: int = 2,
    down_seconds: float = 3.0,
    seed: int = 7,
    mailboxes: int = 10,
    per_mailbox: int = 16,
    login_delay: float = 0.5,
    also: Callable[[float], None] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """kube-apiserver killed (-9) and started again on the same port/etcd `restarts` times while the
    MailMigration copies (Syncing) and then while it completes; the operator process is NOT restarted."""
    rng = random.Random(seed)
    rig = MigrationRig(kube, ns, src, dst, work, mailboxes, per_mailbox, login_delay)
    faults: list[dict[str, Any]] = []
    try:
        rig.start()
        pid = rig.op.pid
        t0 = time.monotonic()
        rig.wait_phase_at_least("Syncing")
        last = t0
        for i in range(restarts):
            if i == restarts - 1 and restarts > 1:
                rig.wait_phase_at_least("InSync")
                rig.patch({"complete": True})
                time.sleep(rng.uniform(0.2, 1.5))
            else:
                time.sleep(rng.uniform(0.5, 3.0))
            at = rig.phase()
            secs = kube.restart_apiserver(down_seconds)
            last = time.monotonic()
            rig.keep_runner_alive()
            faults.append({"phase_at_restart": at, "seconds_until_ready": round(secs, 1)})
            if also is not None:
                also(last)
        converge = converge_migration(rig, last)
        ok, res = migration_result(rig)
        res.update(
            {
                "apiserver_restarts": faults,
                "operator_pid_unchanged": rig.op.running() and rig.op.pid == pid,
                "operator_restarts": rig.op.starts - 1,
                "seconds_to_converge_after_last_restart": round(converge, 1),
                "api_errors_logged": len(
                    re.findall(r"API error|unreachable|ConnectError|retrying", rig.op.log_text())
                ),
            }
        )
        ok = ok and res["operator_pid_unchanged"]
        return ok, res
    finally:
        rig.close()


# ---------------------------------------------------------------------------------------- scenario 4
# An API server whose watches go straight to etcd (no watch cache), so a watch from a compacted
# resourceVersion gets 410 Gone; it also compacts etcd itself every 10 s, as a real one does every 5 min.
WATCH_410_APISERVER_ARGS = ("--watch-cache=false", "--etcd-compaction-interval=10s")
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["list", "watch"]
  resources: [{group: "mailferry.io"}, {group: "batch"}]
- level: None
"""


def audit_args(directory: Path) -> list[str]:
    """kube-apiserver flags for an audit log of list/watch calls on our resources (who listed what)."""
    directory.mkdir(parents=True, exist_ok=True)
    policy = directory / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    return [f"--audit-policy-file={policy}", f"--audit-log-path={directory / 'audit.log'}"]


def _rv(uri: str) -> int:
    m = re.search(r"resourceVersion=(\d+)", uri)
    return int(m.group(1)) if m else 0


def audit_after(log: Path, since: float, agent: str = "kopf") -> list[dict[str, Any]]:
    """Audit events (ResponseComplete/ResponseStarted) from `agent` after epoch `since`."""
    out: list[dict[str, Any]] = []
    if not log.exists():
        return out
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            t = epoch(ev.get("requestReceivedTimestamp"))
            if t is not None and t >= since and str(ev.get("userAgent", "")).startswith(agent):
                out.append(ev)
    return out


GONE_LOG = re.compile(r"Restarting the watch-stream for (\S+)")


def mm_watch_gone(
    kube: KubeAPI,
    ns: str,
    src: Dovecot,
    dst: Dovecot,
    work: Path,
    blackout_seconds: float = 6.0,
    touches: int = 30,
    seed: int = 7,
    mailboxes: int = 10,
    per_mailbox: int = 16,
    login_delay: float = 0.5,
    audit_log: Path | None = None,
) -> tuple[bool, dict[str, Any]]:
    """The operator reaches kube-apiserver through a TCP proxy. Mid-copy the proxy resets every
    connection and refuses new ones for `blackout_seconds`; meanwhile the MailMigration, its
    MailboxSyncs and Jobs change (`touches` annotations each, and the worker's status writes) and etcd
    is compacted. When the proxy lets the operator back, Kopf's watches resume from compacted
    resourceVersions: kube-apiserver must answer 410 Gone (it needs `--watch-cache=false`, or a watch
    cache that no longer holds them) and Kopf re-lists. Checked from the operator's debug log."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    api_proxy = FaultProxy("127.0.0.1", int(kube.server.rsplit(":", 1)[1]), raw=True).start()
    kcfg = proxied_kubeconfig(kube, api_proxy.port, work / "operator-via-proxy.kubeconfig")
    rig = MigrationRig(
        kube,
        ns,
        src,
        dst,
        work,
        mailboxes,
        per_mailbox,
        login_delay,
        operator_kubeconfig=kcfg,
        log_level="debug",
    )
    try:
        rig.start()
        pid = rig.op.pid
        rig.wait_phase_at_least("Syncing")
        time.sleep(rng.uniform(0.5, 2.0))
        at = rig.phase()
        log_before = len(rig.op.log_text())
        api_proxy.refuse(True)
        cut = api_proxy.cut_all()
        t_cut = time.monotonic()
        rev0 = kube.etcd_revision()
        kinds = ["mailmigration", "mailboxsyncs.mailferry.io", "jobs"]
        for i in range(touches):
            for kind in kinds:
                target = [kind, rig.name] if kind == "mailmigration" else [kind, "--all"]
                kube.kubectl("annotate", "--overwrite", "-n", ns, *target, f"chaos.mailferry.io/touch={i}")
        while time.monotonic() - t_cut < blackout_seconds:
            time.sleep(0.2)
        compacted = kube.compact_etcd()
        api_proxy.refuse(False)
        t_back = time.monotonic()
        wall_back = time.time() - 1
        # Kopf reconnects with its last resourceVersion (compacted) -> 410 -> "Restarting the watch-stream"
        seen: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seen = GONE_LOG.findall(rig.op.log_text()[log_before:])
            if len(set(seen)) >= 3:
                break
            time.sleep(0.5)
        converge = converge_migration(rig, t_back)
        ok, res = migration_result(rig)
        after = rig.op.log_text()[log_before:]
        res.update(
            {
                "phase_at_cut": at,
                "connections_reset": cut,
                "etcd_revision_at_cut": rev0,
                "etcd_compacted_to": compacted,
                "blackout_seconds": round(t_back - t_cut, 1),
                "watch_streams_restarted_after_410": sorted(set(seen)),
                "watch_410_restarts": len(seen),
                "operator_pid_unchanged": rig.op.running() and rig.op.pid == pid,
                "seconds_to_converge_after_reconnect": round(converge, 1),
                "watch_errors_other": len(re.findall(r"WatchingError|Error in the watch-stream", after)),
            }
        )
        wanted = {"mailmigrations", "mailboxsyncs", "jobs"}
        got = {s.split(".")[0] for s in seen}
        ok = ok and wanted <= got and res["operator_pid_unchanged"] and res["watch_errors_other"] == 0
        if audit_log is not None:  # the API server's own record: stale watches, then fresh lists
            evs = audit_after(audit_log, wall_back)
            stale = [
                e for e in evs if e.get("verb") == "watch" and _rv(str(e.get("requestURI", ""))) < compacted
            ]
            res["audit_watches_from_compacted_rv"] = len(stale)
            res["audit_relisted_after"] = sorted(
                {e["objectRef"]["resource"] for e in evs if e.get("verb") == "list" and e.get("objectRef")}
            )
            ok = ok and bool(stale) and wanted <= set(res["audit_relisted_after"])
        return ok, res
    finally:
        rig.close()
        api_proxy.stop()
