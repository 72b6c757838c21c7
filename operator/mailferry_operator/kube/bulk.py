"""Many creates at once (10,000 MailboxSyncs at a migration's start) on a cheaper path than `KubeApi`.

httpx costs about as much operator CPU per create as everything else together (py-spy in
docs/benchmarks.md: pool scans on each request and response, anyio TLS writes). Here aiohttp (Kopf's own
HTTP client, already loaded: C-parsed HTTP/1.1, keep-alive connections) sends a body serialised once,
and the answer is read but not parsed when the object was created: nothing uses it. Same credentials
(`mailferry_kube.client.connection`), same field manager, same errors (`KubeError`, whose message never
holds a body) as the rest of `..kube.client`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from mailferry_kube.client import JSON, KubeError, connection

CONNECT_TIMEOUT = 10.0
TIMEOUT = 60.0


class BulkCreator:
    """POSTs on at most `connections` kept-alive connections to the API server."""

    def __init__(self, field_manager: str, connections: int) -> None:
        server, tls, token = connection()
        self.server = server.rstrip("/")
        self.params = {"fieldManager": field_manager}
        self.headers = {"Content-Type": JSON, "Accept": JSON}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.connector = aiohttp.TCPConnector(limit=max(1, connections), ssl=tls)
        self.session = aiohttp.ClientSession(
            connector=self.connector,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=CONNECT_TIMEOUT),
            # no cookie jar (the API server sets none) and no JSON round trip through aiohttp's helpers
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def create(self, path: str, body: Mapping[str, Any]) -> bool:
        """POST `body` to the collection at `path`; False if it exists already (409)."""
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            async with self.session.post(
                self.server + path, data=data, params=self.params, headers=self.headers
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            name = type(exc).__name__
            raise KubeError(f"POST {path}: API server unreachable: {name}", None, name) from None
        if status < 400:
            return True
        if status == 409:
            return False
        raise _error(path, status, raw)

    async def close(self) -> None:
        await self.session.close()


def _error(path: str, status: int, raw: bytes) -> KubeError:
    """The API's Status reason and message (cut short), as `KubeApi` reports them."""
    reason = msg = ""
    try:
        data = json.loads(raw)
        reason, msg = str(data.get("reason") or ""), str(data.get("message") or "")
    except (ValueError, AttributeError):
        pass
    return KubeError(f"POST {path}: HTTP {status} {msg[:300]}", status, reason or str(status))


_creator: BulkCreator | None = None
_lock = asyncio.Lock()


async def creator(field_manager: str, connections: int) -> BulkCreator:
    """The process's one BulkCreator (made on first use, on the running loop)."""
    global _creator
    async with _lock:
        if _creator is None:
            _creator = BulkCreator(field_manager, connections)
        return _creator


async def close() -> None:
    global _creator
    if _creator is not None:
        await _creator.close()
        _creator = None
