"""GET with bearer auth, bounded retries on throttling (HTTP 429/503 with Retry-After), and errors that
name the request but never the token or the response body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from mailferry_api.problems import ProblemError

MAX_ATTEMPTS = 6
MAX_WAIT = 60.0


class DiscoveryError(ProblemError):
    reason = "DiscoveryFailed"


async def get_json(
    http: httpx.AsyncClient, url: str, token: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    for attempt in range(MAX_ATTEMPTS):
        # params=None, not {}: an empty mapping would drop the query of a nextLink URL
        resp = await http.get(url, params=params or None, headers={"Authorization": f"Bearer {token}"})
        if resp.status_code in (429, 503) and attempt + 1 < MAX_ATTEMPTS:
            try:
                wait = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                wait = 2.0**attempt
            await asyncio.sleep(min(max(wait, 0.0), MAX_WAIT))
            continue
        if resp.status_code == 404:
            raise DiscoveryError(f"GET {url.split('?')[0]}: not found", reason="NotFound")
        if resp.status_code in (401, 403):
            raise DiscoveryError(
                f"GET {url.split('?')[0]}: HTTP {resp.status_code} (the credentials lack the read scope "
                "or admin consent)",
                reason="Forbidden",
            )
        if resp.status_code != 200:
            raise DiscoveryError(f"GET {url.split('?')[0]}: HTTP {resp.status_code}", transient=True)
        body = resp.json()
        if not isinstance(body, dict):
            raise DiscoveryError(f"GET {url.split('?')[0]}: the answer is not a JSON object")
        return body
    raise DiscoveryError(
        f"GET {url.split('?')[0]}: still throttled after {MAX_ATTEMPTS} tries", transient=True
    )


async def pages(
    http: httpx.AsyncClient,
    url: str,
    token: str,
    params: dict[str, str],
    items: str,
    next_page: Callable[[dict[str, Any]], tuple[str, dict[str, str]] | None],
) -> AsyncIterator[dict[str, Any]]:
    """Every item of a paged list: `items` names the list in each page; `next_page` gives the next
    request (URL, params) from a page, or None at the end."""
    request: tuple[str, dict[str, str]] | None = (url, params)
    origin = httpx.URL(url).copy_with(path="/", query=None, fragment=None)
    while request is not None:
        if httpx.URL(request[0]).copy_with(path="/", query=None, fragment=None) != origin:
            # a next-page link elsewhere would carry the bearer token to a host nobody allowed
            raise DiscoveryError(f"GET {url}: the next page lies on another host", reason="EgressNotAllowed")
        page = await get_json(http, request[0], token, request[1])
        for item in page.get(items) or []:
            if isinstance(item, dict):
                yield item
        request = next_page(page)
