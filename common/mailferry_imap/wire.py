"""The IMAP wire types and formats the client speaks in: command completions, folder and message
descriptions, quoting, dates and UID sets (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from . import utf7
from .parser import (
    Response,
    Spool,
)

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class Completion:
    status: str  # OK / NO / BAD
    code: str | None
    code_args: str | None
    text: str
    untagged: list[Response] = field(default_factory=list)


@dataclass
class FolderInfo:
    name: str  # decoded (Unicode)
    raw: str  # as on the wire (modified UTF-7)
    delimiter: str | None
    flags: set[str]

    @property
    def special_use(self) -> str | None:
        for f in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged"):
            if f.lower() in {x.lower() for x in self.flags}:
                return f
        return None

    @property
    def selectable(self) -> bool:
        low = {x.lower() for x in self.flags}
        return "\\noselect" not in low and "\\nonexistent" not in low


@dataclass
class SelectInfo:
    uidvalidity: int
    uidnext: int | None
    exists: int
    highestmodseq: int | None
    permanentflags: set[str]
    readonly: bool
    # SELECT with QRESYNC (RFC 7162): UIDs expunged since the given modseq, UIDs whose flags changed.
    vanished: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    qresync: bool = False


@dataclass
class MessageMeta:
    uid: int
    flags: tuple[str, ...]
    internaldate: str  # IMAP date-time text, e.g. "17-Jul-1996 02:44:25 -0700"
    size: int
    message_id: str | None
    modseq: int | None = None


@dataclass
class AppendItem:
    data: bytes | Spool
    flags: Sequence[str] = ()
    internaldate: str | None = None


def quote(s: str) -> bytes:
    """An IMAP quoted string (ASCII only; use a literal for 8-bit data)."""
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"'


def mailbox_arg(name: str) -> bytes:
    return quote(utf7.encode(name))


def format_internaldate(dt: datetime) -> str:
    offset = dt.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{dt.day:2d}-{MONTHS[dt.month - 1]}-{dt.year:04d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def parse_internaldate(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")


def compress_uids(uids: Iterable[int]) -> str:
    """Sorted UIDs -> IMAP sequence set (``1:5,7,9:12``)."""
    out: list[str] = []
    start = prev = None
    for u in sorted(set(uids)):
        if start is None:
            start = prev = u
        elif prev is not None and u == prev + 1:
            prev = u
        else:
            out.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = u
    if start is not None:
        out.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(out)


_MSGID_RE = re.compile(rb"^message-id:\s*(.*?)\s*$", re.I | re.S | re.M)


def parse_message_id(header_block: bytes | None) -> str | None:
    if not header_block:
        return None
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header_block)
    m = _MSGID_RE.search(unfolded)
    if not m:
        return None
    value = m.group(1).strip().decode("utf-8", "replace")
    return value or None


class RawLiteral:
    """A command argument sent as a literal."""

    def __init__(self, data: bytes | Spool) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)


def expand_uids(uidset: str) -> list[int]:
    """IMAP sequence set of UIDs (``1:5,7``) -> the UIDs."""
    out: list[int] = []
    for part in uidset.split(","):
        if ":" in part:
            a, b = part.split(":")
            lo, hi = sorted((int(a), int(b)))
            out += range(lo, hi + 1)
        else:
            out.append(int(part))
    return out
