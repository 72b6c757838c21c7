"""Egress by policy: which HTTP(S) endpoints a spec may send credentials or queries to.

A person who may create a MailMigration or a DnsCutover must not be able to make the operator (or a
worker) send a client secret, a DNS API key or a PromQL query to a host of their choosing. So every
URL that comes from a spec (OAuth2 `tokenUrl`, DNS provider API URLs, Prometheus gate addresses) must
lie under a base URL the *installer* allowed (chart value `egress.allowedUrls` → `MAILFERRY_EGRESS_ALLOW`),
or under one of the providers' own public endpoints below. The check is pure: the programs pass the
allowlist from their settings.

A base URL is `scheme://host[:port][/path]`; a URL is under it when scheme, host and port are equal and
its path is the base path or below it (segment-wise). A base host `*.example.com` covers every name
below example.com; a base port `*` (`http://127.0.0.1:*`) covers every port of that host. URLs with
user info, a query or a fragment are never allowed: a spec names a base, and the code appends the fixed
API path (`/api/v1/query`, `/api/v1/servers/...`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .problems import Problem

# The providers' own endpoints: the defaults of the spec fields, always allowed.
BUILTIN_ALLOWED: tuple[str, ...] = (
    "https://oauth2.googleapis.com",  # Google service-account token endpoint
    "https://login.microsoftonline.com",  # Microsoft identity platform (tenant in the path)
    "https://admin.googleapis.com/admin/directory/v1",  # Google Directory API (inventory discovery)
    "https://graph.microsoft.com/v1.0",  # Microsoft Graph (inventory discovery)
    "https://api.cloudflare.com/client/v4",
    "https://route53.amazonaws.com",
)
SETTING_HINT = "chart value egress.allowedUrls, operator setting MAILFERRY_EGRESS_ALLOW"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class BaseUrl:
    scheme: str
    host: str
    port: int | None  # None: any port (allowlist entries only)
    path: str  # without a trailing slash; "" for the root

    @property
    def origin(self) -> str:
        default = _DEFAULT_PORTS[self.scheme] == self.port
        port = "*" if self.port is None else str(self.port)
        return f"{self.scheme}://{self.host}" + ("" if default else f":{port}")

    def covers(self, other: BaseUrl) -> bool:
        if self.scheme != other.scheme or self.port not in (None, other.port):
            return False
        if self.host.startswith("*."):
            if not other.host.endswith(self.host[1:]):
                return False
        elif self.host != other.host:
            return False
        return other.path == self.path or other.path.startswith(self.path + "/")


def parse(url: str, any_port: bool = False) -> BaseUrl | None:
    """The URL as a base, or None when it is not a plain http(s) URL (user info, query, fragment).
    `any_port`: an allowlist entry, where the port may be `*`."""
    text = url.strip()
    wildcard = False
    if any_port:
        head, sep, tail = text.partition("://")
        netloc, slash, rest = tail.partition("/")
        if sep and netloc.endswith(":*"):
            text, wildcard = f"{head}://{netloc[:-2]}{slash}{rest}", True
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return None
    path = parts.path.rstrip("/")
    if "/../" in f"{path}/" or "/./" in f"{path}/" or "%" in path:
        return None  # no dot segments or escapes that could walk out of an allowed path
    host = parts.hostname.lower().rstrip(".")
    return BaseUrl(scheme, host, None if wildcard else (port or _DEFAULT_PORTS[scheme]), path)


def allowed(url: str, allowlist: Iterable[str]) -> bool:
    target = parse(url)
    if target is None:
        return False
    for entry in (*BUILTIN_ALLOWED, *allowlist):
        base = parse(entry, any_port=True)
        if base is not None and base.covers(target):
            return True
    return False


def url_problem(url: str, allowlist: Iterable[str], field: str) -> Problem | None:
    """None when `url` (the value of spec field `field`) is allowed; else EgressNotAllowed, naming only
    the URL's origin (never user info or query, which may hold a credential)."""
    target = parse(url)
    if target is None:
        return Problem(
            "EgressNotAllowed",
            f"{field} must be a plain http(s) base URL without user info, query, fragment, "
            "'.'/'..' segments or %-escapes",
        )
    if allowed(url, allowlist):
        return None
    return Problem(
        "EgressNotAllowed",
        f"{field} ({target.origin}{target.path}) is not under a URL this installation allows "
        f"({SETTING_HINT}); ask the cluster administrator to allow it",
    )
