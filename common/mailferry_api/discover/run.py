"""One discovery run, whichever the provider: the API base, the OAuth scope, the call."""

from __future__ import annotations

from typing import Literal

import httpx

from . import google, graph
from .directory import Directory

DiscoverProvider = Literal["google", "microsoft365"]
API_URLS: dict[str, str] = {"google": google.DIRECTORY_API, "microsoft365": graph.GRAPH_API}
SCOPES: dict[str, str] = {"google": google.SCOPES, "microsoft365": graph.SCOPE}
TOKEN_PROVIDERS: dict[str, str] = {"google": "google", "microsoft365": "microsoft"}  # mailferry_imap.auth


async def discover(
    http: httpx.AsyncClient,
    provider: str,
    token: str,
    customer: str = "my_customer",
    domain: str | None = None,
    api_url: str | None = None,
) -> Directory:
    """Everything the tenant holds; `api_url` overrides the provider's public API base (the caller has
    checked it against the egress allowlist)."""
    base = (api_url or API_URLS[provider]).rstrip("/")
    if provider == "google":
        return await google.discover(http, token, customer, domain, base)
    return await graph.discover(http, token, base)
