"""What a process wrote, and where, reconstructed from an ``strace -f -y -xx`` log.

Used to show the worker never writes a credential to disk, not even to a file it deletes at once (a
spooled message body lives in an unnamed O_TMPFILE): the trace sees every write(2) whatever happens to
the file afterwards. ``-xx`` prints every string and fd path as ``\\xHH`` escapes, so the bytes are exact.

Run the process under :data:`STRACE_ARGS` and feed the log to :func:`parse`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

WRITE_CALLS = ("write", "pwrite64", "writev", "pwritev", "pwritev2", "sendto", "sendmsg")
OPEN_CALLS = ("open", "openat", "creat")
LINK_CALLS = ("rename", "renameat", "renameat2", "link", "linkat")
# Big enough for the largest single write (a spooled 1 MiB chunk, or a whole message body on a socket).
MAX_STRING = 64 << 20
STRACE_ARGS = [
    "strace",
    "-f",
    "-qq",
    "-y",
    "-xx",
    "-s",
    str(MAX_STRING),
    "-e",
    "trace=" + ",".join(WRITE_CALLS + OPEN_CALLS + LINK_CALLS),
]

_CALL = re.compile(r"^(?:\[pid\s+)?\d+\]?\s+(\w+)\((.*)$")
_FD = re.compile(r"^\d+<((?:\\x[0-9a-f]{2})*)>")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_RESULT_FD = re.compile(r"\)\s+=\s+\d+<((?:\\x[0-9a-f]{2})*)>")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TMPFILE", "O_TRUNC", "O_APPEND")


def _unhex(escaped: str) -> bytes:
    return bytes.fromhex(escaped.replace("\\x", ""))


def is_file(target: str) -> bool:
    """A regular file or directory path (not a socket, pipe, /dev node or anon inode)."""
    return target.startswith("/") and not target.startswith(("/dev/", "/proc/"))


@dataclass
class Trace:
    """Bytes written per fd target (a path for files, ``TCP:[...]``/``pipe:[...]`` otherwise)."""

    written: dict[str, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    opened_for_write: set[str] = field(default_factory=set)  # paths opened with a write/create flag
    renamed_or_linked: list[str] = field(default_factory=list)
    calls: int = 0

    def files(self) -> dict[str, bytes]:
        return {t: bytes(b) for t, b in self.written.items() if is_file(t)}

    def others(self) -> dict[str, bytes]:
        return {t: bytes(b) for t, b in self.written.items() if not is_file(t)}


def parse(log: Path) -> Trace:
    trace = Trace()
    with log.open(encoding="ascii", errors="replace") as fh:
        for line in fh:
            m = _CALL.match(line)
            if not m:
                continue  # "<... write resumed>" lines carry no arguments; signals, exits
            name, rest = m.groups()
            if name in WRITE_CALLS:
                fd = _FD.match(rest)
                if not fd:
                    continue
                target = _unhex(fd.group(1)).decode("utf-8", "replace").removesuffix("(deleted)")
                # writev/sendmsg print each iovec's buffer as its own string, in order.
                for s in _STRING.finditer(rest[fd.end() :]):
                    trace.written[target] += _unhex(s.group(1))
                trace.calls += 1
            elif name in OPEN_CALLS:
                if name == "creat" or any(f in rest for f in _WRITE_FLAGS):
                    res = _RESULT_FD.search(rest)
                    if res:
                        trace.opened_for_write.add(_unhex(res.group(1)).decode("utf-8", "replace"))
            elif name.startswith(("rename", "link")):
                trace.renamed_or_linked.append(
                    " ".join(_unhex(s.group(1)).decode("utf-8", "replace") for s in _STRING.finditer(rest))
                )
    return trace
