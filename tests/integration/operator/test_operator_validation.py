"""Validation (`mailferry_operator.migration.probe`) on real Dovecot: the worker's IMAP client and
credential code, on the event loop, with the reasons the operator reports and the source scan figures."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from fixtures.dovecot import Dovecot, DovecotPair
from mailferry_api.imap import ImapEndpoint
from mailferry_operator.migration.probe import ProbeResult, ProbeTask, probe_all


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


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


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
    monkeypatch.setenv("MAILFERRY_CA_FILE", str(src.ca_cert))
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
        {"host": "127.0.0.1", "port": closed_port(), "security": "none", "auth": {"secretRef": {"name": "c"}}}
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
