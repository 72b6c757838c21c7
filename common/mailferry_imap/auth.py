"""XOAUTH2 token sources: static token, Google service account (JWT bearer), Microsoft client credentials."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailferry_api import egress

from .errors import AuthenticationFailed, ConnectionFailed, Throttled

if TYPE_CHECKING:  # httpx is loaded on the first token request: password logins never need it
    import httpx

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"
MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# RFC 6749 section 5.2: the only `error` values a token endpoint's answer may put into a message; any
# other text of a remote body never reaches status, Events or logs.
OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


class EgressNotAllowed(AuthenticationFailed):
    reason = "EgressNotAllowed"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def google_jwt(service_account: dict[str, str], subject: str, scope: str, now: float | None = None) -> str:
    """An RS256-signed JWT assertion for Google's token endpoint (domain-wide delegation to ``subject``)."""
    issued = int(now if now is not None else time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    if service_account.get("private_key_id"):
        header["kid"] = service_account["private_key_id"]
    claims = {
        "iss": service_account["client_email"],
        "sub": subject,
        "scope": scope,
        "aud": service_account.get("token_uri") or GOOGLE_TOKEN_URL,
        "iat": issued,
        "exp": issued + 3600,
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    # Only Google service accounts need it, and loading OpenSSL's bindings costs every run ~30 ms.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(service_account["private_key"].encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthenticationFailed("service account private key is not an RSA key")
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


@dataclass
class TokenSource:
    """Gives access tokens for one user; caches them until shortly before they expire."""

    provider: str  # static | google | microsoft
    user: str
    static_token: str | None = None
    service_account_json: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    tenant_id: str | None = None
    scope: str | None = None
    token_url: str | None = None
    timeout: float = 30.0
    egress_allow: tuple[str, ...] = ()  # base URLs the installer allows besides the providers' own
    _token: str | None = None
    _expires: float = 0.0

    async def token(self, client: httpx.AsyncClient | None = None) -> str:
        if self.provider == "static":
            if not self.static_token:
                raise AuthenticationFailed("no static XOAUTH2 token in the secret")
            return self.static_token.strip()
        if self._token and time.time() < self._expires - 60:
            return self._token
        import httpx

        own = client is None
        http = client or httpx.AsyncClient(timeout=self.timeout)
        try:
            if self.provider == "google":
                url, form = self._google_request()
            elif self.provider == "microsoft":
                url, form = self._microsoft_request()
            else:
                raise AuthenticationFailed(f"unknown OAuth2 provider {self.provider!r}")
            refused = egress.url_problem(url, self.egress_allow, "the OAuth2 token URL")
            if refused is not None:  # the client secret or assertion would go to a host nobody allowed
                raise EgressNotAllowed(refused.message)
            try:
                resp = await http.post(url, data=form, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise ConnectionFailed(f"token endpoint unreachable: {type(exc).__name__}") from None
        finally:
            if own:
                await http.aclose()
        if resp.status_code == 429 or resp.status_code >= 500:
            raise Throttled(f"token endpoint answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or "access_token" not in body:
            err = body.get("error", "") if isinstance(body, dict) else ""
            err = err if err in OAUTH_ERRORS else ""
            raise AuthenticationFailed(f"token request refused: HTTP {resp.status_code} {err}".strip())
        self._token = str(body["access_token"])
        self._expires = time.time() + float(body.get("expires_in", 3600))
        return self._token

    def _google_request(self) -> tuple[str, dict[str, str]]:
        if not self.service_account_json:
            raise AuthenticationFailed("no service account JSON in the secret")
        try:
            sa = json.loads(self.service_account_json)
        except ValueError:
            raise AuthenticationFailed("service account JSON is not valid JSON") from None
        url = self.token_url or sa.get("token_uri") or GOOGLE_TOKEN_URL
        assertion = google_jwt({**sa, "token_uri": url}, self.user, self.scope or GOOGLE_SCOPE)
        return url, {"grant_type": JWT_BEARER, "assertion": assertion}

    def _microsoft_request(self) -> tuple[str, dict[str, str]]:
        if not (self.client_id and self.client_secret and (self.tenant_id or self.token_url)):
            raise AuthenticationFailed("microsoft OAuth2 needs clientId, tenantId and the client secret")
        url = self.token_url or MICROSOFT_TOKEN_URL.format(tenant=self.tenant_id)
        return url, {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": self.scope or MICROSOFT_SCOPE,
        }
