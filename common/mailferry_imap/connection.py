"""One IMAP connection at protocol level: connect (TLS, STARTTLS), tagged commands one at a time under a
lock, literals streamed (synchronizing or LITERAL+), untagged data collected, authentication. The
commands a migration uses are in client.py on top of it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from typing import IO, Self

from .errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionFailed,
    ConnectionLost,
    ImapError,
    ProtocolError,
    Throttled,
    TLSError,
    classify_full,
    classify_text,
)
from .parser import (
    MAX_LINE,
    Response,
    ResponseReader,
    Spool,
    parse_status_text,
)
from .wire import Completion, RawLiteral, quote

STREAM_LIMIT = MAX_LINE  # longest line without literals (e.g. SEARCH results)
READ_BUFFER = 1 << 20  # asyncio StreamReader limit: it reads ahead at most twice this
WRITE_CHUNK = 256 * 1024
UNTAGGED_BUDGET = 32 << 20  # in-memory untagged data one command may collect before we call it hostile
BODY_MEMORY_BUDGET = 16 << 20  # bodies of one FETCH kept in memory; beyond that they go to disk
_DEFAULT_CONTEXT: ssl.SSLContext | None = None


def _default_context() -> ssl.SSLContext:
    """Loading the system CA store costs ~0.1 s: do it once per process."""
    global _DEFAULT_CONTEXT
    if _DEFAULT_CONTEXT is None:
        _DEFAULT_CONTEXT = ssl.create_default_context()
    return _DEFAULT_CONTEXT


class ImapConnection:
    """One IMAP connection. Commands run one at a time (a lock); literals are streamed."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        read_timeout: float,
        host: str,
    ) -> None:
        self._reader = ResponseReader(reader, read_timeout)
        self._writer = writer
        self._out = bytearray()  # gathered for the next transport write (see _send)
        self._raw_reader = reader
        self.read_timeout = read_timeout
        self.host = host
        self.capabilities: set[str] = set()
        self._tag = 0
        self._lock = asyncio.Lock()
        self._bye: str | None = None
        self.closed = False
        self.selected: str | None = None
        # Called before every command goes out; raising stops it (the worker's lease fencing: a writer
        # that lost its mailbox's lease sends no further APPEND/STORE/EXPUNGE/MOVE).
        self.write_guard: Callable[[], None] | None = None
        self.enabled: set[str] = set()  # extensions turned on with ENABLE (RFC 5161)

    # ------------------------------------------------------------------ connect
    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        security: str = "tls",
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 120.0,
    ) -> Self:
        ctx = ssl_context if ssl_context is not None or security == "none" else _default_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=ctx if security == "tls" else None,
                    server_hostname=host if security == "tls" else None,
                    limit=READ_BUFFER,
                ),
                connect_timeout,
            )
        except ssl.SSLError as exc:
            raise TLSError(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from exc
        except TimeoutError as exc:
            raise ConnectionFailed(
                f"connecting to {host}:{port} timed out after {connect_timeout:.0f}s"
            ) from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        client = cls(reader, writer, read_timeout, host)
        try:
            greeting = await asyncio.wait_for(client._reader.read(), connect_timeout)
        except TimeoutError as exc:
            client._abort()
            raise ConnectionFailed(f"no IMAP greeting from {host}:{port}") from exc
        except ConnectionLost as exc:
            client._abort()
            if security == "none":
                raise ConnectionFailed(f"{host}:{port} closed the connection before greeting") from exc
            raise
        gtext = greeting.text()
        if not gtext.startswith("* OK") and not gtext.startswith("* PREAUTH"):
            client._abort()
            if gtext.startswith("* BYE"):
                throttled = classify_text(gtext, None)
                if throttled:
                    raise throttled
            # A TLS server spoken to in plain text answers garbage or nothing.
            raise ConnectionFailed(f"unexpected greeting from {host}:{port}: {gtext[:80]!r}")
        client._capabilities_from_text(gtext[5:])
        if security == "starttls":
            await client.starttls(ctx or _default_context())
        if not client.capabilities:
            await client.capability()
        return client

    def _abort(self) -> None:
        self.closed = True
        self._out = bytearray()
        with contextlib.suppress(Exception):
            self._writer.close()

    @contextlib.asynccontextmanager
    async def _holding(self) -> AsyncIterator[None]:
        """The connection to ourselves for one exchange. A broken exchange (connection lost, protocol
        error, cancelled mid-way) leaves the stream in an unknown state: the connection is closed, and
        socket errors surface as ConnectionLost. IMAP NO/BAD (other ImapErrors) leave it usable."""
        if self.closed:
            raise ConnectionLost("connection already closed")
        async with self._lock:
            try:
                yield
            except (ConnectionLost, ProtocolError, asyncio.CancelledError):
                self._abort()
                raise
            except (ConnectionError, OSError) as exc:
                self._abort()
                raise ConnectionLost(f"connection error: {type(exc).__name__}") from exc
            except ImapError:
                raise
            except Exception:  # e.g. the write guard between two literals: the command is half sent
                self._abort()
                raise

    def _capabilities_from_text(self, text: str) -> None:
        code, args, _ = parse_status_text(text.strip())
        if code == "CAPABILITY" and args:
            self.capabilities = {c.upper() for c in args.split()}

    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    async def capability(self) -> set[str]:
        done = await self.execute(b"CAPABILITY")
        for r in done.untagged:
            if r.line.upper().startswith(b"* CAPABILITY"):
                self.capabilities = {c.upper() for c in r.text().split()[2:]}
        return self.capabilities

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        if self.capabilities and not self.has("STARTTLS"):
            await self.capability()
            if not self.has("STARTTLS"):
                raise TLSError(f"{self.host} does not offer STARTTLS")
        await self.execute(b"STARTTLS")
        try:
            await asyncio.wait_for(self._writer.start_tls(ctx, server_hostname=self.host), self.read_timeout)
        except ssl.SSLError as exc:
            self._abort()
            raise TLSError(f"STARTTLS handshake with {self.host} failed: {exc.reason or exc}") from exc
        except (TimeoutError, OSError) as exc:
            self._abort()
            raise ConnectionFailed(f"STARTTLS with {self.host} failed: {type(exc).__name__}") from exc
        self.capabilities = set()
        await self.capability()

    # -------------------------------------------------------------- low level
    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"M%d" % self._tag

    def _send(self, data: bytes | bytearray) -> bool:
        """Queue ``data`` for the wire; returns whether queued data went to the transport.

        A command's line and its small literals are gathered and handed to the transport together, up
        to WRITE_CHUNK at a time: each transport write is a send() of its own and, over TLS, a record
        and an encryption call of its own (a MULTIAPPEND of 100 small messages was 200 of each, and as
        many wake-ups of the server's TLS proxy). ``_drain`` hands over what is left.
        """
        if len(data) >= WRITE_CHUNK:
            self._flush()
            self._writer.write(data)
            return True
        self._out += data
        if len(self._out) >= WRITE_CHUNK:
            self._flush()
            return True
        return False

    def _flush(self) -> None:
        if self._out:
            out, self._out = self._out, bytearray()
            self._writer.write(out)  # handed over, never touched again: the transport may keep a view

    async def _drain(self) -> None:
        self._flush()
        try:
            async with asyncio.timeout(self.read_timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise ConnectionLost("write timed out") from exc
        except (ConnectionError, OSError) as exc:
            raise ConnectionLost(f"connection error while writing: {type(exc).__name__}") from exc

    async def _write_literal(self, data: bytes | Spool | IO[bytes]) -> None:
        if self.write_guard is not None:
            self.write_guard()  # each message of a MULTIAPPEND: a lease lost mid-command aborts it
        if isinstance(data, bytes):
            if self._send(data):
                await self._drain()  # bounded: at most WRITE_CHUNK more than the transport holds
            return
        f = data.file if isinstance(data, Spool) else data
        f.seek(0)
        while True:
            chunk = f.read(WRITE_CHUNK)
            if not chunk:
                break
            self._send(chunk)
            await self._drain()

    def _literal_plus(self, size: int) -> bool:
        return self.has("LITERAL+") or (self.has("LITERAL-") and size <= 4096)

    async def execute(
        self,
        *parts: bytes | Spool | RawLiteral,
        on_untagged: Callable[[Response], bool] | None = None,
        check: bool = True,
    ) -> Completion:
        """Send one command (parts joined by spaces; Spool/Literal parts become literals), read to completion.

        ``on_untagged`` may consume an untagged response (return True) instead of it being collected.
        Raises CommandFailed on NO/BAD when ``check`` (Throttled when the text says so).
        """
        async with self._holding():
            return await self._execute(parts, on_untagged, check)

    async def _execute(
        self,
        parts: Sequence[bytes | Spool | RawLiteral],
        on_untagged: Callable[[Response], bool] | None,
        check: bool,
    ) -> Completion:
        if self.write_guard is not None and parts[:1] != [b"LOGOUT"]:
            self.write_guard()
        tag = self._next_tag()
        untagged: list[Response] = []
        buf = bytearray(tag)
        for part in parts:
            if isinstance(part, RawLiteral | Spool):
                data = part.data if isinstance(part, RawLiteral) else part
                size = len(data)
                plus = self._literal_plus(size)
                buf += b" {%d+}\r\n" % size if plus else b" {%d}\r\n" % size
                self._send(buf)
                buf = bytearray()
                if not plus:
                    await self._drain()
                    done = await self._await_continuation(tag, untagged, on_untagged)
                    if done is not None:
                        if done.status == "OK":
                            # Completed without the literal it asked for: whatever it "did" (an APPEND
                            # without its message?) cannot be trusted, nor can the connection.
                            raise ProtocolError(
                                "server completed a command with OK before receiving its literal"
                            )
                        return self._finish(done, check)  # NO/BAD instead of '+': a refusal
                await self._write_literal(data)
            else:
                buf += b" " + part
        buf += b"\r\n"
        self._send(buf)
        await self._drain()
        collected = 0
        while True:
            resp = await self._read()
            if resp.line.startswith(tag + b" "):
                resp_done = self._completion(resp, untagged)
                return self._finish(resp_done, check)
            if resp.is_continuation:
                continue
            self._note_untagged(resp)
            if on_untagged is None or not on_untagged(resp):
                untagged.append(resp)
                collected += len(resp.line) + sum(len(x) for x in resp.literals if isinstance(x, bytes))
                if collected > UNTAGGED_BUDGET:
                    raise ProtocolError(
                        f"server sent over {UNTAGGED_BUDGET >> 20} MiB of untagged data to one command"
                    )

    async def _read(self) -> Response:
        try:
            return await self._reader.read()
        except ConnectionLost as exc:
            if self._bye:
                throttled = classify_text(self._bye, None)
                if throttled:
                    raise throttled from exc
                raise ConnectionLost(f"server said BYE: {self._bye[:200]}") from exc
            raise

    def _note_untagged(self, resp: Response) -> None:
        if resp.line[:6].upper() == b"* BYE ":
            self._bye = resp.text()[6:]

    async def _await_continuation(
        self, tag: bytes, untagged: list[Response], on_untagged: Callable[[Response], bool] | None
    ) -> Completion | None:
        while True:
            resp = await self._read()
            if resp.is_continuation:
                return None
            if resp.line.startswith(tag + b" "):
                return self._completion(resp, untagged)
            self._note_untagged(resp)
            if on_untagged is None or not on_untagged(resp):
                untagged.append(resp)

    def _completion(self, resp: Response, untagged: list[Response]) -> Completion:
        words = resp.text().split(" ", 2)
        status = words[1].upper() if len(words) > 1 else "BAD"
        rest = words[2] if len(words) > 2 else ""
        code, args, text = parse_status_text(rest)
        if code == "CAPABILITY" and args:
            self.capabilities = {c.upper() for c in args.split()}
        return Completion(status, code, args, text, untagged)

    def _finish(self, done: Completion, check: bool) -> Completion:
        if check and done.status != "OK":
            throttled = classify_text(done.text, done.code)
            if throttled:
                raise throttled
            full = classify_full(done.text, done.code)
            if full:
                raise full
            raise CommandFailed(
                f"{done.status} [{done.code or ''}] {done.text[:300]}", done.status, done.code
            )
        return done

    async def idle(self, on_untagged: Callable[[Response], bool], seconds: float) -> bool:
        """IDLE (RFC 2177) for at most ``seconds``: DONE as soon as ``on_untagged`` returns True for an
        unsolicited response (an EXISTS of the selected mailbox, a NOTIFY (RFC 5465) STATUS of another).
        Returns whether it did. The wait is not a read timeout: one pending read lives across it, so a
        response that arrives while DONE goes out is never cut in half. ``seconds`` must stay below the
        connection's read timeout (the server answers DONE within it, or the connection is dead)."""
        async with self._holding():
            tag = self._next_tag()
            self._send(tag + b" IDLE\r\n")
            await self._drain()
            seen = False
            while True:  # up to the continuation (a NO/BAD: the server refuses to idle here)
                resp = await self._read()
                if resp.is_continuation:
                    break
                if resp.line.startswith(tag + b" "):
                    self._finish(self._completion(resp, []), True)
                    return seen
                self._note_untagged(resp)
                seen = on_untagged(resp) or seen
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, seconds)
            pending: asyncio.Future[Response] | None = None
            ended: Response | None = None  # the server ended IDLE by itself (a tagged response)
            while not seen:
                left = deadline - loop.time()
                if left <= 0:
                    break
                pending = pending or asyncio.ensure_future(self._read())
                done, _ = await asyncio.wait({pending}, timeout=left)
                if not done:
                    break
                resp = pending.result()
                pending = None
                if resp.line.startswith(tag + b" "):
                    ended = resp
                    break
                self._note_untagged(resp)
                seen = on_untagged(resp) or seen
            try:
                if ended is None:
                    self._send(b"DONE\r\n")
                    await self._drain()
                while ended is None:
                    resp = await (pending or self._read())
                    pending = None
                    if resp.line.startswith(tag + b" "):
                        ended = resp
                        break
                    self._note_untagged(resp)
                    seen = on_untagged(resp) or seen
            finally:
                if pending is not None:
                    if pending.done():
                        if not pending.cancelled():
                            pending.exception()  # retrieved: the error that ended the wait is raised already
                    else:
                        pending.cancel()
            self._finish(self._completion(ended, []), True)
            return seen

    # ------------------------------------------------------------------- auth
    async def login(self, user: str, password: str) -> None:
        try:
            await self.execute(b"LOGIN", self._astring(user), self._astring(password))
        except CommandFailed as exc:
            raise AuthenticationFailed(f"login as {user} rejected: {exc.code or exc.status}") from None

    def _astring(self, s: str) -> bytes | RawLiteral:
        if s.isascii() and "\r" not in s and "\n" not in s:
            return quote(s)
        return RawLiteral(s.encode("utf-8"))

    async def authenticate(self, mechanism: str, initial: bytes) -> None:
        """SASL with an initial response (SASL-IR when offered, else after the first continuation)."""
        b64 = base64.b64encode(initial)
        try:
            if self.has("SASL-IR"):
                done = await self._auth_exchange([b"AUTHENTICATE", mechanism.encode(), b64], None)
            else:
                done = await self._auth_exchange([b"AUTHENTICATE", mechanism.encode()], b64)
        except CommandFailed as exc:
            raise AuthenticationFailed(
                f"{mechanism} authentication rejected: {exc.code or exc.status}"
            ) from None
        if done.status != "OK":
            throttled = classify_text(done.text, done.code)
            if throttled or done.code == "UNAVAILABLE":
                raise throttled or Throttled(done.text)
            raise AuthenticationFailed(f"{mechanism} authentication rejected: {done.code or done.status}")

    async def _auth_exchange(self, parts: list[bytes], first: bytes | None) -> Completion:
        async with self._lock:
            tag = self._next_tag()
            self._send(tag + b" " + b" ".join(parts) + b"\r\n")
            await self._drain()
            sent_first = first is None
            while True:
                resp = await self._read()
                if resp.line.startswith(tag + b" "):
                    return self._completion(resp, [])
                if resp.is_continuation:
                    # first challenge: send the initial response; later (XOAUTH2 error JSON): empty line.
                    self._send((first if not sent_first and first is not None else b"") + b"\r\n")
                    sent_first = True
                    await self._drain()
                    continue
                self._note_untagged(resp)

    async def authenticate_plain(self, user: str, password: str, authzid: str = "") -> None:
        await self.authenticate("PLAIN", f"{authzid}\0{user}\0{password}".encode())

    async def authenticate_xoauth2(self, user: str, token: str) -> None:
        await self.authenticate("XOAUTH2", f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
