"""The worker never writes a credential to disk, not even to a file that is gone when it exits.

The worker runs under strace: every write(2)/writev(2)/sendto(2) and every open for writing is in the
trace with its target, so a spooled message body in an unnamed O_TMPFILE counts as much as a file left
behind. Canary passwords for both sides; a 3 MB message makes the IMAP client spool a literal to disk.
"""

from __future__ import annotations

from pathlib import Path

from chaos.mailrun import WorkerRun, compare, endpoint
from fixtures.dovecot import DovecotPair, make_message
from support.canaries import canary, forms
from support.syscall_trace import STRACE_ARGS, Trace, is_file, parse


class TracedRun(WorkerRun):
    def argv(self) -> list[str]:
        return [*STRACE_ARGS, "-o", str(self.workdir / "strace.log"), *super().argv()]


def _within(path: str, roots: list[Path]) -> bool:
    return any(Path(path).is_relative_to(r) for r in roots)


def _found(blob: bytes, values: list[str]) -> list[str]:
    return sorted({v for v in values for f in forms(v) if f.encode() in blob})


def test_worker_writes_no_credential_to_any_file_even_transient_ones(
    dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair
    user = "diskcanary@creds.test"
    src_pw, dst_pw = canary("disk-src"), canary("disk-dst")
    src.add_user(user, src_pw)
    dst.add_user(user, dst_pw)
    src.append(user, "INBOX", [make_message(f"small {i}", size=2000) for i in range(20)])
    src.append(user, "Archive", [make_message("big attachment", size=3_000_000)])

    run = TracedRun(
        tmp_path,
        "creds-on-disk",
        user,
        endpoint(src.host, src.port),
        endpoint(dst.host, dst.port),
        src_pw,
        dst_pw,
    )
    scratch = tmp_path / "scratch"  # the worker's TMPDIR and HOME
    scratch.mkdir()
    cp = run.run(TMPDIR=str(scratch), HOME=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert run.status()["phase"] == "Synced", run.status()
    diff = compare(src, dst, user)
    assert (diff.lost, diff.duplicated, diff.destination) == (0, 0, 21), diff

    trace: Trace = parse(tmp_path / "strace.log")
    files, others = trace.files(), trace.others()
    print(
        f"strace: {trace.calls} write calls, {len(files)} files written "
        f"({sum(map(len, files.values()))} bytes), {sum(map(len, others.values()))} bytes to sockets/pipes"
    )
    for path, data in sorted(files.items()):
        print(f"  {len(data):>9} bytes  {path}")

    # The trace sees what we look for: the big literal went to a (deleted) spool file in TMPDIR, and
    # the passwords did go out, on the IMAP sockets.
    spooled = [p for p, data in files.items() if _within(p, [scratch]) and len(data) >= 1 << 20]
    assert spooled, f"no spooled literal seen in the trace: {sorted(files)}"
    assert set(_found(b"".join(others.values()), [src_pw, dst_pw])) == {src_pw, dst_pw}

    # Nothing but scratch space and the status store was opened for writing, and no file got a canary.
    allowed = [scratch, run.status_dir]
    stray = sorted(p for p in trace.opened_for_write if is_file(p) and not _within(p, allowed))
    assert stray == [], stray
    leaks = {p: _found(data, [src_pw, dst_pw]) for p, data in files.items()}
    assert {p: v for p, v in leaks.items() if v} == {}
