"""Benchmark harness: a real Dovecot pair, a seeded corpus, tools timed side by side.

Each tool runs against a FRESH destination (the destination users' maildirs are wiped
between tools), first a bulk copy, then a no-op delta (the same command again with nothing
changed on the source). A phase's timing is accepted only when the destination holds
exactly the source's message count in every folder (``doveadm mailbox status``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.corpus import Corpus, seed_users
from tests.fixtures.dovecot import MAIL_GID, MAIL_UID, Dovecot


@dataclass
class ProcResult:
    argv: list[str]
    returncode: int
    seconds: float
    # wait4() ru_maxrss; Linux carries the parent's peak across fork+exec, so it is only a fallback
    max_rss_kb: int
    tree_peak_rss_kb: int  # peak of the summed RSS of the process tree, sampled from /proc
    log: Path
    cpu_seconds: float = 0.0  # user + system CPU of the process (and its waited-for children)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class PhaseResult:
    tool: str
    phase: str  # "bulk" | "delta"
    seconds: float
    messages: int
    bytes: int
    procs: list[ProcResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    peak_rss_kb: int = 0
    runs: list[float] = field(default_factory=list)  # seconds of each repeat
    cpu_seconds: float = 0.0  # the tool's own CPU (user + sys, all its processes); servers not included
    server_cpu: tuple[float, float] = (0.0, 0.0)  # CPU used meanwhile by the (source, destination) Dovecot

    @property
    def complete(self) -> bool:
        return not self.problems and all(p.ok for p in self.procs)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------ process running
def redact(argv: Sequence[str]) -> list[str]:
    """Hide password values (``...password=x``) before an argv is logged."""
    return [re.sub(r"(password=).*", r"\1***", a, flags=re.I) for a in argv]


def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over ``root`` and its descendants (best effort, from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            with open(f"/proc/{pid}/statm", "rb") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * (os.sysconf("SC_PAGE_SIZE") // 1024)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    sample_rss: bool = True,
    timeout: float = 3600.0,
) -> ProcResult:
    """Run ``argv`` to completion; wall time, exit code and peak RSS (wait4 rusage, /proc sampling)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(redact(argv))}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    peak = 0
    stop = threading.Event()

    def sampler() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            stop.wait(0.05)

    thread = threading.Thread(target=sampler, daemon=True) if sample_rss else None
    if thread:
        thread.start()
    timer = threading.Timer(timeout, lambda: proc.kill())
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        stop.set()
        if thread:
            thread.join()
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(log, "ab") as out:
        out.write(f"# exit {proc.returncode} after {seconds:.2f}s, maxrss {usage.ru_maxrss} KB\n".encode())
    cpu = usage.ru_utime + usage.ru_stime
    return ProcResult(list(argv), proc.returncode, seconds, usage.ru_maxrss, peak, log, cpu)


def run_parallel(
    jobs: Sequence[tuple[str, Callable[[], ProcResult]]], concurrency: int
) -> tuple[float, list[ProcResult]]:
    """Run the jobs ``concurrency`` at a time; returns (wall seconds, results in job order)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(fn) for _name, fn in jobs]
        results = [f.result() for f in futures]
    return time.perf_counter() - start, results


# ------------------------------------------------------------------ the Dovecot pair
def _proc_cpu(server: Dovecot) -> float:
    """utime+stime+cutime+cstime of the Dovecot master: its own CPU plus every child it has reaped
    (imap processes exit with their connection, so a finished sync is fully counted)."""
    proc = getattr(server, "_proc", None)
    if proc is None or proc.proc is None:
        return 0.0
    try:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


SHM = Path("/dev/shm")
# The name the tools dial over TLS: the fixture's server certificates carry it (and 127.0.0.1, but
# isync 1.4 matches DNS names only), and /etc/hosts maps it to 127.0.0.1, where Dovecot listens.
TLS_HOST = "localhost"


def default_mail_dir(corpus: Corpus) -> Path | None:
    """tmpfs for both servers' maildirs when it has room (3x the corpus): takes the disk out of
    the measurement, so runs compare the tools rather than the page-cache writeback."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < 3 * corpus.bytes + (1 << 30):
        return None
    return SHM / "mailferry-bench"


class BenchServers:
    """Source and destination Dovecot (tests/fixtures/dovecot.py), seeded with a corpus."""

    def __init__(
        self,
        corpus: Corpus,
        users: Sequence[str],
        workdir: Path | None = None,
        mail_dir: Path | None = None,
        tls: bool = False,
    ) -> None:
        self.corpus = corpus
        self.users = list(users)
        self.tls = tls
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mf-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for side in ("source", "destination"):
            shutil.rmtree(self.workdir / side, ignore_errors=True)
            (self.workdir / side).mkdir()
        self.source = Dovecot(self.workdir / "source", "bench-src")
        self.destination = Dovecot(self.workdir / "destination", "bench-dst")
        # Each fixture Dovecot has its own test CA: one bundle lets every tool verify both servers. It sits
        # in the destination's world-readable runtime dir: doveadm reads it after dropping to the mail user.
        self.ca_bundle = self.destination.runtime / "ca-bundle.pem"
        self.ca_bundle.write_bytes(self.source.ca_cert.read_bytes() + self.destination.ca_cert.read_bytes())
        self.ca_bundle.chmod(0o644)
        self.mail_dir = mail_dir if mail_dir is not None else default_mail_dir(corpus)
        self._moved: list[Path] = []
        if self.mail_dir is not None:
            for server in (self.source, self.destination):
                self._relocate(server)

    def _relocate(self, server: Dovecot) -> None:
        """Keep ``server``'s maildirs under ``self.mail_dir`` (e.g. tmpfs): mail_root becomes a symlink."""
        assert self.mail_dir is not None
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=f"{server.name}-", dir=self.mail_dir))
        os.chown(target, MAIL_UID, MAIL_GID)
        target.chmod(0o755)
        server.mail_root.rmdir()
        server.mail_root.symlink_to(target)
        self._moved.append(target)

    def imap_port(self, server: Dovecot) -> int:
        """The port the tools dial: the implicit-TLS listener (IMAPS) with ``tls``, else plain IMAP."""
        return server.tls_port if self.tls else server.port

    def imap_host(self, server: Dovecot) -> str:
        return TLS_HOST if self.tls else server.host

    @property
    def corpus_messages(self) -> int:
        return sum(sum(self.corpus.users[u].folders.values()) for u in self.users)

    @property
    def corpus_bytes(self) -> int:
        return sum(self.corpus.users[u].bytes for u in self.users)

    def start(self) -> BenchServers:
        creds = {u: self.corpus.password(u) for u in self.users}
        self.source.add_users(creds)
        self.destination.add_users(creds)
        seed_users(self.corpus, self.source.mail_root, self.users, MAIL_UID, MAIL_GID)
        self.source.start()
        self.destination.start()
        self.warm_source()
        return self

    def warm_source(self) -> None:
        """Build the source's indexes and read every message once, so no tool pays the first scan."""
        for user in self.users:
            self.source.doveadm("mailbox", "status", "-u", user, "messages vsize", "*")
            self.source.doveadm(
                "fetch", "-u", user, "guid flags date.received size.virtual hdr.message-id", "mailbox", "*"
            )
        subprocess.run(["cat", "--", *map(str, self._source_files())], stdout=subprocess.DEVNULL, check=False)

    def _source_files(self) -> list[Path]:
        return [p for u in self.users for p in (self.source.mail_root / u).rglob("*,S=*") if p.is_file()]

    def server_cpu(self) -> tuple[float, float]:
        """Cumulative CPU seconds of the source and destination Dovecot (master + reaped children)."""
        return (_proc_cpu(self.source), _proc_cpu(self.destination))

    def wipe_destination(self) -> None:
        """Delete every destination user's mail (fresh destination for the next tool)."""
        for user in self.users:
            home = self.destination.mail_root / user
            if home.exists():
                shutil.rmtree(home)
            home.mkdir()
            os.chown(home, MAIL_UID, MAIL_GID)

    def verify(self, users: Sequence[str] | None = None) -> list[str]:
        """Compare destination message counts per folder with the corpus manifest; [] when complete."""
        problems: list[str] = []
        for user in users or self.users:
            expected = self.corpus.users[user].folders
            try:
                got = self.destination.mailbox_status(user, "messages")
            except Exception as exc:
                problems.append(f"{user}: mailbox status failed: {exc}")
                continue
            for folder, n in expected.items():
                have = got.get(folder, {}).get("messages")
                if have is None:
                    if n:
                        problems.append(f"{user}/{folder}: missing on destination (expected {n})")
                elif have != n:
                    problems.append(f"{user}/{folder}: {have} messages, expected {n}")
        return problems

    def flag_summary(self, server: Dovecot, user: str) -> dict[tuple[str, str], int]:
        """{(folder, sorted flags): message count} for ``user`` on ``server``."""
        out = server.doveadm("-f", "tab", "fetch", "-u", user, "mailbox flags", "mailbox", "*")
        summary: dict[tuple[str, str], int] = {}
        for line in out.splitlines()[1:]:
            folder, _, flags = line.partition("\t")
            key = (folder, " ".join(sorted(f for f in flags.split() if f != "\\Recent")))
            summary[key] = summary.get(key, 0) + 1
        return summary

    def internaldate_differences(self, users: Sequence[str] | None = None) -> int:
        """How many messages' INTERNALDATE (per folder, as a multiset) differ between the servers."""
        n = 0
        for user in users or self.users:
            sides = []
            for server in (self.source, self.destination):
                out = server.doveadm(
                    "-f", "tab", "fetch", "-u", user, "mailbox date.received", "mailbox", "*"
                )
                counts: dict[str, int] = {}
                for line in out.splitlines()[1:]:
                    counts[line] = counts.get(line, 0) + 1
                sides.append(counts)
            src, dst = sides
            n += sum(abs(src.get(k, 0) - dst.get(k, 0)) for k in set(src) | set(dst))
        return n

    def flag_differences(self, users: Sequence[str] | None = None) -> list[str]:
        """Folders whose flag/keyword distribution differs between source and destination."""
        diffs: list[str] = []
        for user in users or self.users:
            src, dst = self.flag_summary(self.source, user), self.flag_summary(self.destination, user)
            for key in sorted(set(src) | set(dst)):
                if src.get(key, 0) != dst.get(key, 0):
                    diffs.append(
                        f"{user}/{key[0]} [{key[1]}]: source {src.get(key, 0)}, destination {dst.get(key, 0)}"
                    )
        return diffs

    def stop(self) -> None:
        self.source.destroy()
        self.destination.destroy()
        for d in self._moved:
            shutil.rmtree(d, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def bench_servers(
    corpus: Corpus, users: Sequence[str], workdir: Path | None = None, tls: bool = False
) -> Iterator[BenchServers]:
    servers = BenchServers(corpus, users, workdir, tls=tls)
    try:
        yield servers.start()
    finally:
        servers.stop()
