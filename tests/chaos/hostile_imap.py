"""A hostile IMAP server on loopback (asyncio in a background thread).

It behaves like a tiny IMAP4rev1 server (greeting, CAPABILITY, LOGIN, SELECT of an INBOX with one
message, UID FETCH, LOGOUT) until the command named by ``on`` arrives; then it misbehaves as
``behaviour`` says. ``BEHAVIOURS`` lists them with a one-line description:

    with HostileImap("endless_line", on="SELECT") as srv:   # srv.port
        ...

Big outputs are written in 1 MiB chunks with backpressure and stop as soon as the client goes away,
so a client that gives up early costs the server (and the test machine) little.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Awaitable, Callable

from .loopthread import LoopbackServer

GIB = 1 << 30
MIB = 1 << 20

BEHAVIOURS: dict[str, str] = {
    "garbage_greeting": "binary garbage instead of a greeting",
    "garbage_after_greeting": "a normal greeting, then binary garbage lines and a close on the next command",
    "malformed_literal": "a FETCH whose literal announces more bytes than it sends, then silence",
    "literal_bad_count": "literals with non-numeric/negative/absurd counts, then a tagged OK",
    "huge_literal_close": "a literal announcing 1 TiB, 4 MiB of it, then a close",
    "endless_line": "1 GiB of one line without CRLF",
    "enormous_untagged_lines": "256 MiB of untagged '* OK' lines (1 KiB each) before the tagged OK",
    "enormous_untagged_literals": "one untagged FETCH made of 256 x 1 MiB literals",
    "throttled": "NO [THROTTLED] with a suggested backoff of 1500 ms",
    "bye_mid_command": "half a response, then '* BYE' and a close",
    "close_mid_literal": "a FETCH literal cut off half way by a close",
    "stall": "accepts the command and never answers",
    "echo_credentials": "rejects LOGIN/AUTHENTICATE with a NO that echoes the credentials it received",
}

CAPS = b"IMAP4rev1 LITERAL+ UIDPLUS"


class HostileImap(LoopbackServer):
    def __init__(self, behaviour: str, on: str = "SELECT", total: int | None = None) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}: {sorted(BEHAVIOURS)}")
        self.behaviour = behaviour
        self.on = on.upper()
        self.total = total  # override the byte volume of the big behaviours
        self.port = 0
        self.bytes_sent = 0
        self.commands: list[bytes] = []  # first line of each command received (credentials included!)
        super().__init__()

    # -------------------------------------------------------------- the session
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # server shutdown while a session sleeps
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(self, w: asyncio.StreamWriter, data: bytes) -> None:
        w.write(data)
        self.bytes_sent += len(data)
        await w.drain()

    async def _session(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.behaviour == "garbage_greeting":
            await self._send(w, b"\x00\xff\xfe garbage \x1b[31m not imap\r\n" + os.urandom(512) + b"\r\n")
            await asyncio.sleep(30)
            return
        await self._send(w, b"* OK [CAPABILITY " + CAPS + b"] hostile test server ready\r\n")
        while True:
            line = await r.readuntil(b"\r\n")
            # skip the client's literals (LOGIN with 8-bit passwords, APPEND)
            while line.rstrip().endswith(b"}") and b"{" in line:
                size = int(line[line.rfind(b"{") + 1 :].rstrip(b"}+\r\n"))
                if not line.rstrip().endswith(b"+}"):
                    await self._send(w, b"+ go ahead\r\n")
                await r.readexactly(size)
                line = line + b"<literal>" + await r.readuntil(b"\r\n")
            self.commands.append(line)
            parts = line.rstrip(b"\r\n").split(b" ", 2)
            tag = parts[0]
            cmd = parts[1].upper() if len(parts) > 1 else b""
            if cmd == b"UID" and len(parts) > 2:
                cmd = b"UID " + parts[2].split(b" ", 1)[0].upper()
            if cmd.decode() == self.on or (self.on == "ANY" and cmd not in (b"CAPABILITY",)):
                await self._misbehave(tag, r, w)
                return
            await self._normal(tag, cmd, w)
            if cmd == b"LOGOUT":
                return

    async def _normal(self, tag: bytes, cmd: bytes, w: asyncio.StreamWriter) -> None:
        if cmd == b"CAPABILITY":
            await self._send(w, b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK done\r\n")
        elif cmd in (b"SELECT", b"EXAMINE"):
            await self._send(
                w,
                b"* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                b"* FLAGS (\\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen)] ok\r\n"
                + tag
                + b" OK [READ-WRITE] done\r\n",
            )
        elif cmd == b"UID FETCH":
            body = b"Message-ID: <1@hostile.test>\r\nSubject: x\r\n\r\nhello\r\n"
            await self._send(
                w,
                b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(body) + body + b")\r\n" + tag + b" OK done\r\n",
            )
        elif cmd == b"LOGOUT":
            await self._send(w, b"* BYE bye\r\n" + tag + b" OK done\r\n")
        else:
            await self._send(w, tag + b" OK done\r\n")

    async def _stream(self, w: asyncio.StreamWriter, total: int, chunk: Callable[[int], bytes]) -> None:
        sent = 0
        while sent < total:
            data = chunk(min(MIB, total - sent))
            await self._send(w, data)
            sent += len(data)

    async def _misbehave(self, tag: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        b = self.behaviour

        async def garbage_after_greeting() -> None:
            for _ in range(64):
                await self._send(w, os.urandom(200).replace(b"\r\n", b"..") + b"\r\n")

        async def malformed_literal() -> None:
            await self._send(w, b"* 1 FETCH (UID 1 BODY[] {5000}\r\nonly a few)\r\n" + tag + b" OK done\r\n")
            await asyncio.sleep(60)

        async def literal_bad_count() -> None:
            await self._send(
                w,
                b"* 1 FETCH (UID 1 BODY[] {abc}\r\n* 1 FETCH (UID 1 BODY[] {-5}\r\n"
                b"* 1 FETCH (UID 1 BODY[] {99999999999999999999999999999999999999}x\r\n"
                + tag
                + b" OK done\r\n",
            )
            await asyncio.sleep(60)

        async def huge_literal_close() -> None:
            await self._send(w, b"* 1 FETCH (UID 1 BODY[] {1099511627776}\r\n")
            await self._stream(w, self.total or 4 * MIB, lambda n: b"x" * n)

        async def endless_line() -> None:
            await self._send(w, b"* OK ")
            await self._stream(w, self.total or GIB, lambda n: b"A" * n)

        async def enormous_untagged_lines() -> None:
            line = b"* OK " + b"u" * 1017 + b"\r\n"  # 1 KiB
            block = line * 1024
            await self._stream(w, self.total or 256 * MIB, lambda n: block[:n])
            await self._send(w, tag + b" OK done\r\n")

        async def enormous_untagged_literals() -> None:
            total = self.total or 256 * MIB
            await self._send(w, b"* 1 FETCH (UID 1")
            lit = b" X {%d}\r\n" % MIB + b"L" * MIB
            sent = 0
            while sent < total:
                await self._send(w, lit)
                sent += len(lit)
            await self._send(w, b")\r\n" + tag + b" OK done\r\n")

        async def throttled() -> None:
            await self._send(
                w,
                tag + b" NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n",
            )
            await asyncio.sleep(60)

        async def bye_mid_command() -> None:
            await self._send(w, b"* 1 EXISTS\r\n* BYE [UNAVAILABLE] going away mid-command\r\n")

        async def close_mid_literal() -> None:
            await self._send(w, b"* 1 FETCH (UID 1 BODY[] {100000}\r\n" + b"y" * 50000)

        async def stall() -> None:
            await asyncio.sleep(3600)

        async def echo_credentials() -> None:
            line = self.commands[-1].rstrip(b"\r\n")
            if line.upper().split(b" ")[1:2] == [b"AUTHENTICATE"] and len(line.split(b" ")) < 4:
                await self._send(w, b"+ \r\n")
                line += b" " + (await r.readuntil(b"\r\n")).rstrip(b"\r\n")
            try:
                decoded = base64.b64decode(line.rsplit(b" ", 1)[-1], validate=True)
            except ValueError:
                decoded = b""
            clear = decoded.replace(b"\x00", b" ").replace(b"\x01", b" ")
            await self._send(w, tag + b" NO [AUTHENTICATIONFAILED] no: " + line + b" " + clear + b"\r\n")

        actions: dict[str, Callable[[], Awaitable[None]]] = {
            "garbage_after_greeting": garbage_after_greeting,
            "malformed_literal": malformed_literal,
            "literal_bad_count": literal_bad_count,
            "huge_literal_close": huge_literal_close,
            "endless_line": endless_line,
            "enormous_untagged_lines": enormous_untagged_lines,
            "enormous_untagged_literals": enormous_untagged_literals,
            "throttled": throttled,
            "bye_mid_command": bye_mid_command,
            "close_mid_literal": close_mid_literal,
            "stall": stall,
            "echo_credentials": echo_credentials,
        }
        await actions[b]()


# ------------------------------------------------------------------------------ hostile destination
DEST_BEHAVIOURS: dict[str, str] = {
    "no_continuation": "APPEND with a synchronizing literal: never sends the '+' continuation (no LITERAL+)",
    "ok_before_literal": "APPEND: a tagged OK instead of the '+' continuation, the literal never read",
    "no_mid_multiappend": "MULTIAPPEND: a tagged NO after the first message, the rest discarded",
    "drop_after_literal": "APPEND reaches the real server (stored), then the connection drops before its "
    "tagged reply",
    "late_commit": "the connection drops during an APPEND, which the server then stores late: while the "
    "client's retry is matching (at its first NOOP/APPEND)",
    "late_commit_after_check": "like late_commit, but stored only when the retry's first APPEND arrives "
    "(after any check the client made)",
}


class HostileDestination(LoopbackServer):
    """An IMAP proxy in front of a real server (Dovecot) that misbehaves on APPEND only.

    Everything else is relayed. Commands are read whole from the client (the proxy answers the client's
    synchronizing literals itself) and forwarded with non-synchronizing literals (the server needs
    LITERAL+). ``literal_plus=False`` hides LITERAL+/LITERAL- from the client, so it has to wait for a
    continuation before each literal. ``times`` limits how many APPENDs misbehave (None: all).
    ``appends``/``misbehaved`` count what the proxy saw.
    """

    def __init__(
        self, upstream_port: int, behaviour: str, *, literal_plus: bool = False, times: int | None = None
    ) -> None:
        if behaviour not in DEST_BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}: {sorted(DEST_BEHAVIOURS)}")
        self.upstream_port = upstream_port
        self.behaviour = behaviour
        self.literal_plus = literal_plus
        self.times = times
        self.port = 0
        self.appends = 0
        self.misbehaved = 0
        super().__init__()
        # late_commit: (tag, upstream reader, upstream writer, whole APPEND) held back on a dropped session
        self._held: tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter, bytes] | None = None
        self.late_commits = 0

    def _misbehave_now(self) -> bool:
        if self.times is not None and self.misbehaved >= self.times:
            return False
        self.misbehaved += 1
        return True

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cw.close()
            return
        drop_on: set[bytes] = set()  # tags whose tagged reply closes the client connection instead
        relay = asyncio.create_task(self._relay(ur, cw, drop_on))
        try:
            await self._commands(cr, cw, ur, uw, drop_on, relay)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            relay.cancel()
            held = self._held is not None and self._held[2] is uw
            for w in (cw,) if held else (cw, uw):
                with contextlib.suppress(Exception):
                    w.close()

    async def _release(self) -> None:
        """late_commit: the held APPEND reaches the server now, on its old (still logged-in) session."""
        if self._held is None:
            return
        tag, ur, uw, data = self._held
        self._held = None
        try:
            uw.write(data)
            await uw.drain()
            while not (await ur.readuntil(b"\r\n")).startswith(tag + b" "):
                pass
            self.late_commits += 1
        finally:
            uw.close()

    def _caps(self, line: bytes) -> bytes:
        if self.literal_plus or b"CAPABILITY" not in line.upper():
            return line
        return line.replace(b" LITERAL+", b"").replace(b" LITERAL-", b"")

    async def _relay(self, ur: asyncio.StreamReader, cw: asyncio.StreamWriter, drop_on: set[bytes]) -> None:
        """Server -> client, line by line (literals in responses passed through untouched)."""
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while True:
                line = await ur.readuntil(b"\r\n")
                tag = line.split(b" ", 1)[0]
                if tag in drop_on:
                    # The server has stored the message and said so: the client never hears it.
                    cw.transport.abort()
                    return
                cw.write(self._caps(line))
                while line.endswith(b"}\r\n") and b"{" in line:
                    size = int(line[line.rfind(b"{") + 1 : -3].rstrip(b"+"))
                    cw.write(await ur.readexactly(size))
                    line = await ur.readuntil(b"\r\n")
                    cw.write(self._caps(line))
                await cw.drain()
        cw.transport.abort()

    async def _commands(
        self,
        cr: asyncio.StreamReader,
        cw: asyncio.StreamWriter,
        ur: asyncio.StreamReader,
        uw: asyncio.StreamWriter,
        drop_on: set[bytes],
        relay: asyncio.Task[None],
    ) -> None:
        """Client -> server, one whole command at a time."""
        while not relay.done():
            line = await cr.readuntil(b"\r\n")
            words = line.split(b" ", 2)
            tag = words[0]
            is_append = len(words) > 1 and words[1].upper() == b"APPEND"
            hostile = is_append and self._misbehave_now()
            if is_append:
                self.appends += 1
            out = bytearray()
            literals = 0
            refused = False
            while line.endswith(b"}\r\n") and b"{" in line:
                head = line[: line.rfind(b"{")]
                sync = not line.endswith(b"+}\r\n")
                size = int(line[line.rfind(b"{") + 1 : -3].rstrip(b"+"))
                literals += 1
                if hostile and self.behaviour == "no_continuation" and sync:
                    await asyncio.sleep(3600)  # the client waits for a '+' that never comes
                    return
                if hostile and self.behaviour == "ok_before_literal" and sync:
                    cw.write(tag + b" OK APPEND completed\r\n")  # the literal is never read
                    await cw.drain()
                    refused = True
                    break
                if hostile and self.behaviour == "no_mid_multiappend" and literals == 2 and not refused:
                    cw.write(tag + b" NO [SERVERBUG] refused in the middle of the MULTIAPPEND\r\n")
                    await cw.drain()
                    refused = True
                    if sync:
                        break  # no continuation: the command ends here
                if sync and not refused:
                    cw.write(b"+ go ahead\r\n")
                    await cw.drain()
                data = await cr.readexactly(size)
                out += head + b"{%d+}\r\n" % size + data
                line = await cr.readuntil(b"\r\n")
            if refused:
                continue
            out += line
            if hostile and self.behaviour == "drop_after_literal":
                drop_on.add(tag)
            if hostile and self.behaviour.startswith("late_commit"):
                relay.cancel()  # the held session's replies are read by _release
                self._held = (tag, ur, uw, bytes(out))
                cw.transport.abort()
                return
            cmd = words[1].upper() if len(words) > 1 else b""
            release_on = (b"APPEND",) if self.behaviour == "late_commit_after_check" else (b"NOOP", b"APPEND")
            if self._held is not None and self._held[2] is not uw and cmd.strip() in release_on:
                await self._release()
            uw.write(bytes(out))
            await uw.drain()
