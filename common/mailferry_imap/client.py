"""A lean asyncio IMAP4rev1 client: just what a migration needs, at protocol level.

Why not aioimaplib: it has no STARTTLS, no MULTIAPPEND/LITERAL+, no pipelining of literals and a
RecursionError on long responses (upstream #118). This client streams literals (big ones to a
SpooledTemporaryFile), parses iteratively, and sends MULTIAPPEND with LITERAL+ where offered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from . import utf7
from .errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionFailed,
    ConnectionLost,
    FolderVanished,
    ImapError,
    ProtocolError,
    Throttled,
    TLSError,
    classify_full,
    classify_text,
)
from .parser import (
    MAX_LINE,
    Literal,
    Response,
    ResponseReader,
    Spool,
    as_bytes,
    as_str,
    pairs,
    parse_status_text,
    tokenize,
)

STREAM_LIMIT = MAX_LINE  # longest line without literals (e.g. SEARCH results)
READ_BUFFER = 1 << 20  # asyncio StreamReader limit: it reads ahead at most twice this
WRITE_CHUNK = 256 * 1024
UNTAGGED_BUDGET = 32 << 20  # in-memory untagged data one command may collect before we call it hostile
BODY_MEMORY_BUDGET = 16 << 20  # bodies of one FETCH kept in memory; beyond that they go to disk
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


class ImapClient:
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
    ) -> ImapClient:
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

    async def _drain(self) -> None:
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
            self._writer.write(data)
            if len(data) > WRITE_CHUNK:
                await self._drain()
            return
        f = data.file if isinstance(data, Spool) else data
        f.seek(0)
        while True:
            chunk = f.read(WRITE_CHUNK)
            if not chunk:
                break
            self._writer.write(chunk)
            await self._drain()

    def _literal_plus(self, size: int) -> bool:
        return self.has("LITERAL+") or (self.has("LITERAL-") and size <= 4096)

    async def execute(
        self,
        *parts: bytes | Spool | _RawLiteral,
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
        parts: Sequence[bytes | Spool | _RawLiteral],
        on_untagged: Callable[[Response], bool] | None,
        check: bool,
    ) -> Completion:
        if self.write_guard is not None and parts[:1] != [b"LOGOUT"]:
            self.write_guard()
        tag = self._next_tag()
        untagged: list[Response] = []
        buf = bytearray(tag)
        for part in parts:
            if isinstance(part, _RawLiteral | Spool):
                data = part.data if isinstance(part, _RawLiteral) else part
                size = len(data)
                plus = self._literal_plus(size)
                buf += b" {%d+}\r\n" % size if plus else b" {%d}\r\n" % size
                self._writer.write(bytes(buf))
                buf.clear()
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
        self._writer.write(bytes(buf))
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

    # ------------------------------------------------------------------- auth
    async def login(self, user: str, password: str) -> None:
        try:
            await self.execute(b"LOGIN", self._astring(user), self._astring(password))
        except CommandFailed as exc:
            raise AuthenticationFailed(f"login as {user} rejected: {exc.code or exc.status}") from None

    def _astring(self, s: str) -> bytes | _RawLiteral:
        if s.isascii() and "\r" not in s and "\n" not in s:
            return quote(s)
        return _RawLiteral(s.encode("utf-8"))

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
            self._writer.write(tag + b" " + b" ".join(parts) + b"\r\n")
            await self._drain()
            sent_first = first is None
            while True:
                resp = await self._read()
                if resp.line.startswith(tag + b" "):
                    return self._completion(resp, [])
                if resp.is_continuation:
                    # first challenge: send the initial response; later (XOAUTH2 error JSON): empty line.
                    self._writer.write((first if not sent_first and first is not None else b"") + b"\r\n")
                    sent_first = True
                    await self._drain()
                    continue
                self._note_untagged(resp)

    async def authenticate_plain(self, user: str, password: str, authzid: str = "") -> None:
        await self.authenticate("PLAIN", f"{authzid}\0{user}\0{password}".encode())

    async def authenticate_xoauth2(self, user: str, token: str) -> None:
        await self.authenticate("XOAUTH2", f"user={user}\x01auth=Bearer {token}\x01\x01".encode())

    # -------------------------------------------------------------- mailboxes
    async def namespace(self) -> tuple[str, str | None]:
        """(prefix, delimiter) of the first personal namespace; ("", None) when NAMESPACE is absent."""
        if not self.has("NAMESPACE"):
            return "", None
        done = await self.execute(b"NAMESPACE")
        for r in done.untagged:
            toks = tokenize(r.rest_after(2), r.literals)
            if toks and isinstance(toks[0], list) and toks[0] and isinstance(toks[0][0], list):
                first = toks[0][0]
                prefix = utf7.decode(as_str(first[0])) if first else ""
                delim = as_bytes(first[1]) if len(first) > 1 else None
                return prefix, delim.decode() if delim else None
        return "", None

    async def list_folders(self, pattern: str = "*") -> list[FolderInfo]:
        special = self.has("SPECIAL-USE") and self.has("LIST-EXTENDED")
        cmd: list[bytes] = [b"LIST", b'""', quote(pattern)]
        if special:
            cmd += [b"RETURN (SPECIAL-USE)"]
        done = await self.execute(*cmd)
        out: list[FolderInfo] = []
        for r in done.untagged:
            w = r.words(2)
            if len(w) < 2 or w[1].upper() != "LIST":
                continue
            toks = tokenize(r.rest_after(2), r.literals)
            if len(toks) < 3:
                continue
            flags = {as_str(f) for f in toks[0]} if isinstance(toks[0], list) else set()
            d = as_bytes(toks[1])
            raw = as_str(toks[2])
            out.append(FolderInfo(utf7.decode(raw), raw, d.decode() if d else None, flags))
        return out

    async def status(self, mailbox: str) -> dict[str, int]:
        items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"]
        if self.has("CONDSTORE"):
            items.append(b"HIGHESTMODSEQ")
        try:
            done = await self.execute(b"STATUS", mailbox_arg(mailbox), b"(" + b" ".join(items) + b")")
        except CommandFailed as exc:
            raise _vanished_or(exc, mailbox) from None
        for r in done.untagged:
            if r.words(2)[-1].upper() == "STATUS":
                toks = tokenize(r.rest_after(2), r.literals)
                if toks and isinstance(toks[-1], list):
                    return {k: int(as_str(v)) for k, v in pairs(toks[-1]).items()}
        raise ProtocolError(f"no STATUS response for {mailbox}")

    async def status_many(
        self, mailboxes: Sequence[str], items: Sequence[str] | None = None
    ) -> dict[str, dict[str, int] | ImapError]:
        """STATUS of several mailboxes, pipelined (all commands sent at once): one round trip in total.

        ``items``: the STATUS data items to ask for (e.g. ``("MESSAGES", "SIZE")`` where the server has
        STATUS=SIZE); default MESSAGES UIDNEXT UIDVALIDITY (+ HIGHESTMODSEQ with CONDSTORE)."""
        if items is None:
            items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
            if self.has("CONDSTORE"):
                items.append("HIGHESTMODSEQ")
        wanted = b"(" + " ".join(items).encode("ascii") + b")"
        results: dict[str, dict[str, int] | ImapError] = {}
        async with self._holding():
            tags: dict[bytes, str] = {}
            wire: dict[str, str] = {}
            buf = bytearray()
            for mb in mailboxes:
                tag = self._next_tag()
                tags[tag] = mb
                wire[utf7.encode(mb)] = mb
                buf += tag + b" STATUS " + mailbox_arg(mb) + b" " + wanted + b"\r\n"
            self._writer.write(bytes(buf))
            await self._drain()
            pending = set(tags)
            while pending:
                resp = await self._read()
                tag = resp.line.split(b" ", 1)[0]
                if tag in pending:
                    pending.discard(tag)
                    done = self._completion(resp, [])
                    if done.status != "OK":
                        err = CommandFailed(done.text, done.status, done.code)
                        mb = tags[tag]
                        results[mb] = classify_text(done.text, done.code) or _vanished_or(err, mb)
                    continue
                self._note_untagged(resp)
                if resp.words(2)[-1].upper() == "STATUS":
                    toks = tokenize(resp.rest_after(2), resp.literals)
                    if len(toks) >= 2 and isinstance(toks[-1], list):
                        name = wire.get(as_str(toks[0]), utf7.decode(as_str(toks[0])))
                        results[name] = {k: int(as_str(v)) for k, v in pairs(toks[-1]).items()}
        return results

    async def enable(self, *extensions: str) -> set[str]:
        """ENABLE (RFC 5161) where the server has it; returns what is enabled now."""
        if not self.has("ENABLE"):
            return self.enabled
        done = await self.execute(b"ENABLE", *(e.encode("ascii") for e in extensions), check=False)
        for r in done.untagged:
            words = r.text().split()
            if len(words) >= 2 and words[1].upper() == "ENABLED":
                self.enabled |= {w.upper() for w in words[2:]}
        return self.enabled

    async def select(
        self, mailbox: str, readonly: bool = False, qresync: tuple[int, int] | None = None
    ) -> SelectInfo:
        """SELECT/EXAMINE. ``qresync`` (UIDVALIDITY, HIGHESTMODSEQ known before), on a connection with
        QRESYNC enabled: the same round trip reports the UIDs expunged (VANISHED (EARLIER)) and those
        whose flags changed since that modseq (RFC 7162 section 3.2.5)."""
        cmd = [b"EXAMINE" if readonly else b"SELECT", mailbox_arg(mailbox)]
        use_qresync = qresync is not None and "QRESYNC" in self.enabled
        if use_qresync and qresync is not None:
            cmd.append(b"(QRESYNC (%d %d))" % qresync)
        elif self.has("CONDSTORE"):
            cmd.append(b"(CONDSTORE)")
        self.selected = None
        try:
            done = await self.execute(*cmd)
        except CommandFailed as exc:
            raise _vanished_or(exc, mailbox) from None
        info = SelectInfo(0, None, 0, None, set(), readonly, qresync=use_qresync)
        for r in done.untagged:
            text = r.text()
            parts = text.split(" ", 2)
            if len(parts) >= 3 and parts[2].upper().startswith("EXISTS"):
                info.exists = int(parts[1])
            elif len(parts) >= 3 and parts[1].upper() == "VANISHED":
                info.vanished += expand_uids(parts[2].removeprefix("(EARLIER)").strip())
            elif len(parts) >= 3 and parts[2].upper().startswith("FETCH"):
                meta = _parse_fetch_meta(r)
                if meta is not None:
                    info.changed.append(meta.uid)
            elif text.upper().startswith("* OK ["):
                code, args, _ = parse_status_text(text[5:])
                if code == "UIDVALIDITY" and args:
                    info.uidvalidity = int(args)
                elif code == "UIDNEXT" and args:
                    info.uidnext = int(args)
                elif code == "HIGHESTMODSEQ" and args:
                    info.highestmodseq = int(args)
                elif code == "PERMANENTFLAGS" and args:
                    info.permanentflags = set(args.strip("()").split())
                elif code == "NOMODSEQ":
                    info.highestmodseq = None
        self.selected = mailbox
        return info

    async def create(self, mailbox: str) -> bool:
        """CREATE; False if it already existed."""
        done = await self.execute(b"CREATE", mailbox_arg(mailbox), check=False)
        if done.status == "OK":
            return True
        if done.code == "ALREADYEXISTS" or "exists" in done.text.lower():
            return False
        raise classify_text(done.text, done.code) or CommandFailed(
            f"CREATE {mailbox} failed: {done.text[:200]}", done.status, done.code
        )

    async def subscribe(self, mailbox: str) -> None:
        await self.execute(b"SUBSCRIBE", mailbox_arg(mailbox), check=False)

    async def delete(self, mailbox: str) -> None:
        await self.execute(b"DELETE", mailbox_arg(mailbox))

    # --------------------------------------------------------------- messages
    async def fetch_meta(
        self,
        uid_set: str,
        *,
        changedsince: int | None = None,
        with_message_id: bool = True,
        on_meta: Callable[[MessageMeta], None] | None = None,
    ) -> list[MessageMeta]:
        """UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE [Message-ID] [MODSEQ]) over any range, streamed."""
        items = [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]
        if with_message_id:
            items.append(b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
        modseq = self.has("CONDSTORE")
        if modseq:
            items.append(b"MODSEQ")
        cmd = [b"UID FETCH", uid_set.encode(), b"(" + b" ".join(items) + b")"]
        if changedsince is not None and modseq:
            cmd.append(b"(CHANGEDSINCE %d)" % changedsince)
        out: list[MessageMeta] = []

        def handle(resp: Response) -> bool:
            meta = _parse_fetch_meta(resp)
            if meta is None:
                return False
            if on_meta is not None:
                on_meta(meta)
            else:
                out.append(meta)
            return True

        await self.execute(*cmd, on_untagged=handle)
        return out

    async def fetch_bodies(self, uids: Sequence[int]) -> dict[int, Literal]:
        """UID FETCH BODY.PEEK[] of ``uids``; big bodies arrive as Spool (bounded memory)."""
        out: dict[int, Literal] = {}
        if not uids:
            return out
        in_memory = [0]

        def handle(resp: Response) -> bool:
            fast = _BODY_FAST.fullmatch(resp.line) if len(resp.literals) == 1 else None
            if fast is not None:  # the usual shape: no tokenizer
                uid: Any = fast.group(1)
                body: Any = resp.literals[0]
            else:
                if b" FETCH " not in resp.line[:40].upper():
                    return False
                toks = tokenize(resp.rest_after(3), resp.literals)
                if not toks or not isinstance(toks[0], list):
                    return False
                attrs = pairs(toks[0])
                uid = attrs.get("UID")
                body = attrs.get("BODY[]")
            if uid is None or body is None:
                resp.close()
                return True
            lit: Literal = body if isinstance(body, Spool | bytes) else b""
            if isinstance(lit, bytes):
                if in_memory[0] + len(lit) > BODY_MEMORY_BUDGET:
                    lit = Spool.from_bytes(lit)
                else:
                    in_memory[0] += len(lit)
            old = out.get(int(as_str(uid)))
            if isinstance(old, Spool):
                old.close()
            out[int(as_str(uid))] = lit
            for extra in resp.literals:
                if isinstance(extra, Spool) and extra is not body:
                    extra.close()
            return True

        try:
            await self.execute(
                b"UID FETCH", compress_uids(uids).encode(), b"(UID BODY.PEEK[])", on_untagged=handle
            )
        except BaseException:
            for v in out.values():
                if isinstance(v, Spool):
                    v.close()
            raise
        return out

    async def append(self, mailbox: str, items: Sequence[AppendItem]) -> list[int] | None:
        """APPEND one message, or several in one MULTIAPPEND (RFC 3502) when the server has it.

        Returns the destination UIDs from APPENDUID (UIDPLUS) or None.
        """
        if len(items) > 1 and not self.has("MULTIAPPEND"):
            uids: list[int] = []
            for it in items:
                got = await self.append(mailbox, [it])
                if got is None:
                    return None
                uids += got
            return uids
        try:
            done = await self.execute(*_append_parts(mailbox, items))
        except CommandFailed as exc:
            if exc.code == "TRYCREATE":
                raise FolderVanished(f"destination folder {mailbox} does not exist") from None
            raise
        return _appenduid(done)

    def can_pipeline_append(self, items: Sequence[AppendItem]) -> bool:
        """Whether ``items`` can be sent as one MULTIAPPEND without waiting for a continuation."""
        return self.has("MULTIAPPEND") and all(self._literal_plus(len(it.data)) for it in items)

    @contextlib.asynccontextmanager
    async def append_pipeline(self, mailbox: str) -> AsyncIterator[AppendPipeline]:
        """Hold the connection for a run of pipelined MULTIAPPENDs (see AppendPipeline).

        Leaving with a command still outstanding (an error, a cancel) closes the connection: what
        it did is unknown, and the caller's recovery (a re-match against the destination) decides.
        """
        async with self._holding():
            pipe = AppendPipeline(self, mailbox)
            try:
                yield pipe
            finally:
                if pipe.outstanding:
                    self._abort()

    async def store_flags(self, uids: Sequence[int], flags: Sequence[str], mode: str = "FLAGS") -> None:
        """UID STORE uids <mode>.SILENT (flags); mode FLAGS (replace), +FLAGS or -FLAGS."""
        await self.execute(
            b"UID STORE",
            compress_uids(uids).encode(),
            mode.encode() + b".SILENT",
            b"(" + " ".join(flags).encode("utf-8") + b")",
        )

    async def uid_expunge(self, uids: Sequence[int]) -> None:
        """UID EXPUNGE (UIDPLUS): remove exactly these messages (they must carry \\Deleted)."""
        await self.execute(b"UID EXPUNGE", compress_uids(uids).encode())

    async def uid_move(self, uids: Sequence[int], mailbox: str) -> dict[int, int]:
        """Move messages of the selected mailbox to ``mailbox``: UID MOVE (RFC 6851), or UID COPY +
        \\Deleted + UID EXPUNGE. Returns {old UID: new UID} from COPYUID (empty without UIDPLUS)."""
        seq = compress_uids(uids).encode()
        if self.has("MOVE"):
            done = await self.execute(b"UID MOVE", seq, mailbox_arg(mailbox))
        else:
            done = await self.execute(b"UID COPY", seq, mailbox_arg(mailbox))
            await self.store_flags(uids, ["\\Deleted"], mode="+FLAGS")
            await self.uid_expunge(uids)
        codes = [(done.code, done.code_args)]
        for r in done.untagged:
            text = r.text()
            if text.upper().startswith("* OK ["):
                code, args, _ = parse_status_text(text[5:])
                codes.append((code, args))
        for code, args in codes:
            if code == "COPYUID" and args and len(args.split()) == 3:
                _, old, new = args.split()
                return dict(zip(expand_uids(old), expand_uids(new), strict=False))
        return {}

    async def uid_count(self, uid_set: str) -> int:
        """How many messages of the selected mailbox have a UID in ``uid_set`` (ESEARCH COUNT: one number
        on the wire; plain SEARCH otherwise)."""
        if self.has("ESEARCH"):
            done = await self.execute(b"UID SEARCH RETURN (COUNT) UID", uid_set.encode())
            for r in done.untagged:
                words = r.text().upper().split()
                if len(words) >= 2 and words[1] == "ESEARCH" and "COUNT" in words[:-1]:
                    return int(words[words.index("COUNT") + 1])
            return 0
        done = await self.execute(b"UID SEARCH UID", uid_set.encode())
        return sum(len(r.line.split()) - 2 for r in done.untagged if r.line.upper().startswith(b"* SEARCH"))

    async def search_message_id(self, message_id: str) -> list[int]:
        arg: bytes | _RawLiteral = self._astring(message_id)
        done = await self.execute(b"UID SEARCH HEADER Message-ID", arg)
        uids: list[int] = []
        for r in done.untagged:
            if r.line.upper().startswith(b"* SEARCH"):
                uids += [int(x) for x in r.line.split()[2:] if x.isdigit()]
        return uids

    async def noop(self) -> None:
        await self.execute(b"NOOP")

    async def exists_now(self) -> int | None:
        """NOOP on the selected mailbox: the message count it reports (None: no EXISTS update)."""
        done = await self.execute(b"NOOP")
        count: int | None = None
        for r in done.untagged:
            parts = r.line.split(b" ", 3)
            if len(parts) >= 3 and parts[2].upper().startswith(b"EXISTS") and parts[1].isdigit():
                count = int(parts[1])
        return count

    async def logout(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(ImapError, OSError, TimeoutError):
            await asyncio.wait_for(self.execute(b"LOGOUT", check=False), 5)
        self._abort()

    async def close(self) -> None:
        await self.logout()


_DEFAULT_CONTEXT: ssl.SSLContext | None = None


def _default_context() -> ssl.SSLContext:
    """Loading the system CA store costs ~0.1 s: do it once per process."""
    global _DEFAULT_CONTEXT
    if _DEFAULT_CONTEXT is None:
        _DEFAULT_CONTEXT = ssl.create_default_context()
    return _DEFAULT_CONTEXT


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
            c._writer.write(bytes(buf))
            buf.clear()
            # Registered before the first literal goes out: a failure from here on leaves it unknown.
            if tag not in self.outstanding:
                self.outstanding.append(tag)
            await c._write_literal(it.data)
        c._writer.write(b"\r\n")
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


def _append_parts(mailbox: str, items: Sequence[AppendItem]) -> list[bytes | Spool | _RawLiteral]:
    parts: list[bytes | Spool | _RawLiteral] = [b"APPEND", mailbox_arg(mailbox)]
    for it in items:
        if it.flags:
            parts.append(b"(" + " ".join(it.flags).encode("utf-8") + b")")
        if it.internaldate:
            parts.append(b'"' + it.internaldate.encode() + b'"')
        parts.append(_RawLiteral(it.data))
    return parts


def _appenduid(done: Completion) -> list[int] | None:
    if done.code == "APPENDUID" and done.code_args:
        try:
            _, uidset = done.code_args.split()
            return expand_uids(uidset)
        except ValueError:
            return None
    return None


class _RawLiteral:
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


def _vanished_or(exc: CommandFailed, mailbox: str) -> ImapError:
    text = exc.message.lower()
    if (
        exc.code == "NONEXISTENT"
        or "doesn't exist" in text
        or "does not exist" in text
        or "unknown mailbox" in text
    ):
        return FolderVanished(f"folder {mailbox!r} does not exist (any more)")
    return exc


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
