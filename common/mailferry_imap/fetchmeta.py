"""Reading FETCH responses into MessageMeta: a fast path with regular expressions for the usual shape,
the general tokenizer for anything else."""

from __future__ import annotations

import re
from typing import Any

from .parser import (
    Response,
    as_bytes,
    as_str,
    pairs,
    tokenize,
)
from .wire import MessageMeta, parse_message_id

_BODY_FAST = re.compile(rb"\* \d+ FETCH \(UID (\d+) BODY\[\] \{\d+\}\x00\)")
# One metadata item of a FETCH response as servers usually send it (Dovecot, Exchange, Gmail); anything
# else (other items, quoting, NIL, other case) takes the general tokenizer below.
_META_ITEM = re.compile(
    rb"UID (\d+)"
    rb"|FLAGS \(([^()\"{}\[\]\x00\r\n]*)\)"
    rb'|INTERNALDATE "([^"\\\x00\r\n]*)"'
    rb"|RFC822\.SIZE (\d+)"
    rb"|MODSEQ \((\d+)\)"
    rb"|BODY\[HEADER\.FIELDS \([^()\]\x00]*\)\] \{\d+\}\x00"
)


def _fast_fetch_meta(resp: Response) -> MessageMeta | None:
    """``_parse_fetch_meta`` for the usual shape, with regular expressions (no tokenizer): None when the
    response has any other shape (the caller then uses the general parser)."""
    line = resp.line
    start = line.find(b" FETCH (")
    if start < 0 or not line.startswith(b"* ") or line[-1:] != b")":
        return None
    pos, end = start + 8, len(line) - 1
    uid = size = modseq = None
    flags: tuple[str, ...] = ()
    date = ""
    header: bytes | None = None
    lits = 0
    while pos < end:
        m = _META_ITEM.match(line, pos)
        if m is None:
            return None
        g = m.lastindex
        if g == 1:
            uid = int(m.group(1))
        elif g == 2:
            flags = tuple(f.decode("utf-8", "replace") for f in m.group(2).split())
        elif g == 3:
            date = m.group(3).decode("utf-8", "replace")
        elif g == 4:
            size = int(m.group(4))
        elif g == 5:
            modseq = int(m.group(5))
        else:
            if lits >= len(resp.literals) or not isinstance(resp.literals[lits], bytes):
                return None
            header = resp.literals[lits]  # type: ignore[assignment]
            lits += 1
        pos = m.end()
        if pos < end:
            if line[pos] != 0x20:
                return None
            pos += 1
    if uid is None or lits != len(resp.literals):
        return None
    return MessageMeta(uid, flags, date, size or 0, parse_message_id(header), modseq)


def _parse_fetch_meta(resp: Response) -> MessageMeta | None:
    return _fast_fetch_meta(resp) or _slow_fetch_meta(resp)


def _slow_fetch_meta(resp: Response) -> MessageMeta | None:
    head = resp.line[:40].upper()
    if not head.startswith(b"* ") or b" FETCH " not in head:
        return None
    toks = tokenize(resp.rest_after(3), resp.literals)
    if not toks or not isinstance(toks[0], list):
        return None
    attrs = pairs(toks[0])
    if "UID" not in attrs:
        return None
    flags = tuple(as_str(f) for f in attrs.get("FLAGS", [])) if isinstance(attrs.get("FLAGS"), list) else ()
    hdr: Any = None
    for k, v in attrs.items():
        if k.startswith("BODY[HEADER.FIELDS"):
            hdr = as_bytes(v)
    modseq = attrs.get("MODSEQ")
    ms: int | None = None
    if isinstance(modseq, list) and modseq:
        ms = int(as_str(modseq[0]))
    size = attrs.get("RFC822.SIZE")
    return MessageMeta(
        uid=int(as_str(attrs["UID"])),
        flags=flags,
        internaldate=as_str(attrs.get("INTERNALDATE", b"")),
        size=int(as_str(size)) if size is not None else 0,
        message_id=parse_message_id(hdr),
        modseq=ms,
    )
