"""Credentials of a MailboxSync side: from the mounted Secret volumes, or from the API, and how to log in."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from mailferry_api.imap import ImapEndpoint, default_secret_key
from mailferry_api.mailboxsync import MailboxSide
from mailferry_kube.client import KubeApi, KubeError

from .auth import TokenSource
from .client import ImapClient
from .errors import AuthenticationFailed

if TYPE_CHECKING:
    import httpx

Side = Literal["source", "destination"]


_SSL_CONTEXTS: dict[tuple[str | None, bool], ssl.SSLContext] = {}


class MissingSecret(AuthenticationFailed):
    reason = "SecretMissing"


class SecretSource(Protocol):
    async def get(self, side: Side, secret_name: str, key: str) -> str | None: ...


class DirSecrets:
    """$MAILFERRY_SECRETS_DIR/<side>/<key>: one Secret volume per side, one file per key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def get(self, side: Side, secret_name: str, key: str) -> str | None:
        p = self.directory / side / key
        try:
            return p.read_text().rstrip("\r\n")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None


class ApiSecrets:
    """Secrets read through the Kubernetes API (for `mailferry verify --mailboxsync`)."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._cache: dict[str, dict[str, bytes]] = {}

    async def get(self, side: Side, secret_name: str, key: str) -> str | None:
        if secret_name not in self._cache:
            try:
                self._cache[secret_name] = await self.api.get_secret(self.namespace, secret_name)
            except KubeError as exc:
                if exc.status == 404:
                    self._cache[secret_name] = {}
                else:
                    raise
        value = self._cache[secret_name].get(key)
        return value.decode().rstrip("\r\n") if value is not None else None


class StaticSecrets:
    """Values given directly (CLI flags / env): {side: {key: value}}."""

    def __init__(self, values: dict[str, dict[str, str]]) -> None:
        self.values = values

    async def get(self, side: Side, secret_name: str, key: str) -> str | None:
        return self.values.get(side, {}).get(key)


@dataclass
class Connector:
    """Opens logged-in connections to one side of a mailbox."""

    side: Side
    endpoint: ImapEndpoint
    username: str
    secrets: SecretSource
    secret_key: str | None = None
    fallback_key: str | None = None
    ca_file: str | None = None
    _token_source: TokenSource | None = None
    http: httpx.AsyncClient | None = None  # shared client for token requests (default: one per request)
    guard: Callable[[], None] | None = None  # set on every connection opened (ImapClient.write_guard)
    egress_allow: tuple[str, ...] = ()  # token URLs the installer allows (mailferry_api.egress)

    def ssl_context(self) -> ssl.SSLContext | None:
        """None for plain connections; otherwise one cached context per (CA file, verify) per process."""
        if self.endpoint.security == "none":
            return None
        key = (self.ca_file, self.endpoint.tls_verify)
        ctx = _SSL_CONTEXTS.get(key)
        if ctx is None:
            ctx = (
                ssl.create_default_context(cafile=self.ca_file)
                if self.ca_file
                else ssl.create_default_context()
            )
            if not self.endpoint.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            _SSL_CONTEXTS[key] = ctx
        return ctx

    async def _secret(self, key: str, *fallbacks: str | None) -> str:
        name = self.endpoint.auth.secret_ref.name
        for k in (key, *fallbacks):
            if not k:
                continue
            value = await self.secrets.get(self.side, name, k)
            if value is not None:
                return value
        raise MissingSecret(f"{self.side} secret {name!r} has no key {key!r}")

    async def open(self) -> ImapClient:
        ep = self.endpoint
        client = await ImapClient.connect(
            ep.host,
            ep.port,
            security=ep.security,
            ssl_context=self.ssl_context(),
            connect_timeout=ep.connect_timeout_seconds,
            read_timeout=ep.read_timeout_seconds,
        )
        try:
            await self._login(client)
        except BaseException:
            await client.close()
            raise
        client.write_guard = self.guard
        return client

    async def _login(self, client: ImapClient) -> None:
        auth = self.endpoint.auth
        if auth.method == "password":
            key = self.secret_key or default_secret_key(self.username)
            password = await self._secret(key, self.fallback_key)
            await _password_login(client, self.username, password)
        elif auth.method == "master-user":
            master = await self._secret(auth.master_user_key)
            password = await self._secret(auth.master_password_key)
            await _password_login(client, f"{self.username}{auth.master_separator}{master}", password)
        else:
            token = await (await self.token_source()).token(self.http)
            await client.authenticate_xoauth2(self.username, token)

    async def token_source(self) -> TokenSource:
        if self._token_source is not None:
            return self._token_source
        o = self.endpoint.auth.oauth2
        if o is None:
            raise AuthenticationFailed("auth.oauth2 is required for xoauth2")
        ts = TokenSource(
            provider=o.provider,
            user=self.username,
            scope=o.scope,
            token_url=o.token_url,
            egress_allow=self.egress_allow,
        )
        if o.provider == "static":
            ts.static_token = await self._secret(o.token_key)
        elif o.provider == "google":
            ts.service_account_json = await self._secret(o.service_account_key)
        else:
            ts.client_id, ts.tenant_id = o.client_id, o.tenant_id
            ts.client_secret = await self._secret(o.client_secret_key)
        self._token_source = ts
        return ts


async def _password_login(client: ImapClient, user: str, password: str) -> None:
    if client.has("LOGINDISABLED") or not user.isascii() or not password.isascii():
        await client.authenticate_plain(user, password)
    else:
        await client.login(user, password)


def connectors(
    spec_source: MailboxSide,
    spec_dest: MailboxSide,
    secrets: SecretSource,
    secret_key: str | None,
    egress_allow: tuple[str, ...] = (),
) -> tuple[Connector, Connector]:
    fallback = default_secret_key(spec_source.username)
    return (
        Connector(
            "source",
            spec_source.endpoint,
            spec_source.username,
            secrets,
            secret_key,
            fallback,
            egress_allow=egress_allow,
        ),
        Connector(
            "destination",
            spec_dest.endpoint,
            spec_dest.username,
            secrets,
            secret_key,
            fallback,
            egress_allow=egress_allow,
        ),
    )
