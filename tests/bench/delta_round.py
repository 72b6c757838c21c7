"""`make bench-delta`: one delta round's cost, next to mbsync and doveadm backup (a benchmark, not a test).

N mailboxes (6 small folders each) on a real source Dovecot, the operator, the real API server and the
local job runner. After the bulk copy, two delta rounds are measured:
  - no-op: nothing changed on the source,
  - 1 %: one new message in INBOX of 1 % of the mailboxes (at least one),
each with wall time (the round's startedAt -> completedAt), CPU seconds per mailbox split by operator /
worker (the job runner's reaped children) / job runner (plays the kubelet) / Dovecot (both) / API server
(+ etcd), API requests per mailbox (the API server's apiserver_request_total, minus this script's own
polling) and the peak RSS of each. Then the same mailboxes through `mbsync` and `doveadm backup -R`
in a shell loop (one command per mailbox, as their users run them from cron), each into a Dovecot of its
own: bulk, no-op, 1 % changed.

    python tests/bench/delta_round.py [--mailboxes 300] [--batch-size 50] [--jobs 4]
    python tests/bench/delta_round.py --mailboxes 10000     # the issue's figure: on a QUIET machine only
    python tests/bench/delta_round.py --mailboxes 10000 --peer-sample 1000  # peers over every 10th mailbox
    python tests/bench/delta_round.py --noop-status-interval 1h   # + the same two rounds under that spec
    python tests/bench/delta_round.py --noop-status-interval 1h --delta-batch-size 200  # + two more

`--noop-status-interval D` then sets `spec.noopStatusInterval: D` (a proved no-op's status left unwritten,
its Job's success the proof) and measures a no-op round and a 1 % round again, in the same run.
`--delta-batch-size K` then adds `spec.deltaBatchSize: K` (Jobs of K mailboxes after the bulk copy) and
measures the two rounds once more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "tools")]

import demolib as d  # noqa: E402
from tests.bench.peers import MBSYNC_BIN, Mbsync  # noqa: E402

from fixtures.dovecot import DOVEADM_BIN, Dovecot, make_message  # noqa: E402
from fixtures.kubeapi import KubeAPI, find_bin_dir, start_envtest  # noqa: E402

NS = "bench"
NAME = "delta"
FOLDERS = ("INBOX", "Sent", "Drafts", "Archive", "Projects", "Receipts")
PER_FOLDER = 2
TICK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 1.0
IDLE_INTERVAL = "24h"  # no round starts by itself: measure_round starts each one
START_INTERVAL = "5s"  # the minimum the operator accepts: the next round is due at once


# ------------------------------------------------------------------ /proc readings
def _stat_fields(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()


def own_cpu(pid: int) -> float:
    """utime + stime."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / TICK


def reaped_cpu(pid: int) -> float:
    """cutime + cstime: the CPU of every child the process has waited for."""
    f = _stat_fields(pid)
    return (int(f[13]) + int(f[14])) / TICK


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    out, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


@dataclass
class Part:
    """One measured party: CPU counters read from `pids()`, peak RSS sampled while a window is open."""

    name: str
    cpu: Callable[[], float]
    rss_kb: Callable[[], int]  # the party's current RSS figure worth keeping the peak of
    peak_kb: int = 0


@dataclass
class Window:
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # "VERB resource" -> count


@contextmanager
def sampled(parts: list[Part]) -> Iterator[None]:
    """Sample every part's RSS every 0.2 s while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for p in parts:
                with suppress(OSError, ValueError):
                    p.peak_kb = max(p.peak_kb, p.rss_kb())
            stop.wait(0.2)

    for p in parts:
        p.peak_kb = 0
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


REQ_RE = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$")


def api_requests(kube: KubeAPI) -> dict[str, int]:
    """apiserver_request_total summed by verb and resource (kube-apiserver's own metrics endpoint)."""
    return count_requests(kube.kubectl("get", "--raw", "/metrics").stdout)


def count_requests(text: str) -> dict[str, int]:
    """Prometheus text -> {"VERB resource[/subresource]": requests}, summed over the other labels."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = REQ_RE.match(line)
        if not m:
            continue
        labels = dict(kv.split("=", 1) for kv in re.findall(r'(\w+="[^"]*")', m.group(1)))
        verb = labels.get("verb", '""').strip('"')
        resource = labels.get("resource", '""').strip('"') or labels.get("subresource", '""').strip('"')
        sub = labels.get("subresource", '""').strip('"')
        key = f"{verb} {resource}{'/' + sub if sub and sub != resource else ''}"
        out[key] = out.get(key, 0) + int(float(m.group(2)))
    return out


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


# ------------------------------------------------------------------ setup
def seed(server: Dovecot, users: list[str], workers: int = 4) -> None:
    """6 folders of PER_FOLDER small messages per mailbox, one IMAP connection per mailbox."""

    def one(user: str) -> None:
        with server.connect_as(user) as c:
            for folder in FOLDERS:
                if folder != "INBOX":
                    c.create(folder)
                for i in range(PER_FOLDER):
                    c.append(folder, None, None, make_message(f"{folder} {i} for {user}", size=800))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, users))


def changed_users(users: list[str], offset: int) -> list[str]:
    """1 % of the mailboxes (at least one), every 100th starting at `offset`."""
    return users[offset::100] or users[:1]


def peer_sample(users: list[str], size: int) -> list[str]:
    """Every k-th mailbox, `size` in all (0 or more than there are: every mailbox)."""
    if size <= 0 or size >= len(users):
        return users
    return users[:: len(users) // size][:size]


def deliver(server: Dovecot, users: list[str], label: str) -> None:
    for user in users:
        server.append(user, "INBOX", [make_message(f"{label} for {user}", size=1200)])


def round_of(kube: KubeAPI) -> dict[str, Any]:
    return (d.migration(kube, NS, NAME).get("status") or {}).get("round") or {}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------ measuring
class Meter:
    def __init__(self, kube: KubeAPI, parts: list[Part]) -> None:
        self.kube = kube
        self.parts = parts
        self.polls = 0  # this script's own API requests, taken off the figures

    def poll_round(self) -> dict[str, Any]:
        self.polls += 1
        return round_of(self.kube)

    def set_interval(self, interval: str) -> None:
        patch = json.dumps({"spec": {"deltaInterval": interval}})
        self.kube.kubectl("patch", "mailmigrations.mailferry.io", NAME, "-n", NS, "--type=merge", "-p", patch)

    def measure_round(self, number: int, timeout: float) -> Window:
        """From round `number`'s start to its completion. Rounds start on demand: the migration's
        deltaInterval is long, set to the minimum until the round starts and back again (so the round's
        end is seen as completedAt instead of the next round starting at once)."""
        deadline = time.monotonic() + timeout
        if number > 1:
            self.set_interval(START_INTERVAL)
        while int(self.poll_round().get("number", 0)) < number:
            if time.monotonic() > deadline:
                raise TimeoutError(f"round {number} did not start")
            time.sleep(0.1)
        if number > 1:
            self.set_interval(IDLE_INTERVAL)
        polls0, req0 = self.polls, api_requests(self.kube)
        cpu0 = {p.name: p.cpu() for p in self.parts}
        with sampled(self.parts):
            while not (rnd := self.poll_round()).get("completedAt"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"round {number} did not complete")
                time.sleep(POLL_SECONDS)
        window = Window(seconds=ts(rnd["completedAt"]) - ts(rnd["startedAt"]))
        window.cpu = {p.name: p.cpu() - cpu0[p.name] for p in self.parts}
        window.peak_mb = {p.name: p.peak_kb / 1024 for p in self.parts}
        window.requests = diff(api_requests(self.kube), req0)
        own = self.polls - polls0
        for key, mine in (("get mailmigrations", own), ("patch mailmigrations", 1 if number > 1 else 0)):
            window.requests[key] = max(0, window.requests.get(key, 0) - mine)
        window.requests = {k: v for k, v in window.requests.items() if v and "metrics" not in k}
        return window


def shell_loop(script: str, work: Path, servers: list[Dovecot]) -> Window:
    """Run a bash loop; wall time, its CPU (bash + every command it waited for), the Dovecots' CPU."""
    path = work / "loop.sh"
    path.write_text(script)
    path.chmod(0o700)
    dovecot0 = sum(dovecot_cpu(s) for s in servers)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    errors = work / "loop.stderr"
    with errors.open("wb") as err:  # a file, not a pipe: 1,000 mbsync warnings would fill a pipe and block
        proc = subprocess.Popen(["bash", str(path)], stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max([peak, *(status_kb(p, "VmRSS") for p in descendants(proc.pid))])
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tool_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode:
        print(f"  loop exited {proc.returncode}: {errors.read_text(errors='replace')[-400:]}")
    return Window(
        seconds=seconds,
        cpu={"tool": tool_cpu, "dovecot": sum(dovecot_cpu(s) for s in servers) - dovecot0},
        peak_mb={"tool": peak / 1024},
    )


def dovecot_master(server: Dovecot) -> int:
    return int(server._proc.pid)


def dovecot_rss_kb(servers: tuple[Dovecot, ...]) -> int:
    """Summed RSS of the Dovecot masters and all their processes."""
    pids = [q for s in servers for q in (dovecot_master(s), *descendants(dovecot_master(s)))]
    return sum(status_kb(q, "VmRSS") for q in pids)


def dovecot_cpu(server: Dovecot) -> float:
    pid = dovecot_master(server)
    return own_cpu(pid) + reaped_cpu(pid) + sum(own_cpu(p) for p in descendants(pid) if _alive(p))


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# ------------------------------------------------------------------ peers
def mbsync_script(src: Dovecot, dst: Dovecot, users: list[str], work: Path) -> str:
    shim = SimpleNamespace(  # what Mbsync reads of the bench's Servers (harness.py), plain IMAP
        source=src,
        destination=dst,
        corpus=SimpleNamespace(password=src.users.__getitem__),
        tls=False,
        imap_host=lambda server: server.host,
        imap_port=lambda server: server.port,
    )
    peer = Mbsync(shim, work / "mbsync")  # type: ignore[arg-type]
    lines = [f'"{MBSYNC_BIN}" -q -c "{peer.config(u)}" -a' for u in users]
    return "set -u\n" + "\n".join(lines) + "\n"


def doveadm_script(src: Dovecot, dst: Dovecot, users: list[str]) -> str:
    lines = []
    for u in users:
        argv = [
            DOVEADM_BIN, "-c", str(dst.conf), "-o", f"imapc_host={src.host}", "-o", f"imapc_port={src.port}",
            "-o", f"imapc_user={u}", "-o", f"imapc_password={src.users[u]}", "-o", "imapc_ssl=no",
            "-o", "imapc_features=rfc822.size fetch-headers", "backup", "-R", "-u", u, "imapc:",
        ]  # fmt: skip
        lines.append(" ".join(f"'{a}'" for a in argv))
    return "set -u\n" + "\n".join(lines) + "\n"


# ------------------------------------------------------------------ report
def report(title: str, n: int, w: Window) -> None:
    total_req = sum(w.requests.values())
    print(f"\n{title}: {w.seconds:.1f} s wall for {n} mailboxes")
    for name, cpu in w.cpu.items():
        per = 1000 * cpu / n
        peak = f"   peak RSS {w.peak_mb[name]:6.0f} MB" if name in w.peak_mb else ""
        print(f"  CPU {name:<12} {cpu:8.2f} s = {per:7.2f} ms/mailbox{peak}")
    if w.requests:
        print(f"  API requests {total_req} = {total_req / n:.2f} per mailbox")
        for key, count in sorted(w.requests.items(), key=lambda kv: -kv[1])[:12]:
            print(f"    {count:7d}  {key}")


def extra_rounds(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, label, spec patch) of each pair of extra rounds (no-op, then 1 %), settings adding up."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    spec: dict[str, Any] = {}
    if args.noop_status_interval:
        spec["noopStatusInterval"] = args.noop_status_interval
        out.append(("quiet", f"noopStatusInterval {args.noop_status_interval}", dict(spec)))
    if args.delta_batch_size:
        spec["deltaBatchSize"] = args.delta_batch_size
        label = ", ".join(f"{k} {v}" for k, v in spec.items())
        out.append(("large_jobs", label, dict(spec)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mailboxes", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--jobs", type=int, default=4, help="maxConcurrentJobs")
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument(
        "--peer-sample",
        type=int,
        default=0,
        help="run the peers over every k-th mailbox only, this many in all (0: all): each peer command"
        " serves one mailbox, so their cost per mailbox does not depend on how many share the Dovecot",
    )
    p.add_argument("--noop-status-interval", help="then two more rounds under spec.noopStatusInterval")
    p.add_argument(
        "--delta-batch-size",
        type=int,
        help="then two more rounds with spec.deltaBatchSize (and the interval)",
    )
    p.add_argument("--json", type=Path, help="write the figures here as JSON")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    n = args.mailboxes
    work = Path(tempfile.mkdtemp(prefix="mailferry-bench-delta-"))
    print(
        f"bench-delta: {n} mailboxes x {len(FOLDERS)} folders; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    figures: dict[str, Any] = {"mailboxes": n, "load_average": os.getloadavg()[0]}
    with ExitStack() as stack:
        stack.callback(lambda: None if args.keep else shutil.rmtree(work, True))
        kube = start_envtest(work / "kube", find_bin_dir())
        stack.callback(kube.stop)
        kube.install_crds()
        org = d.make_org(n, domain="bench.test", prefix="u")
        servers = d.start_dovecots(stack, work, ("source", "destination", "mbsync", "doveadm"), "delta", org)
        src, dst = servers["source"], servers["destination"]
        users = org.addresses
        t = time.monotonic()
        seed(src, users)
        print(f"seeded {n * len(FOLDERS) * PER_FOLDER} messages in {time.monotonic() - t:.0f} s", flush=True)
        kube.kubectl("create", "namespace", NS)
        runner = d.JobRunnerProcess(kube, [NS], work).start()
        stack.callback(runner.stop)
        operator = d.OperatorProcess(kube, [NS], work).start()
        stack.callback(operator.stop)
        csv = d.same_address_inventory(users)
        manifest = d.migration_manifest(
            NAME, NS, src, dst, inventory_configmap="inventory",
            batchSize=args.batch_size, maxConcurrentJobs=args.jobs, deltaInterval=IDLE_INTERVAL,
        )  # fmt: skip
        for side in ("source", "destination"):
            manifest["spec"][side]["auth"]["secretRef"]["name"] = "creds"
        d.apply(
            kube,
            d.inventory_manifest("inventory", NS, csv),
            d.secret_manifest("creds", NS, d.credentials(org)),
            verb=("create",),
        )
        d.apply(kube, manifest)
        kube_pids = {pr.name: pr.pid for pr in kube._procs}
        runner_pid = runner.proc.pid
        parts = [
            Part("operator", lambda: own_cpu(operator.pid), lambda: status_kb(operator.pid, "VmRSS")),
            Part(
                "worker",
                lambda: reaped_cpu(runner_pid),
                lambda: max([0, *(status_kb(q, "VmRSS") for q in descendants(runner_pid))]),
            ),
            Part("jobrunner", lambda: own_cpu(runner_pid), lambda: status_kb(runner_pid, "VmRSS")),
            Part(
                "dovecot",
                lambda: dovecot_cpu(src) + dovecot_cpu(dst),
                lambda: dovecot_rss_kb((src, dst)),
            ),
            Part(
                "apiserver",
                lambda: own_cpu(kube_pids["kube-apiserver"]),
                lambda: status_kb(kube_pids["kube-apiserver"], "VmRSS"),
            ),
            Part("etcd", lambda: own_cpu(kube_pids["etcd"]), lambda: status_kb(kube_pids["etcd"], "VmRSS")),
        ]
        meter = Meter(kube, parts)
        timeout = max(600.0, n * 0.5)
        bulk = meter.measure_round(1, timeout)
        report("bulk copy (round 1)", n, bulk)
        noop = meter.measure_round(2, timeout)
        report("no-op delta round (round 2)", n, noop)
        changed = changed_users(users, 0)
        deliver(src, changed, "delta mail")
        one_pct = meter.measure_round(3, timeout)
        report(f"delta round with {len(changed)} mailboxes changed (round 3)", n, one_pct)
        missing = [u for u in changed if d.folder_counts(dst, u).get("INBOX", 0) != PER_FOLDER + 1]
        print(f"  changed mailboxes carried over: {len(changed) - len(missing)}/{len(changed)}")
        figures["mailferry"] = {"bulk": bulk.__dict__, "noop": noop.__dict__, "one_percent": one_pct.__dict__}
        number = 4
        for key, label, patch in extra_rounds(args):
            kube.kubectl(
                "patch", "mailmigrations.mailferry.io", NAME, "-n", NS, "--type=merge",
                "-p", json.dumps({"spec": patch}),
            )  # fmt: skip
            quiet = meter.measure_round(number, timeout)
            report(f"no-op delta round, {label} (round {number})", n, quiet)
            changed = changed_users(users, number - 1)
            deliver(src, changed, f"delta mail, {key}")
            quiet_pct = meter.measure_round(number + 1, timeout)
            report(
                f"delta round with {len(changed)} mailboxes changed, {label} (round {number + 1})",
                n,
                quiet_pct,
            )
            missing = [u for u in changed if d.folder_counts(dst, u).get("INBOX", 0) != PER_FOLDER + 1]
            print(f"  changed mailboxes carried over: {len(changed) - len(missing)}/{len(changed)}")
            figures["mailferry"] |= {f"noop_{key}": quiet.__dict__, f"one_percent_{key}": quiet_pct.__dict__}
            number += 2
        if not args.skip_peers:
            sample = peer_sample(users, args.peer_sample)
            if len(sample) < n:
                print(f"\npeers: a sample of {len(sample)} of the {n} mailboxes (every {n // len(sample)}th)")
            figures["peer_mailboxes"] = len(sample)
            for name, make in (
                ("mbsync", lambda: mbsync_script(src, servers["mbsync"], sample, work)),
                ("doveadm backup", lambda: doveadm_script(src, servers["doveadm"], sample)),
            ):
                peer_dst = servers["mbsync" if name == "mbsync" else "doveadm"]
                script = make()
                runs = {}
                for phase in ("bulk", "noop", "one_percent"):
                    if phase == "one_percent":
                        deliver(src, changed_users(sample, 1 if name == "mbsync" else 2), f"{name} mail")
                    w = shell_loop(script, work, [src, peer_dst])
                    report(f"{name} loop, {phase}", len(sample), w)
                    runs[phase] = w.__dict__
                figures[name] = runs
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        if args.keep:
            print(f"work dir kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
