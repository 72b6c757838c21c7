"""Streaming IMAP response reader and an iterative (non-recursive) tokenizer.

A response is read line by line; each ``{N}`` literal is read exactly (large ones are
spooled to a temporary file so memory stays bounded) and the line continues after it.
The tokenizer turns a response into nested Python lists of ``bytes`` atoms/strings and
literal objects with an explicit stack, so deep or very long responses cannot overflow
the Python stack (aioimaplib's RecursionError, upstream #118).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

from .errors import ConnectionLost, ProtocolError

LITERAL_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
CODE_RE = re.compile(r"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]\s?")
SENTINEL = b"\x00"
SPOOL_THRESHOLD = 1 << 20  # literals above 1 MiB go to a SpooledTemporaryFile
SPOOL_MEMORY = 1 << 20
RESPONSE_MEMORY = 8 << 20  # literals of one response kept in memory beyond this go to disk
READ_CHUNK = 256 * 1024
MAX_LINE = 64 * 1024 * 1024  # longest response line (without literals) we accept


class Spool:
    """A large literal held in a SpooledTemporaryFile (in memory up to 1 MiB, then on disk)."""

    def __init__(self, size: int, on_disk: bool = False) -> None:
        self.size = size
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
        if on_disk:
            self.file.rollover()

    @classmethod
    def from_bytes(cls, data: bytes) -> Spool:
        """Move an in-memory literal to disk (memory budgets)."""
        spool = cls(len(data), on_disk=True)
        spool.file.write(data)
        return spool

    def __len__(self) -> int:
        return self.size

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


Literal = bytes | Spool


@dataclass
class Response:
    """One server response. ``line`` holds the text with each literal replaced by ``{N}\\0``."""

    line: bytes
    literals: list[Literal] = field(default_factory=list)

    @property
    def tag(self) -> str:
        sp = self.line.find(b" ")
        return self.line[:sp].decode("ascii", "replace") if sp > 0 else self.line.decode("ascii", "replace")

    @property
    def is_continuation(self) -> bool:
        return self.line.startswith(b"+")

    def words(self, n: int) -> list[str]:
        """The first ``n`` space-separated words (ASCII-decoded)."""
        return [w.decode("ascii", "replace") for w in self.line.split(b" ", n)[:n]]

    def rest_after(self, n: int) -> bytes:
        parts = self.line.split(b" ", n)
        return parts[n] if len(parts) > n else b""

    def text(self) -> str:
        return self.line.replace(SENTINEL, b"").decode("utf-8", "replace")

    def close(self) -> None:
        for lit in self.literals:
            if isinstance(lit, Spool):
                lit.close()


def parse_status_text(text: str) -> tuple[str | None, str | None, str]:
    """``[CODE args] human text`` -> (CODE, args, text)."""
    m = CODE_RE.match(text)
    if not m:
        return None, None, text
    return m.group(1).upper(), m.group(2), text[m.end() :]


class _NoTimer:
    """An async context manager that does nothing (data already buffered: nothing to time out)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_TIMER = _NoTimer()


class ResponseReader:
    def __init__(self, reader: asyncio.StreamReader, timeout: float) -> None:
        self.reader = reader
        self.timeout = timeout

    async def _readline(self) -> bytes:
        """One CRLF-terminated line, up to MAX_LINE bytes, with a small StreamReader buffer.

        The StreamReader limit stays small (its read-ahead is twice the limit); longer lines are
        gathered piece by piece when readuntil reports LimitOverrunError.
        """
        pieces: list[bytes] = []
        total = 0
        while True:
            buf = getattr(self.reader, "_buffer", None)
            # Already buffered: readuntil returns without waiting, so no timer is needed (a timer per
            # line was a measurable share of the worker's CPU on bulk FETCH responses).
            buffered = buf is not None and buf.find(b"\r\n", 0, READ_CHUNK) >= 0
            try:
                async with _NO_TIMER if buffered else asyncio.timeout(self.timeout):
                    line = await self.reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError as exc:
                raise ConnectionLost("connection closed by server") from exc
            except asyncio.LimitOverrunError as exc:
                piece = await self._readexactly(max(1, exc.consumed))
                pieces.append(piece)
                total += len(piece)
                if total > MAX_LINE:
                    raise ProtocolError(f"response line longer than {MAX_LINE >> 20} MiB") from None
                continue
            except TimeoutError as exc:
                raise ConnectionLost(f"read timed out after {self.timeout:.0f}s") from exc
            except (ConnectionError, OSError) as exc:
                raise ConnectionLost(f"connection error: {type(exc).__name__}") from exc
            if pieces:
                pieces.append(line)
                return b"".join(pieces)
            return line

    async def _readexactly(self, n: int) -> bytes:
        buf = getattr(self.reader, "_buffer", None)
        try:
            async with _NO_TIMER if buf is not None and len(buf) >= n else asyncio.timeout(self.timeout):
                return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionLost("connection closed by server inside a literal") from exc
        except TimeoutError as exc:
            raise ConnectionLost(f"read timed out after {self.timeout:.0f}s") from exc
        except (ConnectionError, OSError) as exc:
            raise ConnectionLost(f"connection error: {type(exc).__name__}") from exc

    async def read(self) -> Response:
        parts: list[bytes] = []
        literals: list[Literal] = []
        in_memory = 0
        while True:
            line = await self._readline()
            m = LITERAL_END.search(line)
            if not m:
                parts.append(line[:-2])
                break
            size = int(m.group(1))
            parts.append(line[: m.start()] + b"{" + m.group(1) + b"}" + SENTINEL)
            if size <= SPOOL_THRESHOLD and in_memory + size <= RESPONSE_MEMORY:
                literals.append(await self._readexactly(size) if size else b"")
                in_memory += size
            else:
                spool = Spool(size, on_disk=size <= SPOOL_MEMORY)
                left = size
                try:
                    while left:
                        chunk = await self._readexactly(min(READ_CHUNK, left))
                        spool.file.write(chunk)
                        left -= len(chunk)
                except BaseException:
                    spool.close()
                    raise
                literals.append(spool)
        return Response(b"".join(parts), literals)


_DELIMS = b' ()"\x00'
_PLAIN_ATOM = re.compile(rb'[^ ()"\x00\[]+')  # an atom's run up to a delimiter or an opening bracket


def tokenize(data: bytes, literals: list[Literal] | None = None) -> list[Any]:
    """Tokens of ``data``: bytes for atoms and strings, lists for parenthesised groups, literals as is.

    Atoms keep bracketed sections whole (``BODY[HEADER.FIELDS (MESSAGE-ID)]``, ``BODY[]<0>``).
    Iterative: nesting depth and response length are bounded only by memory.
    """
    lits = literals or []
    root: list[Any] = []
    stack: list[list[Any]] = [root]
    i = 0
    n = len(data)
    k = 0
    while i < n:
        c = data[i]
        if c == 0x20 or c == 0x00:
            i += 1
        elif c == 0x28:  # (
            new: list[Any] = []
            stack[-1].append(new)
            stack.append(new)
            i += 1
        elif c == 0x29:  # )
            if len(stack) > 1:
                stack.pop()
            i += 1
        elif c == 0x22:  # "
            i += 1
            end = data.find(b'"', i)
            if end >= 0 and data.find(b"\\", i, end) < 0:  # no escapes: one slice
                stack[-1].append(data[i:end])
                i = end + 1
                continue
            buf = bytearray()
            while i < n:
                ch = data[i]
                if ch == 0x5C and i + 1 < n:  # backslash
                    buf.append(data[i + 1])
                    i += 2
                elif ch == 0x22:
                    i += 1
                    break
                else:
                    buf.append(ch)
                    i += 1
            stack[-1].append(bytes(buf))
        elif c == 0x7B:  # {N}\0 -> literal
            j = data.find(b"}", i)
            if j > 0 and j + 1 < n and data[j + 1] == 0 and k < len(lits):
                stack[-1].append(lits[k])
                k += 1
                i = j + 2
            else:  # a brace in an atom
                j = i
                while j < n and data[j] not in _DELIMS:
                    j += 1
                stack[-1].append(data[i:j])
                i = j
        else:
            m = _PLAIN_ATOM.match(data, i)
            j = m.end() if m else i
            if j >= n or data[j] != 0x5B:  # [ : a bracketed section continues the atom
                stack[-1].append(data[i:j])
                i = j
                continue
            depth = 0
            while j < n:
                ch = data[j]
                if ch == 0x5B:  # [
                    depth += 1
                elif ch == 0x5D:  # ]
                    depth = max(0, depth - 1)
                elif (depth == 0 and ch in _DELIMS) or (depth > 0 and ch == 0x00):
                    break
                j += 1
            stack[-1].append(data[i:j])
            i = j
    return root


def as_str(tok: Any) -> str:
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "replace")
    if isinstance(tok, Spool):
        return tok.read_all().decode("utf-8", "replace")
    return str(tok)


def as_bytes(tok: Any) -> bytes | None:
    """bytes of a string/literal token; None for NIL."""
    if isinstance(tok, Spool):
        return tok.read_all()
    if isinstance(tok, bytes):
        return None if tok.upper() == b"NIL" else tok
    return None


def pairs(items: list[Any]) -> dict[str, Any]:
    """A FETCH/STATUS attribute list ``(KEY value KEY value ...)`` -> {KEY.upper(): value}."""
    out: dict[str, Any] = {}
    for idx in range(0, len(items) - 1, 2):
        key = items[idx]
        if isinstance(key, bytes):
            out[key.decode("ascii", "replace").upper()] = items[idx + 1]
    return out
