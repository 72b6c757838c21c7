"""A TCP fault proxy on loopback (asyncio in a background thread), controllable from the test.

    proxy = FaultProxy("127.0.0.1", dovecot.port).start()      # proxy.port forwards to the target
    proxy.cut_after(200_000)            # every connection is reset after 200 kB (both directions)
    proxy.random_cuts(50_000, 2_000_000, seed=7)   # each new connection: reset after U(lo, hi) bytes
    proxy.cut_every(0.5, 3.0)           # reset one live connection at random moments
    proxy.stall() / proxy.resume()      # stop forwarding (the peers see a silent connection)
    proxy.connect_delay(1.5)            # each new connection waits 1.5 s before the server is reached
                                        # (a slow IMAP login / greeting, e.g. a remote provider)
    proxy.cut_all()                     # reset every live connection now
    proxy.refuse(True)                  # accept and reset at once (server "down")
    proxy.inject_throttle(n=1)          # the next n IMAP commands (no literal) get ``NO [THROTTLED]``
    proxy.inject_bye(n=1)               # the next n IMAP commands get ``* BYE`` and the connection closes
    proxy.inject_probability(throttle=0.02, bye=0.01, seed=3)  # at random instead
    proxy.stats                         # connections, cuts, throttles, byes, bytes up/down

Resets are real TCP RSTs (SO_LINGER 0). The IMAP-aware part only looks at the client's command
lines, skipping literal data (``{N}`` / ``{N+}``), so message bodies are never mistaken for commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from .loopthread import LoopbackServer

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
# Commands we may answer ourselves: no literal follows them, and the client waits for the answer.
_INTERCEPTABLE = re.compile(rb"^(\S+) (UID FETCH|UID SEARCH|SELECT|EXAMINE|STATUS|NOOP|LIST)\b", re.I)
THROTTLE_TEXT = b"NO [THROTTLED] Request is throttled. Suggested Backoff Time: 300 milliseconds"
BYE_TEXT = b"* BYE [UNAVAILABLE] fault proxy: server shutting down"


@dataclass
class ProxyStats:
    connections: int = 0
    cuts: int = 0
    throttles: int = 0
    byes: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(eq=False)
class _Conn:
    proxy: FaultProxy
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    budget: int | None = None
    forwarded: int = 0
    closed: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def reset(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.client, self.server):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.client, self.server):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.close()
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()


class FaultProxy(LoopbackServer):
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0, raw: bool = False) -> None:
        """``raw=True``: any TCP protocol (e.g. TLS to kube-apiserver); no IMAP-aware injection."""
        super().__init__()
        self.target = (target_host, target_port)
        self.raw = raw
        self.listen_port = listen_port
        self.stats = ProxyStats()
        self._conns: set[_Conn] = set()
        self._flowing: asyncio.Event | None = None
        self._budget_fixed: int | None = None
        self._budget_range: tuple[int, int] | None = None
        self._rng = random.Random(0)
        self._refuse = False
        self._throttle_next = 0
        self._bye_next = 0
        self._p_throttle = 0.0
        self._p_bye = 0.0
        self._cutter: asyncio.Task[None] | None = None
        self._connect_delay = 0.0

    # ----------------------------------------------------------------- lifecycle
    async def _on_start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await super()._on_start()

    async def _on_stop(self) -> None:
        await super()._on_stop()
        for c in list(self._conns):
            c.close()

    def _do(self, fn: Any, *args: Any) -> None:
        assert self._lt is not None, "proxy not started"

        async def _run() -> None:
            fn(*args)

        self._lt.run(_run())

    # ------------------------------------------------------------------ controls
    def cut_after(self, nbytes: int | None) -> None:
        """Reset every connection (new and live) once it has forwarded ``nbytes`` (None: never)."""

        def _set() -> None:
            self._budget_fixed, self._budget_range = nbytes, None
            for c in self._conns:
                c.budget = nbytes

        self._do(_set)

    def random_cuts(self, lo: int, hi: int, seed: int = 0) -> None:
        """Each new connection is reset after a random number of bytes in [lo, hi]."""

        def _set() -> None:
            self._budget_fixed, self._budget_range = None, (lo, hi)
            self._rng = random.Random(seed)

        self._do(_set)

    def no_cuts(self) -> None:
        def _set() -> None:
            self._budget_fixed = self._budget_range = None
            for c in self._conns:
                c.budget = None
            if self._cutter is not None:
                self._cutter.cancel()
                self._cutter = None

        self._do(_set)

    def cut_every(self, lo_s: float, hi_s: float, seed: int = 0) -> None:
        """Reset one random live connection every U(lo_s, hi_s) seconds until ``no_cuts()``."""
        rng = random.Random(seed)

        async def _loop() -> None:
            while True:
                await asyncio.sleep(rng.uniform(lo_s, hi_s))
                live = [c for c in self._conns if not c.closed]
                if live:
                    self.stats.cuts += 1
                    rng.choice(live).reset()

        def _set() -> None:
            if self._cutter is not None:
                self._cutter.cancel()
            self._cutter = asyncio.get_running_loop().create_task(_loop())

        self._do(_set)

    def cut_all(self) -> int:
        n = [0]

        def _cut() -> None:
            for c in list(self._conns):
                if not c.closed:
                    n[0] += 1
                    self.stats.cuts += 1
                    c.reset()

        self._do(_cut)
        return n[0]

    def stall(self) -> None:
        self._do(lambda: self._flowing.clear() if self._flowing else None)

    def resume(self) -> None:
        self._do(lambda: self._flowing.set() if self._flowing else None)

    def refuse(self, on: bool = True) -> None:
        def _set() -> None:
            self._refuse = on

        self._do(_set)

    def inject_throttle(self, n: int = 1) -> None:
        def _set() -> None:
            self._throttle_next += n

        self._do(_set)

    def inject_bye(self, n: int = 1) -> None:
        def _set() -> None:
            self._bye_next += n

        self._do(_set)

    def connect_delay(self, seconds: float) -> None:
        """New connections wait ``seconds`` before the proxy connects to the target (the client sees
        a slow greeting, so every login takes that much longer)."""

        def _set() -> None:
            self._connect_delay = seconds

        self._do(_set)

    def inject_probability(self, throttle: float = 0.0, bye: float = 0.0, seed: int = 0) -> None:
        def _set() -> None:
            self._p_throttle, self._p_bye = throttle, bye
            self._rng = random.Random(seed)

        self._do(_set)

    @property
    def live_connections(self) -> int:
        return sum(1 for c in list(self._conns) if not c.closed)

    # ------------------------------------------------------------------ plumbing
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        conn = _Conn(self, writer)
        if self._refuse:
            self.stats.refused += 1
            conn.reset()
            return
        if self._budget_fixed is not None:
            conn.budget = self._budget_fixed
        elif self._budget_range is not None:
            conn.budget = self._rng.randint(*self._budget_range)
        if self._connect_delay:
            await asyncio.sleep(self._connect_delay)
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            conn.reset()
            return
        conn.server = swriter
        self._conns.add(conn)
        loop = asyncio.get_running_loop()
        up = loop.create_task(
            self._pump(conn, reader, swriter, "up") if self.raw else self._pump_client(conn, reader, swriter)
        )
        down = loop.create_task(self._pump(conn, sreader, writer, "down"))
        conn.tasks = [up, down]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.close()
            self._conns.discard(conn)

    async def _forward(self, conn: _Conn, w: asyncio.StreamWriter, data: bytes, direction: str) -> bool:
        """Write ``data`` honouring stall and the byte budget; False once the connection is cut."""
        assert self._flowing is not None
        await self._flowing.wait()
        if conn.closed:
            return False
        if conn.budget is not None and conn.forwarded + len(data) >= conn.budget:
            part = data[: max(0, conn.budget - conn.forwarded)]
            if part:
                w.write(part)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.drain(), 2)
            self._account(direction, len(part))
            self.stats.cuts += 1
            conn.reset()
            return False
        w.write(data)
        conn.forwarded += len(data)
        self._account(direction, len(data))
        await w.drain()
        return True

    def _account(self, direction: str, n: int) -> None:
        if direction == "up":
            self.stats.bytes_up += n
        else:
            self.stats.bytes_down += n

    async def _pump(
        self, conn: _Conn, r: asyncio.StreamReader, w: asyncio.StreamWriter, direction: str
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while not conn.closed:
                data = await r.read(65536)
                if not data:
                    break
                if not await self._forward(conn, w, data, direction):
                    break

    def _intercept(self) -> str | None:
        if self._bye_next > 0:
            self._bye_next -= 1
            return "bye"
        if self._throttle_next > 0:
            self._throttle_next -= 1
            return "throttle"
        if self._p_bye and self._rng.random() < self._p_bye:
            return "bye"
        if self._p_throttle and self._rng.random() < self._p_throttle:
            return "throttle"
        return None

    async def _pump_client(self, conn: _Conn, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Client -> server, IMAP-aware: may answer a command itself with NO [THROTTLED] or BYE."""
        line = bytearray()
        literal_left = 0
        continuing = False  # the next line continues a command (after a literal)
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while not conn.closed:
                data = await r.read(65536)
                if not data:
                    break
                out = bytearray()
                i = 0
                while i < len(data):
                    if literal_left:
                        take = min(literal_left, len(data) - i)
                        out += data[i : i + take]
                        literal_left -= take
                        i += take
                        continue
                    j = data.find(b"\n", i)
                    if j < 0:
                        line += data[i:]
                        break
                    line += data[i : j + 1]
                    i = j + 1
                    full = bytes(line)
                    line.clear()
                    m = _LITERAL.search(full)
                    new_command = not continuing
                    continuing = m is not None
                    if m:
                        literal_left = int(m.group(1))
                    cmd = _INTERCEPTABLE.match(full) if new_command and not m else None
                    action = self._intercept() if cmd else None
                    if action and cmd:
                        if out and not await self._forward(conn, w, bytes(out), "up"):
                            return
                        out.clear()
                        tag = cmd.group(1)
                        if action == "throttle":
                            self.stats.throttles += 1
                            conn.client.write(tag + b" " + THROTTLE_TEXT + b"\r\n")
                            await conn.client.drain()
                            continue
                        self.stats.byes += 1
                        conn.client.write(BYE_TEXT + b"\r\n")
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(conn.client.drain(), 2)
                        conn.close()
                        return
                    out += full
                if out and not await self._forward(conn, w, bytes(out), "up"):
                    return
