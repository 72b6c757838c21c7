"""The JSON-over-HTTPS client the cloud sides share (Google Calendar, Google People, Microsoft Graph): the
mail side's OAuth2 bearer (runner.http_auth), paging (Google `nextPageToken`/`nextSyncToken`, Graph
`@odata.nextLink`/`@odata.deltaLink`), throttling (429/503 with `Retry-After`, a few times, then a
transient problem) and errors as `DavError` problems. No response body and no token ever goes into a
problem's message or a log line: only the operation's name and the HTTP status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .dav import DavError, SyncTokenInvalid

Sleep = Callable[[float], Awaitable[None]]
MAX_RETRY_AFTER = 120.0
# An expired token, as each API documents it: Calendar 410 Gone, Graph 410 (syncStateNotFound/
# resyncRequired), People 400 FAILED_PRECONDITION with ErrorInfo reason EXPIRED_SYNC_TOKEN.
EXPIRED_MARKERS = (b"EXPIRED_SYNC_TOKEN", b"syncStateNotFound", b"resyncRequired")
RATE_MARKERS = (b"rateLimitExceeded", b"userRateLimitExceeded", b"RESOURCE_EXHAUSTED")


def retry_after(resp: httpx.Response, attempt: int) -> float:
    """Seconds to wait: the server's Retry-After (seconds), else 1, 2, 4 ... (Google's backoff advice)."""
    value = resp.headers.get("Retry-After", "")
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        return float(min(MAX_RETRY_AFTER, 2**attempt))


@dataclass
class ApiClient:
    """One HTTP client per side; `service` names the problems (GoogleThrottled, GraphUnreachable, ...)."""

    auth: httpx.Auth
    service: str = "Google"
    timeout: float = 60.0
    transport: httpx.AsyncBaseTransport | None = None
    retries: int = 4
    sleep: Sleep = asyncio.sleep
    requests: int = 0
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(auth=self.auth, timeout=self.timeout, transport=self.transport)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        url: str,
        what: str,
        params: Any = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        """One request; 429/503 (and Google's 403 rateLimitExceeded) are retried after Retry-After."""
        hdrs = {"Accept": "application/json", **(headers or {})}
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                resp = await self.http.request(
                    method, url, params=params, json=json, content=content, headers=hdrs
                )
            except httpx.HTTPError as exc:
                raise DavError(
                    f"{what}: {type(exc).__name__}", f"{self.service}Unreachable", transient=True
                ) from None
            throttled = resp.status_code in (429, 503) or (
                resp.status_code == 403 and any(m in resp.content for m in RATE_MARKERS)
            )
            if throttled and attempt < self.retries:
                await self.sleep(retry_after(resp, attempt))
                continue
            self._raise_for(resp, what, missing_ok)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, resp: httpx.Response, what: str, missing_ok: bool) -> None:
        code = resp.status_code
        if code < 300 or (missing_ok and code in (404, 410)):
            return
        where = f"{what}: HTTP {code}"
        if code == 410 or (code == 400 and any(m in resp.content for m in EXPIRED_MARKERS)):
            raise SyncTokenInvalid(f"{where} (the sync token or delta link expired)")
        if code in (403, 429) and (code == 429 or any(m in resp.content for m in RATE_MARKERS)):
            raise DavError(where, f"{self.service}Throttled", transient=True)
        if code in (401, 403):
            raise DavError(f"{where} (check the OAuth2 grant and its scopes)", "AuthenticationFailed")
        if code == 404:
            raise DavError(where, "NotFound")
        if code in (409, 412) or (code == 400 and b"FAILED_PRECONDITION" in resp.content):
            raise DavError(f"{where} (changed meanwhile)", f"{self.service}Conflict", transient=True)
        if code >= 500:
            raise DavError(where, f"{self.service}Throttled", transient=True)
        if code == 413:
            raise DavError(where, "ItemTooLarge")
        raise DavError(where, "DavRequestRejected")

    async def json(self, method: str, url: str, what: str, **kw: Any) -> dict[str, Any]:
        resp = await self.call(method, url, what, **kw)
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            body = resp.json()
        except ValueError:
            raise DavError(f"{what}: the answer is not JSON", f"{self.service}ProtocolError") from None
        if not isinstance(body, dict):
            raise DavError(f"{what}: the answer is not a JSON object", f"{self.service}ProtocolError")
        return body

    async def google_pages(
        self, url: str, params: dict[str, str], what: str, key: str = "items"
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every page of a Google list (`nextPageToken`); the last page's `nextSyncToken`."""
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            body = await self.json(
                "GET", url, what, params={**params, **({"pageToken": page} if page else {})}
            )
            items.extend(i for i in body.get(key) or [] if isinstance(i, dict))
            page = body.get("nextPageToken")
            if not page:
                return items, body.get("nextSyncToken")

    async def graph_pages(
        self, url: str, what: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every page of a Graph collection or delta round (`@odata.nextLink`, carrying the query); the
        round's `@odata.deltaLink` (None for a plain collection)."""
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        first = True
        while next_url:
            body = await self.json("GET", next_url, what, params=params if first else None, headers=headers)
            first = False
            items.extend(i for i in body.get("value") or [] if isinstance(i, dict))
            next_url = body.get("@odata.nextLink")
            if not next_url:
                return items, body.get("@odata.deltaLink")
        return items, None
