"""`make bench`: time mailferry against mbsync and doveadm backup (imapc) on one generated corpus.

    python tests/bench/run.py [--users 10] [--messages 1000] [--concurrency 4] [--tools ...]

Bench is measurement, not a test: it exits 0 on a missed target (prints MISS); it exits
non-zero only when the harness itself cannot run. A tool whose copy is incomplete gets no
timing (shown as INCOMPLETE).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import pstats
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.corpus import CorpusParams, load_or_generate
from tests.bench.harness import BenchServers, PhaseResult, ProcResult, run_parallel
from tests.bench.mailferry_runner import MailferryRunner, mailferry_available
from tests.bench.peers import PEERS, doveadm_version, mbsync_version

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOOLS = ("doveadm-backup", "mbsync", "mailferry")
RSS_TARGET_MB = 150.0


def aggregate(runs: Sequence[PhaseResult]) -> PhaseResult:
    """One row per tool and phase: the median wall time of the repeats; incomplete if any run was."""
    first = runs[0]
    secs = sorted(r.seconds for r in runs)
    agg = PhaseResult(first.tool, first.phase, statistics.median(secs), first.messages, first.bytes)
    agg.procs = [p for r in runs for p in r.procs]
    agg.problems = [p for r in runs for p in r.problems]
    agg.peak_rss_kb = max(r.peak_rss_kb for r in runs)
    agg.runs = [r.seconds for r in runs]
    agg.cpu_seconds = statistics.median(r.cpu_seconds for r in runs)
    agg.server_cpu = (
        statistics.median(r.server_cpu[0] for r in runs),
        statistics.median(r.server_cpu[1] for r in runs),
    )
    return agg


def _phase_result(
    servers: BenchServers,
    tool: str,
    phase: str,
    seconds: float,
    procs: list[ProcResult],
    cpu_before: tuple[float, float] = (0.0, 0.0),
) -> PhaseResult:
    after = servers.server_cpu()
    problems = [f"{Path(p.argv[0]).name} exited {p.returncode} (log {p.log})" for p in procs if not p.ok]
    problems += servers.verify()
    r = PhaseResult(tool, phase, seconds, servers.corpus_messages, servers.corpus_bytes, procs, problems)
    r.peak_rss_kb = max((p.tree_peak_rss_kb or p.max_rss_kb for p in procs), default=0)
    r.cpu_seconds = sum(p.cpu_seconds for p in procs)
    r.server_cpu = (after[0] - cpu_before[0], after[1] - cpu_before[1])
    _print_phase(r)
    return r


Cycle = Callable[[int], list[PhaseResult]]


def peer_cycle(servers: BenchServers, name: str, workdir: Path, concurrency: int) -> Cycle:
    """One repeat of a peer: fresh destination and state, bulk, then no-op delta."""
    peer = PEERS[name](servers, workdir / name)

    def cycle(rep: int) -> list[PhaseResult]:
        servers.wipe_destination()
        peer.reset()
        out = []
        for phase in ("bulk", "delta"):
            jobs = [(u, peer.job(u, phase)) for u in servers.users]
            print(
                f"bench: {name} {phase} #{rep + 1} ({len(jobs)} mailboxes, {concurrency} at once) ...",
                flush=True,
            )
            before = servers.server_cpu()
            seconds, procs = run_parallel(jobs, concurrency)
            out.append(_phase_result(servers, name, phase, seconds, procs, before))
        return out

    return cycle


def mailferry_cycle(servers: BenchServers, runner: MailferryRunner) -> Cycle:
    """One repeat of mailferry: fresh destination and MailboxSyncs, bulk, then no-op delta."""

    def cycle(rep: int) -> list[PhaseResult]:
        servers.wipe_destination()
        runner.reset()  # fresh MailboxSync objects: no checkpoints
        out = []
        for phase in ("bulk", "delta"):
            print(
                f"bench: mailferry {phase} #{rep + 1} ({len(servers.users)} mailboxes, "
                f"{runner.concurrency} at once) ...",
                flush=True,
            )
            before = servers.server_cpu()
            proc = runner.sync(phase)
            out.append(_phase_result(servers, "mailferry", phase, proc.seconds, [proc], before))
        return out

    return cycle


def _repeat(cycle: Cycle, repeats: int) -> list[PhaseResult]:
    runs = [cycle(rep) for rep in range(repeats)]
    return [aggregate([r[0] for r in runs]), aggregate([r[1] for r in runs])]


def run_peer(
    servers: BenchServers, name: str, workdir: Path, concurrency: int, repeats: int
) -> list[PhaseResult]:
    return _repeat(peer_cycle(servers, name, workdir, concurrency), repeats)


def run_mailferry(servers: BenchServers, workdir: Path, concurrency: int, repeats: int) -> list[PhaseResult]:
    with MailferryRunner(servers, workdir / "mailferry", concurrency) as runner:
        return _repeat(mailferry_cycle(servers, runner), repeats)


PROFILE_EXCERPTS: list[str] = []


def _excerpt(prof: Path, n: int) -> str:
    """Total time plus the top ``n`` functions by own time, with paths shortened."""
    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.sort_stats("tottime").print_stats(n)
    lines = []
    for line in buf.getvalue().splitlines():
        stripped = line.strip()
        if "function calls" in line or stripped.startswith("ncalls") or stripped[:1].isdigit():
            lines.append(line.replace(str(REPO) + "/", "").replace(sys.prefix + "/", "").rstrip())
    return "\n".join(lines)


def profile_mailferry(servers: BenchServers, runner: MailferryRunner, out_dir: Path) -> list[str]:
    """An extra, untimed bulk + delta under cProfile; writes the top functions next to the logs."""
    notes = []
    servers.wipe_destination()
    runner.reset()
    for phase in ("bulk", "delta"):
        prof = out_dir / f"{phase}.prof"
        print(f"bench: mailferry {phase} under cProfile (not timed) ...", flush=True)
        proc = runner.sync(phase, profile=prof)
        if not proc.ok or not prof.exists():
            notes.append(f"mailferry {phase} profile failed (log {proc.log})")
            continue
        buf = io.StringIO()
        stats = pstats.Stats(str(prof), stream=buf)
        stats.sort_stats("tottime").print_stats(25)
        text = out_dir / f"{phase}-profile.txt"
        text.write_text(buf.getvalue())
        PROFILE_EXCERPTS.append(
            f"mailferry {phase} under cProfile, top 12 by own time:\n" + _excerpt(prof, 12)
        )
        print(f"bench: mailferry {phase} profile: {text} (pstats: {prof})", flush=True)
        notes.append(f"mailferry {phase} profile (cProfile, top 25 by own time): {text}")
    return notes


def announced(servers: BenchServers) -> str:
    """Which of CONDSTORE/QRESYNC the source announces (what a delta round can lean on)."""
    with servers.source.connect_as(servers.users[0]) as c:
        _, data = c.capability()
        caps = set(b" ".join(x for x in data if isinstance(x, bytes)).decode().upper().split())
    have = [x for x in ("CONDSTORE", "QRESYNC") if x in caps]
    return "+".join(have) or "neither CONDSTORE nor QRESYNC"


def flag_note(servers: BenchServers, tool: str) -> str:
    diffs = servers.flag_differences()
    msg = f"{tool}: flags/keywords per folder {'identical to the source' if not diffs else 'DIFFER'}"
    if diffs:
        msg += f" ({len(diffs)} folder/flag-set counts differ, e.g. {'; '.join(diffs[:3])})"
    dates = servers.internaldate_differences()
    msg += "; INTERNALDATE " + ("preserved" if not dates else f"DIFFERS for {dates} message(s)")
    print(f"bench: {msg}", flush=True)
    return msg


def _print_phase(r: PhaseResult) -> None:
    state = "complete" if r.complete else "INCOMPLETE: " + "; ".join(r.problems[:5])
    print(
        f"bench:   {r.tool} {r.phase}: {r.seconds:.2f}s, {r.msgs_per_s:.0f} msg/s, "
        f"CPU {r.cpu_seconds:.2f}s (servers {r.server_cpu[0]:.2f}/{r.server_cpu[1]:.2f}s), {state}",
        flush=True,
    )


# ------------------------------------------------------------------ reporting
def _find(results: Sequence[PhaseResult], tool: str, phase: str) -> PhaseResult | None:
    for r in results:
        if r.tool == tool and r.phase == phase and r.complete:
            return r
    return None


def table(results: Sequence[PhaseResult]) -> str:
    rows = [
        (
            "tool",
            "phase",
            "seconds (median)",
            "runs",
            "messages/s",
            "MB/s",
            "speedup mailferry vs tool",
            "tool CPU s",
            "server CPU s src/dst",
            "peak RSS MB",
        )
    ]
    for r in results:
        mf = _find(results, "mailferry", r.phase)
        if r.complete:
            secs, rate = f"{r.seconds:.2f}", f"{r.msgs_per_s:.0f}"
            mbs = f"{r.bytes / 1e6 / r.seconds:.1f}" if r.phase == "bulk" else "-"
        else:
            secs, rate, mbs = "INCOMPLETE", "-", "-"
        runs = " ".join(f"{x:.2f}" for x in r.runs)
        if r.tool == "mailferry" or not r.complete or mf is None:
            ratio = "-"
        else:
            ratio = f"{r.seconds / mf.seconds:.2f}x"
        cpu = f"{r.cpu_seconds:.2f}"
        srv = f"{r.server_cpu[0]:.2f} / {r.server_cpu[1]:.2f}"
        rows.append((r.tool, r.phase, secs, runs, rate, mbs, ratio, cpu, srv, f"{r.peak_rss_kb / 1024:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def targets(results: Sequence[PhaseResult]) -> list[tuple[str, str, str]]:
    """(target, PASS/MISS/N/A, detail)."""
    out: list[tuple[str, str, str]] = []
    mf_bulk, mf_delta = _find(results, "mailferry", "bulk"), _find(results, "mailferry", "delta")
    dv_bulk, mb_delta = _find(results, "doveadm-backup", "bulk"), _find(results, "mbsync", "delta")
    if mf_bulk and dv_bulk:
        ratio = dv_bulk.seconds / mf_bulk.seconds
        out.append(("bulk >= 1.0x doveadm backup", "PASS" if ratio >= 1.0 else "MISS", f"{ratio:.2f}x"))
    else:
        out.append(("bulk >= 1.0x doveadm backup", "N/A", "missing or incomplete run"))
    if mf_delta and mb_delta:
        ratio = mb_delta.seconds / mf_delta.seconds
        out.append(("no-op delta no slower than mbsync", "PASS" if ratio >= 1.0 else "MISS", f"{ratio:.2f}x"))
    else:
        out.append(("no-op delta no slower than mbsync", "N/A", "missing or incomplete run"))
    mf = [r for r in results if r.tool == "mailferry" and r.procs]
    if mf:
        peak = max(r.peak_rss_kb for r in mf) / 1024
        out.append(
            (
                f"peak RSS <= {RSS_TARGET_MB:.0f} MB",
                "PASS" if peak <= RSS_TARGET_MB else "MISS",
                f"{peak:.0f} MB",
            )
        )
    else:
        out.append((f"peak RSS <= {RSS_TARGET_MB:.0f} MB", "N/A", "mailferry did not run"))
    return out


def machine() -> str:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    ram = mem_kb / 1024 / 1024
    return f"nproc {os.cpu_count()}, RAM {ram:.1f} GiB, {cpu}, {platform.system()} {platform.release()}"


def run_report(
    results: Sequence[PhaseResult],
    params: CorpusParams,
    corpus_mb: float,
    messages: int,
    command: str,
    notes: Sequence[str],
) -> str:
    """What one run measured, where and how: the plaintext "Last run" and the TLS section both show it."""
    software = (
        f"Dovecot {doveadm_version()}, isync {'.'.join(map(str, mbsync_version()))}, "
        f"Python {platform.python_version()}"
    )
    tgt = "\n".join(f"| {t} | {s} | {d} |" for t, s, d in targets(results))
    return (
        f"""- date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
- machine: {machine()}
- software: {software}
- corpus: seed {params.seed}, {params.users} users x {params.messages} messages = {messages} messages,
  {corpus_mb:.0f} MB (70% 2-20 KB, 25% 20-200 KB, 5% 200 KB-3 MB base64 attachments; six folders
  plus an empty parent; \\Seen \\Answered \\Flagged \\Draft and keywords)
- command: `{command}`

{table(results)}

| target | result | measured |
|---|---|---|
{tgt}

"""
        + ("\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
        + "".join(f"\n```\n{e}\n```\n" for e in PROFILE_EXCERPTS)
    )


def write_doc(path: Path, report: str, concurrency: int) -> None:
    text = (
        f"""# Benchmarks

`make bench` (tests/bench/) generates a deterministic corpus, seeds it straight into a source
Dovecot 2.3 (maildir files, no IMAP), and times, in the same run and against a fresh destination
Dovecot each time, **mailferry**, **mbsync** (Debian isync) and **doveadm backup** over imapc (the
dsync engine): a bulk copy, then a no-op delta (the same sync again with nothing changed).
{concurrency} mailboxes are synced at once. A timing is accepted only after the destination holds
the source's message count in every folder (`doveadm mailbox status`).
"speedup" is peer seconds / mailferry seconds (> 1 means mailferry is faster).

## Last run

"""
        + report
        + f"""
## Reading the numbers

- doveadm backup reads the source over IMAP but writes the destination's maildir directly (it runs
  on the destination host): it never pays the destination IMAP server's APPEND path. Beating it
  over IMAP on both sides means being cheaper per message than a C process that skips half the work.
- A no-op delta is mostly fixed cost: process start, logins, one STATUS/SELECT per folder. mbsync
  is a small C binary; mailferry pays the Python interpreter, its imports, the MailboxSync reads
  and status patches through the API server.
- isync 1.4 does not propagate user keywords (hence its flag differences above); dsync and
  mailferry do. Only complete copies get a timing.
- Peers run one process per mailbox, so their peak RSS is per mailbox; mailferry runs all
  mailboxes in one process, so its peak covers {concurrency} mailboxes at once.

## Method

- Both Dovecot servers are tests/fixtures/dovecot.py instances on loopback (plain IMAP, maildir,
  `mail_fsync` default). Source indexes are built and every message file is read once before the
  first tool runs, so no tool pays the first scan or cold disk reads.
- mbsync: one `mbsync -a` per mailbox, `Sync Pull`, `Create Near`, `Patterns *`,
  `CopyArrivalDate yes`; the delta reuses mbsync's sync state from the bulk run.
- doveadm backup: `doveadm -c <destination conf> -o imapc_host=... -o imapc_port=... -o imapc_user=...
  -o imapc_password=... -o imapc_features="rfc822.size fetch-headers" -o mail_prefetch_count=20
  backup -R -u <user> imapc:` per mailbox: it reads the source over IMAP and writes the
  destination's maildir directly (no IMAP on the destination side).
- mailferry: one `mailferry-worker sync` process with MAILFERRY_MAILBOXSYNCS naming all mailboxes and
  MAILFERRY_MAILBOX_CONCURRENCY={concurrency}, reading MailboxSync objects from a real kube-apiserver.
  Peak RSS is sampled from /proc for every tool (wait4() ru_maxrss would include the harness's
  own peak: Linux carries it across fork+exec).
- Seconds are wall time for all mailboxes (first start to last exit); the median of the repeats
  (each repeat against a fresh destination; repeats interleaved across tools).
- "tool CPU s" is the tool's own user+system CPU (wait4 rusage, summed over its processes, median of
  the repeats); it excludes the Dovecot servers and is much less sensitive to machine load than wall
  time. doveadm backup's CPU includes writing the destination maildir, which for the IMAP tools is
  done by the destination Dovecot and not counted.
- "server CPU s src/dst" is the CPU the source and destination Dovecot used during the phase (the
  master's own plus its reaped children's, i.e. the imap processes of that sync; median of the
  repeats). On a 2-CPU machine, tool + servers CPU close to 2 x wall time means CPU-bound;
  far below means the tool is waiting on round trips.
"""
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + _other_sections(path))


TLS_BEGIN, TLS_END = "<!-- bench-tls:begin -->", "<!-- bench-tls:end -->"


def write_tls_section(path: Path, report: str, concurrency: int) -> None:
    """The TLS run's own marked section: replaced in place, or added at the end. A plaintext run keeps
    everything from the first marker on, so each run leaves the other's figures as they are."""
    section = f"""{TLS_BEGIN}
## Over TLS (`make bench-tls`, tests/bench/run.py --tls)

The mail benchmark above with every IMAP connection over TLS, as real providers serve it: both Dovecots
serve implicit TLS (IMAPS, the port-993 style) with certificates of a test CA, and every tool verifies
them: mailferry (endpoint `security: tls`, `tlsVerify: true`, the CA bundle in `MAILFERRY_CA_FILE`),
mbsync (`SSLType`/`TLSType IMAPS`, `CertificateFile`) and doveadm backup's imapc (`imapc_ssl=imaps`,
`ssl_client_ca_file`). Same corpus, repeats, verification and tables; {concurrency} mailboxes at once.
doveadm backup still writes the destination's maildir directly, so only its source side is TLS; mailferry
and mbsync pay TLS on both sides (and so does the destination Dovecot, whose imap-login process
terminates TLS and relays to the imap process on both servers).

{report}{TLS_END}"""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    if TLS_BEGIN in text and TLS_END in text:
        text = text[: text.index(TLS_BEGIN)] + section + text[text.index(TLS_END) + len(TLS_END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _other_sections(path: Path) -> str:
    """Sections other benchmarks own (from the first `<!-- name:begin -->` marker on), kept as they are."""
    try:
        existing = path.read_text()
    except FileNotFoundError:
        return ""
    start = existing.find("\n<!-- ")
    return existing[start:] if start >= 0 else ""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=CorpusParams.seed)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument(
        "--tools", default=",".join(DEFAULT_TOOLS), help="comma-separated: " + ", ".join(DEFAULT_TOOLS)
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per tool (fresh destination each); median shown"
    )
    ap.add_argument(
        "--mail-dir",
        default="auto",
        help="where both servers keep their maildirs (default: /dev/shm when it has room, else /tmp)",
    )
    ap.add_argument(
        "--tls",
        action="store_true",
        help="every tool over implicit TLS (IMAPS) to both servers; writes the doc's bench-tls section",
    )
    ap.add_argument("--profile", action="store_true", help="also run mailferry once under cProfile (untimed)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep configs and logs here")
    ap.add_argument(
        "--doc", default=str(REPO / "docs" / "benchmarks.md"), help="write results here ('' to skip)"
    )
    args = ap.parse_args(argv)
    command = "python tests/bench/run.py " + shlex.join(list(argv) if argv is not None else sys.argv[1:])

    params = CorpusParams(seed=args.seed, users=args.users, messages=args.messages)
    t0 = time.perf_counter()
    corpus = load_or_generate(params)
    print(
        f"bench: corpus {corpus.path.name}: {corpus.messages} messages, {corpus.bytes / 1e6:.0f} MB "
        f"({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    notes: list[str] = []
    results: list[PhaseResult] = []
    workdir = args.workdir
    mail_dir = None if args.mail_dir in (None, "auto") else Path(args.mail_dir)
    servers = BenchServers(corpus, params.user_names(), workdir, mail_dir, tls=args.tls)
    load_before = os.getloadavg()
    try:
        t0 = time.perf_counter()
        servers.start()
        print(
            f"bench: source {servers.source!r} seeded, destination {servers.destination!r} "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
        caps = announced(servers)
        print(
            f"bench: the source announces {caps} (mailferry's no-op delta: one STATUS per folder)", flush=True
        )
        notes.append(f"no-op delta: the source Dovecot announces {caps}")
        logs = servers.workdir / "tools"
        with contextlib.ExitStack() as stack:
            cycles: dict[str, Cycle] = {}
            for tool in tools:
                if tool == "mailferry":
                    ok, why = mailferry_available()
                    if not ok:
                        print(f"bench: mailferry SKIPPED: {why}", flush=True)
                        notes.append(f"mailferry was not run: {why}")
                        continue
                    try:
                        runner = stack.enter_context(
                            MailferryRunner(servers, logs / "mailferry", args.concurrency)
                        )
                    except Exception as exc:  # the peers still get measured
                        print(f"bench: mailferry SKIPPED: API server set-up failed: {exc}", flush=True)
                        notes.append(f"mailferry was not run: API server set-up failed: {str(exc)[:300]}")
                        continue
                    cycles[tool] = mailferry_cycle(servers, runner)
                elif tool in PEERS:
                    cycles[tool] = peer_cycle(servers, tool, logs, args.concurrency)
                else:
                    ap.error(f"unknown tool {tool!r}")
            # Repeats are interleaved (A B C A B C ...) so a change in machine load hits every tool alike.
            runs: dict[str, list[list[PhaseResult]]] = {t: [] for t in cycles}
            for rep in range(args.repeat):
                for tool, cycle in cycles.items():
                    runs[tool].append(cycle(rep))
                    if rep == 0:
                        notes.append(flag_note(servers, tool))
            for tool in cycles:
                results += [aggregate([r[0] for r in runs[tool]]), aggregate([r[1] for r in runs[tool]])]
            if args.profile and "mailferry" in cycles:
                notes += profile_mailferry(servers, runner, logs / "mailferry")
    finally:
        servers.stop()  # keeps --workdir (configs, logs); always deletes the maildirs
    load_after = os.getloadavg()
    where = f"tmpfs ({servers.mail_dir})" if servers.mail_dir else "disk (/tmp)"
    notes.append(f"maildirs of both servers on {where}")
    notes.append(
        f"load average (1 min) before/after the run: {load_before[0]:.1f} / {load_after[0]:.1f} "
        f"on {os.cpu_count()} CPUs (anything else running on the machine shows up as noise)"
    )
    print()
    print(table(results))
    print()
    for t, s, d in targets(results):
        print(f"{s:5} {t} ({d})")
    if args.doc:
        report = run_report(results, params, corpus.bytes / 1e6, corpus.messages, command, notes)
        (write_tls_section if args.tls else write_doc)(Path(args.doc), report, args.concurrency)
        print(f"bench: results written to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
