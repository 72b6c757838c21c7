"""Validation (`mailferry_operator.mailmigration.probe`) on real Dovecot: the worker's IMAP client and
credential code, on the event loop, with the reasons the operator reports and the source scan figures."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fixtures._proc import free_port  # nothing listens there: refused
from fixtures.dovecot import Dovecot, DovecotPair
from mailferry_api.imap import ImapEndpoint
from mailferry_operator import settings
from mailferry_operator.mailmigration.probe import ProbeResult, ProbeTask, probe_all


def endpoint(server: Dovecot, security: str = "none", **auth: Any) -> ImapEndpoint:
    port = server.tls_port if security == "tls" else server.port
    return ImapEndpoint.model_validate(
        {
            "host": server.host,
            "port": port,
            "security": security,
            "tlsVerify": auth.pop("tls_verify", True),
            "connectTimeoutSeconds": 10,
            "readTimeoutSeconds": 10,
            "auth": {"secretRef": {"name": "creds"}, **auth},
        }
    )


def run(tasks: list[ProbeTask], secrets: dict[str, dict[str, str]], **kw: Any) -> list[ProbeResult]:
    results = asyncio.run(probe_all(tasks, secrets, **kw))
    by_task = {id(t): r for t, r in results}
    return [by_task[id(t)] for t in tasks]


def test_scan_counts_folders_messages_and_bytes_over_none_starttls_and_tls(
    dovecot_pair: DovecotPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = dovecot_pair.source
    user = "val-scan@example.test"
    src.add_user(user, "pw-scan")
    src.seed(user, "INBOX", count=3, size=2000)
    src.seed(user, "Work/Projects", count=2, size=1000)
    status = src.mailbox_status(user, "messages vsize")
    want_messages = sum(s["messages"] for s in status.values())
    want_folders = len(status)  # INBOX, Work, Work/Projects (Dovecot lists the parent as selectable)
    secrets = {"source": {"val-scan_example.test": "pw-scan"}}
    monkeypatch.setattr(settings, "_current", replace(settings.current(), ca_file=str(src.ca_cert)))
    tasks = [
        ProbeTask(user, "source", endpoint(src, security), user, "val-scan_example.test", True)
        for security in ("none", "starttls", "tls")
    ]
    results = run(tasks, secrets)
    for task, r in zip(tasks, results, strict=True):
        assert r.ok, (task.endpoint.security, r)
        assert (r.folders, r.messages) == (want_folders, want_messages), (task.endpoint.security, r)
        assert r.bytes == sum(s["vsize"] for s in status.values()), r  # Dovecot 2.3 has STATUS=SIZE
    # a probe without scan logs in and reports no figures
    (plain,) = run([ProbeTask(user, "source", endpoint(src), user, "val-scan_example.test", False)], secrets)
    assert plain == ProbeResult(True)


def test_failures_have_the_operator_reasons_and_no_secret(dovecot_pair: DovecotPair) -> None:
    src, dst = dovecot_pair
    user = "val-fail@example.test"
    src.add_user(user, "right-src-pw")
    dst.add_user(user, "right-dst-pw")
    key = "val-fail_example.test"
    secrets = {
        "source": {
            key: "right-src-pw",
            "master-username": src.master_user,
            "master-password": "WRONG-master",
        },
        "destination": {key: "CANARY-wrong-dst-pw"},
    }
    dead = ImapEndpoint.model_validate(
        {"host": "127.0.0.1", "port": free_port(), "security": "none", "auth": {"secretRef": {"name": "c"}}}
    )
    master = endpoint(src, method="master-user")
    cases: list[tuple[ProbeTask, str]] = [
        (ProbeTask(user, "source", endpoint(src), user, key, True), ""),
        (ProbeTask(user, "destination", endpoint(dst), user, key, False), "AuthenticationFailed"),
        (ProbeTask(user, "source", endpoint(src), user, "no-such-key", False), "SecretNotFound"),
        (ProbeTask(user, "source", dead, user, key, False), "ConnectionFailed"),
        # implicit TLS, verified against the system CAs: the test CA is unknown there
        (ProbeTask(user, "source", endpoint(src, "tls"), user, key, False), "TLSError"),
        (ProbeTask(user, "source", master, user, None, False), "AuthenticationFailed"),
    ]
    results = run([t for t, _ in cases], secrets, concurrency=3)
    for (task, reason), r in zip(cases, results, strict=True):
        assert r.reason == reason and r.ok == (reason == ""), (task, r)
        assert "CANARY" not in r.message and "WRONG-master" not in r.message, r
    assert src.master_user not in results[-1].message, results[-1]
    assert "no-such-key" in results[2].message


def test_master_user_login(dovecot_pair: DovecotPair) -> None:
    src = dovecot_pair.source
    user = "val-master@example.test"
    src.add_user(user, "unused-pw")
    secrets = {"source": {"master-username": src.master_user, "master-password": src.master_password}}
    (r,) = run([ProbeTask(user, "source", endpoint(src, method="master-user"), user, None, True)], secrets)
    assert r.ok and r.folders >= 1, r


def test_many_mailboxes_run_on_the_event_loop_with_bounded_concurrency(dovecot_pair: DovecotPair) -> None:
    src, dst = dovecot_pair
    users = {f"val-many{i}@example.test": f"pw-{i}" for i in range(40)}
    src.add_users(users)
    dst.add_users(users)
    creds = {u.replace("@", "_"): p for u, p in users.items()}
    tasks = [
        ProbeTask(u, side, endpoint(server), u, u.replace("@", "_"), side == "source")
        for u in users
        for side, server in (("source", src), ("destination", dst))
    ]
    seen: list[str] = []
    threads: set[str] = set()

    def on_result(task: ProbeTask, result: ProbeResult) -> None:
        seen.append(task.mailbox)
        threads.update(t.name for t in threading.enumerate())

    results = run(tasks, {"source": creds, "destination": creds}, concurrency=8, on_result=on_result)
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert len(seen) == len(tasks)
    assert not [t for t in threads if t.startswith("mf-probe")], threads  # no probe threads any more


# ------------------------------------------------------------------------------------------ XOAUTH2
class OAuthProvider:
    """The token endpoints of Google (JWT bearer, RS256 checked with the service account's public key)
    and Microsoft (client credentials) on loopback HTTP, plus the introspection endpoint Dovecot's oauth2
    passdb asks whether a bearer token is live. The providers cannot run here: this is their request
    shape, as the worker's respx contract tests record it, served for real so the whole path runs."""

    CLIENT_ID, CLIENT_SECRET, TENANT = "app-1", "CANARY-client-secret", "tenant-1"
    STATIC = "static-token-CANARY"

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issued: set[str] = {self.STATIC}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                provider.requests.append((self.path, form))
                status, body = provider.answer(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="oauth-fake").start()

    def service_account(self) -> str:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return json.dumps({"client_email": "mf@proj.iam.gserviceaccount.com", "private_key": pem})

    def _issue(self, prefix: str) -> tuple[int, dict[str, Any]]:
        token = f"{prefix}-{secrets.token_hex(8)}"
        self.issued.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def answer(self, path: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        one = {k: v[0] for k, v in form.items()}
        if path == "/introspect":
            return 200, {"active": one.get("token") in self.issued, "username": "any"}
        if path == f"/{self.TENANT}/oauth2/v2.0/token":
            if one.get("grant_type") != "client_credentials" or one.get("client_id") != self.CLIENT_ID:
                return 400, {"error": "unsupported_grant_type"}
            if one.get("client_secret") != self.CLIENT_SECRET:
                return 401, {"error": "invalid_client"}
            return self._issue("ms")
        if path == "/google/token":
            header, claims, signature = one.get("assertion", "..").split(".")
            try:
                self.key.public_key().verify(
                    _b64d(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
                )
            except InvalidSignature:
                return 400, {"error": "invalid_grant"}
            sub = json.loads(_b64d(claims))["sub"]
            return self._issue(f"g.{sub}")
        return 404, {"error": "not_found"}

    def dovecot_config(self, directory: Path) -> str:
        conf = directory / "dovecot-oauth2.conf.ext"
        # A client-credentials token is the application's, not one user's: the fake introspection
        # cannot name the user, so the username check compares two constants.
        conf.write_text(
            f"introspection_mode = post\nintrospection_url = {self.url}/introspect\n"
            "username_attribute = username\nusername_format = any\n"
            "active_attribute = active\nactive_value = true\n"
        )
        return (
            "auth_mechanisms = plain login xoauth2\n"
            f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n  args = {conf}\n}}\n"
        )

    def token_requests(self, kind: str) -> list[dict[str, list[str]]]:
        return [form for path, form in self.requests if path != "/introspect" and kind in path]


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture
def oauth(
    dovecot_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[OAuthProvider, Dovecot]]:
    provider = OAuthProvider()
    # the installer allowed the test token endpoint (and whatever else listens on loopback ports)
    monkeypatch.setattr(
        settings, "_current", replace(settings.current(), egress_allow=("http://127.0.0.1:*",))
    )
    server = dovecot_factory(extra_config=provider.dovecot_config(tmp_path))
    try:
        yield provider, server
    finally:
        provider.server.shutdown()


def xoauth2(server: Dovecot, provider: str, token_url: str | None = None, **extra: Any) -> ImapEndpoint:
    oauth2: dict[str, Any] = {"provider": provider, **extra}
    if token_url:
        oauth2["tokenUrl"] = token_url
    return endpoint(server, method="xoauth2", oauth2=oauth2)


def test_xoauth2_static_google_and_microsoft_tokens_log_in(oauth: tuple[OAuthProvider, Dovecot]) -> None:
    provider, server = oauth
    users = [f"val-oauth{i}@example.test" for i in range(5)]
    server.add_users({u: secrets.token_hex(8) for u in users})
    ms = xoauth2(
        server,
        "microsoft",
        f"{provider.url}/{provider.TENANT}/oauth2/v2.0/token",
        clientId=provider.CLIENT_ID,
        tenantId=provider.TENANT,
    )
    google = xoauth2(server, "google", f"{provider.url}/google/token")
    static = xoauth2(server, "static")
    sides = {
        "source": {"client-secret": provider.CLIENT_SECRET, "token": provider.STATIC},
        "destination": {"service-account.json": provider.service_account()},
    }
    cases = [(ms, "source"), (google, "destination"), (static, "source")]
    for ep, side in cases:
        before = len(provider.requests)
        tasks = [ProbeTask(u, side, ep, u, None, side == "source") for u in users]  # type: ignore[arg-type]
        results = run(tasks, sides, concurrency=5)
        assert all(r.ok for r in results), (ep.auth.oauth2, results)
        made = [form for path, form in provider.requests[before:] if path != "/introspect"]
        if ep is ms:  # one token for the application, shared by every mailbox of the side
            assert len(made) == 1 and made[0]["client_id"] == [provider.CLIENT_ID], made
        elif ep is google:  # one token per mailbox: the JWT's subject is the mailbox
            subjects = sorted(json.loads(_b64d(f["assertion"][0].split(".")[1]))["sub"] for f in made)
            assert subjects == sorted(users)
        else:
            assert made == []


def test_xoauth2_refusals_are_reported_once_per_side_without_secrets(
    oauth: tuple[OAuthProvider, Dovecot],
) -> None:
    provider, server = oauth
    users = [f"val-oauthbad{i}@example.test" for i in range(4)]
    server.add_users({u: secrets.token_hex(8) for u in users})
    ms_url = f"{provider.url}/{provider.TENANT}/oauth2/v2.0/token"
    ms = xoauth2(server, "microsoft", ms_url, clientId=provider.CLIENT_ID, tenantId=provider.TENANT)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = json.loads(provider.service_account()) | {
        "private_key": other_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    }
    dead_url = f"http://127.0.0.1:{free_port()}/token"
    cases = [
        # wrong client secret: refused by the token endpoint, asked once for the whole side
        (ms, {"client-secret": "CANARY-wrong-secret"}, "AuthenticationFailed", 1),
        # a service account key the provider does not know
        (
            xoauth2(server, "google", f"{provider.url}/google/token"),
            {"service-account.json": json.dumps(forged)},
            "AuthenticationFailed",
            len(users),
        ),
        # a static token the IMAP server refuses
        (xoauth2(server, "static"), {"token": "CANARY-revoked-token"}, "AuthenticationFailed", 0),
        # the token endpoint is down
        (
            xoauth2(server, "microsoft", dead_url, clientId="a", tenantId="t"),
            {"client-secret": "x"},
            "ConnectionFailed",
            0,
        ),
        (xoauth2(server, "google", f"{provider.url}/google/token"), {}, "SecretNotFound", 0),
        # a token URL the installer did not allow: the client secret never leaves (issue 14)
        (
            xoauth2(server, "microsoft", f"http://127.0.0.2:{free_port()}/token", clientId="a", tenantId="t"),
            {"client-secret": "CANARY-client-secret"},
            "EgressNotAllowed",
            0,
        ),
    ]
    for ep, data, reason, token_requests in cases:
        before = len(provider.token_requests("token"))
        tasks = [ProbeTask(u, "source", ep, u, None, False) for u in users]
        results = run(tasks, {"source": data}, concurrency=4)
        assert [r.reason for r in results] == [reason] * len(users), (ep.auth.oauth2, results)
        assert len(provider.token_requests("token")) - before == token_requests, ep.auth.oauth2
        for r in results:
            assert "CANARY" not in r.message and "BEGIN PRIVATE KEY" not in r.message, r
    assert (
        "invalid_client"
        in run(
            [ProbeTask(users[0], "source", ms, users[0], None, False)],
            {"source": {"client-secret": "CANARY-wrong-secret"}},
        )[0].message
    )
