"""APPEND and MULTIAPPEND on one connection: pipelined with LITERAL+ where the server offers it,
waited for otherwise; APPENDUID read back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import (
    CommandFailed,
    ConnectionLost,
    FolderVanished,
)
from .parser import (
    Spool,
)
from .wire import AppendItem, Completion, RawLiteral, expand_uids, mailbox_arg

if TYPE_CHECKING:
    from .client import ImapClient


class AppendPipeline:
    """MULTIAPPENDs on one connection with the next one's literals streaming while earlier ones are
    outstanding (LITERAL+: no continuation to wait for). ``send`` returns a tag; ``result(tag)``
    reads up to that command's completion. Results must be taken in the order the commands were sent.
    """

    def __init__(self, client: ImapClient, mailbox: str) -> None:
        self.client = client
        self.mailbox = mailbox
        self.outstanding: list[bytes] = []
        self._done: dict[bytes, Completion] = {}

    async def send(self, items: Sequence[AppendItem]) -> bytes:
        c = self.client
        if c.closed:
            raise ConnectionLost("connection already closed")
        if not items or not c.can_pipeline_append(items):
            raise ValueError("a pipelined APPEND needs MULTIAPPEND and non-synchronizing literals")
        if c.write_guard is not None:
            c.write_guard()
        tag = c._next_tag()
        buf = bytearray(tag + b" APPEND " + mailbox_arg(self.mailbox))
        for it in items:
            if it.flags:
                buf += b" (" + " ".join(it.flags).encode("utf-8") + b")"
            if it.internaldate:
                buf += b' "' + it.internaldate.encode() + b'"'
            buf += b" {%d+}\r\n" % len(it.data)
            c._send(buf)  # gathered with the literal (and the next ones) into one transport write
            buf = bytearray()
            # Registered before the first literal goes out: a failure from here on leaves it unknown.
            if tag not in self.outstanding:
                self.outstanding.append(tag)
            await c._write_literal(it.data)
        c._send(b"\r\n")
        await c._drain()
        return tag

    async def result(self, tag: bytes) -> list[int] | None:
        """The destination UIDs (APPENDUID) of the command ``tag`` or None; raises like ``append``."""
        c = self.client
        if not self.outstanding or self.outstanding[0] != tag:
            raise ValueError("pipelined APPEND results must be taken in order")
        while tag not in self._done:
            resp = await c._read()
            if resp.is_continuation:
                continue
            rtag = resp.line.split(b" ", 1)[0]
            if rtag in self.outstanding:
                self._done[rtag] = c._completion(resp, [])
                continue
            c._note_untagged(resp)
            resp.close()
        self.outstanding.pop(0)
        done = self._done.pop(tag)
        try:
            c._finish(done, True)
        except CommandFailed as exc:
            if exc.code == "TRYCREATE":
                raise FolderVanished(f"destination folder {self.mailbox} does not exist") from None
            raise
        return _appenduid(done)

    async def append_now(self, items: Sequence[AppendItem]) -> list[int] | None:
        """One APPEND/MULTIAPPEND on this connection, waited for (synchronizing literals allowed)."""
        if self.outstanding:
            raise ValueError("take the outstanding results first")
        c = self.client
        if len(items) > 1 and not c.has("MULTIAPPEND"):
            uids: list[int] = []
            for it in items:
                got = await self.append_now([it])
                if got is None:
                    return None
                uids += got
            return uids
        try:
            done = await c._execute(_append_parts(self.mailbox, items), None, True)
        except CommandFailed as exc:
            if exc.code == "TRYCREATE":
                raise FolderVanished(f"destination folder {self.mailbox} does not exist") from None
            raise
        return _appenduid(done)


def _append_parts(mailbox: str, items: Sequence[AppendItem]) -> list[bytes | Spool | RawLiteral]:
    parts: list[bytes | Spool | RawLiteral] = [b"APPEND", mailbox_arg(mailbox)]
    for it in items:
        if it.flags:
            parts.append(b"(" + " ".join(it.flags).encode("utf-8") + b")")
        if it.internaldate:
            parts.append(b'"' + it.internaldate.encode() + b'"')
        parts.append(RawLiteral(it.data))
    return parts


def _appenduid(done: Completion) -> list[int] | None:
    if done.code == "APPENDUID" and done.code_args:
        try:
            _, uidset = done.code_args.split()
            return expand_uids(uidset)
        except ValueError:
            return None
    return None
