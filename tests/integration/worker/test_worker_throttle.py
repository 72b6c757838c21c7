"""Server connection limits (Dovecot [LIMIT]): Throttled phase and exit 1; extra connections degrade."""

from __future__ import annotations

import secrets
from pathlib import Path

import mfw_harness as h

from fixtures.dovecot import DovecotFactory, DovecotPair
from fixtures.kubeapi import KubeAPI

LIMIT_ONE = "protocol imap {\n  mail_max_userip_connections = 1\n}\n"


def test_connection_limit_throttles_then_degrades_to_fewer_connections(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, dovecot_factory: DovecotFactory, tmp_path: Path
) -> None:
    src = dovecot_factory(name="limited", extra_config=LIMIT_ONE)
    dst = dovecot_pair.destination
    user = f"lim-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    for folder in ("INBOX", "A", "B", "C"):
        h.append(src, user, folder, [h.message(f"{folder} {i}") for i in range(15)])
    mb = h.user_mailboxsync(
        kube,
        namespace,
        "limited",
        user,
        h.endpoint(src, "s"),
        h.endpoint(dst, "d"),
        tmp_path / "secrets",
        connectionsPerMailbox=3,
    )
    env = h.worker_env(kube, namespace, ["limited"], tmp_path / "secrets", None, MAILFERRY_MAX_RETRIES="1")

    # Someone else holds the only allowed connection: the server refuses ours -> Throttled, retry later.
    holder = src.connect(user, "pw-src")
    try:
        cp = h.run_worker(env)
    finally:
        holder.logout()
    assert cp.returncode == 1, cp.stderr[-3000:]
    st = mb.status()
    assert st["phase"] == "Throttled", st
    assert st["lastError"]["reason"] == "Throttled"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Throttled"] == "True"

    # Free again: the sync runs on the one connection the server allows instead of failing.
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert any(e.get("event") == "extra_connection_refused" for e in h.events(cp.stderr)), cp.stderr[-3000:]
    st = mb.status()
    assert st["phase"] == "Synced" and st["totals"]["copied"] == 60, st
    assert "throttle" not in st and "lastError" not in st
    assert {c["type"]: c["status"] for c in st["conditions"]}["Throttled"] == "False"
    rc, out = h.verify(src, dst, user)
    assert rc == 0, out
