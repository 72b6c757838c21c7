"""The strace log parser behind the credentials-on-disk test: exact bytes per target, whatever the call."""

from __future__ import annotations

from pathlib import Path

from support.syscall_trace import parse


def hx(s: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in s)


def test_writes_are_joined_per_target_and_files_told_from_sockets(tmp_path: Path) -> None:
    spool, sock = hx(b"/tmp/x/#123"), hx(b"TCP:[127.0.0.1:1->127.0.0.1:2]")
    log = tmp_path / "strace.log"
    log.write_text(
        "\n".join(
            [
                f'10 openat(AT_FDCWD<{hx(b"/")}>, "{hx(b"/tmp/x")}", O_RDWR|O_EXCL|O_TMPFILE, 0600)'
                f" = 3<{spool}>(deleted)",
                f'10 write(3<{spool}>(deleted), "{hx(b"sec")}", 3) = 3',
                f'11 writev(3<{spool}>(deleted), [{{iov_base="{hx(b"ret")}", iov_len=3}},'
                f' {{iov_base="{hx(b"!")}", iov_len=1}}], 2 <unfinished ...>',
                "10 <... writev resumed>) = 4",
                f'10 sendto(5<{sock}>, "{hx(b"a1 LOGIN u p")}", 12, 0, NULL, 0) = 12',
                f'10 openat(AT_FDCWD<{hx(b"/")}>, "{hx(b"/etc/ssl")}", O_RDONLY) = 4<{hx(b"/etc/ssl")}>',
            ]
        )
        + "\n"
    )
    trace = parse(log)
    assert trace.files() == {"/tmp/x/#123": b"secret!"}
    assert trace.others() == {"TCP:[127.0.0.1:1->127.0.0.1:2]": b"a1 LOGIN u p"}
    assert trace.opened_for_write == {"/tmp/x/#123"}
    assert trace.calls == 3
