"""Token request shapes for XOAUTH2 (recorded HTTP contracts with respx: the providers cannot run here)."""

from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailferry_imap.auth import GOOGLE_TOKEN_URL, EgressNotAllowed, TokenSource
from mailferry_imap.errors import AuthenticationFailed, Throttled


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture(scope="module")
def service_account() -> tuple[str, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    sa = {
        "type": "service_account",
        "client_email": "mf@proj.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "kid1",
        "token_uri": GOOGLE_TOKEN_URL,
    }
    return json.dumps(sa), key


def test_google_service_account_jwt_bearer_request(service_account: tuple[str, rsa.RSAPrivateKey]) -> None:
    sa_json, key = service_account

    async def go() -> str:
        with respx.mock(assert_all_called=True) as mock:
            route = mock.post(GOOGLE_TOKEN_URL).respond(
                200, json={"access_token": "ya29.tok", "expires_in": 3599}
            )
            ts = TokenSource(provider="google", user="alice@example.com", service_account_json=sa_json)
            tok = await ts.token()
            assert await ts.token() == tok  # cached
            assert route.call_count == 1
            req = route.calls.last.request
            form = parse_qs(req.content.decode())
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            header_b64, claims_b64, sig_b64 = form["assertion"][0].split(".")
            header = json.loads(_b64d(header_b64))
            claims = json.loads(_b64d(claims_b64))
            assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid1"}
            assert claims["iss"] == "mf@proj.iam.gserviceaccount.com"
            assert claims["sub"] == "alice@example.com"
            assert claims["scope"] == "https://mail.google.com/"
            assert claims["aud"] == GOOGLE_TOKEN_URL
            assert claims["exp"] - claims["iat"] == 3600
            key.public_key().verify(
                _b64d(sig_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            return tok

    assert asyncio.run(go()) == "ya29.tok"


def test_microsoft_client_credentials_request() -> None:
    async def go() -> None:
        url = "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        with respx.mock(assert_all_called=True) as mock:
            route = mock.post(url).respond(200, json={"access_token": "eyJ.ms", "expires_in": 3600})
            ts = TokenSource(
                provider="microsoft",
                user="bob@contoso.com",
                client_id="app-1",
                client_secret="s3cret",
                tenant_id="tenant-1",
            )
            assert await ts.token() == "eyJ.ms"
            form = parse_qs(route.calls.last.request.content.decode())
            assert form == {
                "grant_type": ["client_credentials"],
                "client_id": ["app-1"],
                "client_secret": ["s3cret"],
                "scope": ["https://outlook.office365.com/.default"],
            }

    asyncio.run(go())


def test_token_errors_are_typed_and_secret_free() -> None:
    async def go() -> None:
        url = "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        ts = TokenSource(
            provider="microsoft", user="b@c", client_id="a", client_secret="very-secret", tenant_id="t"
        )
        with respx.mock() as mock:
            mock.post(url).respond(401, json={"error": "invalid_client"})
            with pytest.raises(AuthenticationFailed) as exc:
                await ts.token()
            assert "very-secret" not in str(exc.value) and "invalid_client" in str(exc.value)
        with respx.mock() as mock:
            mock.post(url).respond(429)
            with pytest.raises(Throttled):
                await ts.token()
        with respx.mock() as mock:
            mock.post(url).mock(side_effect=httpx.ConnectError("boom"))
            with pytest.raises(Exception) as exc2:
                await ts.token()
            assert exc2.value.__class__.__name__ == "ConnectionFailed"
        assert await TokenSource(provider="static", user="x", static_token="tok\n").token() == "tok"

    asyncio.run(go())


def test_token_url_outside_the_allowlist_gets_no_request_and_no_secret() -> None:
    """A spec's tokenUrl pointing at a listener of the tenant's: the client secret is never sent."""

    async def go() -> None:
        ts = TokenSource(
            provider="microsoft",
            user="b@c",
            client_id="a",
            client_secret="very-secret",
            token_url="http://127.0.0.1:9/steal",
        )
        with respx.mock(assert_all_called=False) as mock:
            route = mock.route().respond(200, json={"access_token": "x"})
            with pytest.raises(EgressNotAllowed) as exc:
                await ts.token()
            assert route.call_count == 0
        assert exc.value.reason == "EgressNotAllowed" and "very-secret" not in str(exc.value)
        ts.egress_allow = ("http://127.0.0.1:9",)  # the installer allowed it
        with respx.mock() as mock:
            mock.post("http://127.0.0.1:9/steal").respond(400, json={"error": "<script>page</script>"})
            with pytest.raises(AuthenticationFailed) as refused:
                await ts.token()
        assert "script" not in str(refused.value)  # only RFC 6749 error codes reach a message

    asyncio.run(go())
