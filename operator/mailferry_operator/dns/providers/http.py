"""Shared HTTP error mapping for the REST providers (httpx): status codes and fixed reasons only, never
a remote body (it may echo a request header, or be a page from a host that is not the provider)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from .base import ProviderError

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


async def request(kind: str, send: Callable[[], Awaitable[httpx.Response]], what: str) -> httpx.Response:
    """Send once; map transport errors and error statuses to ProviderError (never echoing headers)."""
    try:
        resp = await send()
    except httpx.TimeoutException as exc:
        raise ProviderError("ProviderTimeout", f"{kind}: {what} timed out", transient=True) from exc
    except httpx.TransportError as exc:
        raise ProviderError(
            "ProviderUnreachable", f"{kind}: {what}: {type(exc).__name__}", transient=True
        ) from exc
    if resp.status_code in TRANSIENT_STATUS:
        raise ProviderError("ProviderError", f"{kind}: {what} -> HTTP {resp.status_code}", transient=True)
    if resp.status_code in (401, 403):
        raise ProviderError(
            "ProviderAuthFailed", f"{kind}: {what} -> HTTP {resp.status_code}: check the credentials"
        )
    return resp
