"""Fault-injecting proxies for DNS provider tests (real servers behind them).

HttpFaultProxy: an HTTP reverse proxy (thread) in front of the PowerDNS API. `faults` is a list
of rules consumed in order by the first matching request: "500" answers 500 without forwarding,
"500-after" forwards (the change is applied) and then answers 500, "hang" waits `hang_seconds`
(longer than the client timeout) before answering 504 without forwarding. Every request is
logged as (method, path, body, status).

DnsFaultProxy: a TCP DNS proxy that answers REFUSED to the first `refuse_updates` UPDATE
messages and forwards everything else to the real server.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Fault:
    action: str  # "500" | "500-after" | "hang"
    method: str = "PATCH"
    path_contains: str = ""


@dataclass
class HttpFaultProxy:
    upstream: str  # e.g. http://127.0.0.1:8081
    faults: list[Fault] = field(default_factory=list)
    hang_seconds: float = 3.0
    response_delay: float = 0.0  # PATCHes: forwarded (applied) at once, answered after this delay
    log: list[tuple[str, str, bytes, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self
        client = httpx.Client(timeout=30)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    rule = next(
                        (
                            f
                            for f in proxy.faults
                            if f.method == self.command and f.path_contains in self.path
                        ),
                        None,
                    )
                    if rule is not None:
                        proxy.faults.remove(rule)
                if rule is not None and rule.action == "hang":
                    time.sleep(proxy.hang_seconds)
                    self._reply(504, b"", body)
                    return
                if rule is not None and rule.action == "500":
                    self._reply(500, b'{"error": "injected"}', body)
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                resp = client.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                if self.command == "PATCH" and proxy.response_delay:
                    proxy.log.append(("PATCH-applied", self.path, body, resp.status_code))
                    time.sleep(proxy.response_delay)
                if rule is not None and rule.action == "500-after":
                    self._reply(500, b'{"error": "injected after applying"}', body)
                    return
                self._reply(resp.status_code, resp.content, body, resp.headers.get("content-type"))

            def _reply(self, code: int, content: bytes, body: bytes, ctype: str | None = None) -> None:
                proxy.log.append((self.command, self.path, body, code))
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype or "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the client gave up (timeout)

            do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def patches(self, status: int | None = None) -> list[tuple[str, str, bytes, int]]:
        return [e for e in self.log if e[0] == "PATCH" and (status is None or e[3] == status)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class DnsFaultProxy:
    def __init__(self, upstream: tuple[str, int], refuse_updates: int = 0) -> None:
        self.upstream = upstream
        self.refuse_updates = refuse_updates
        self.refused = 0
        self.forwarded_updates = 0
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                while True:
                    head = _recv(sock, 2)
                    if not head:
                        return
                    (length,) = struct.unpack("!H", head)
                    wire = _recv(sock, length)
                    opcode = (wire[2] >> 3) & 0xF
                    if opcode == 5 and proxy.refused < proxy.refuse_updates:
                        proxy.refused += 1
                        # header only: same id, QR=1, opcode UPDATE, rcode REFUSED, no sections
                        flags = 0x8000 | (5 << 11) | 5
                        reply = wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)
                    else:
                        if opcode == 5:
                            proxy.forwarded_updates += 1
                        with socket.create_connection(proxy.upstream, timeout=5) as up:
                            up.sendall(head + wire)
                            (rlen,) = struct.unpack("!H", _recv(up, 2))
                            reply = _recv(up, rlen)
                    sock.sendall(struct.pack("!H", len(reply)) + reply)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf
