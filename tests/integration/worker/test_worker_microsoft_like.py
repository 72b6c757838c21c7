"""A Microsoft-365-like destination (real Dovecot behind a proxy announcing no custom keywords and
answering Microsoft's throttling text): every message arrives, the keywords it refuses are reported per
folder in status (not failures, not dropped silently), the throttling is backed off, verify is clean."""

from __future__ import annotations

import secrets
from pathlib import Path

import mfw_harness as h

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI
from fixtures.microsoft_like import KeywordlessProxy


def _flags(client: object, folder: str) -> list[str]:
    import imaplib

    assert isinstance(client, imaplib.IMAP4)
    client.select(h.quote_folder(folder), readonly=True)
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    return [d.decode() for d in data if isinstance(d, bytes)]


def test_refused_keywords_reported_and_throttling_backed_off(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"ms-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    h.append(
        src, user, "INBOX", [h.message(f"tagged {i}") for i in range(3)], flags="\\Flagged ProjectX Later"
    )
    h.append(src, user, "INBOX", [h.message(f"plain {i}") for i in range(2)])
    h.append(src, user, "Work", [h.message(f"work {i}") for i in range(2)], flags="\\Seen")
    proxy = KeywordlessProxy("127.0.0.1", dst.port).start()
    try:
        destination = {**h.endpoint(dst, "d", port=proxy.port), "provider": "microsoft365"}
        mb = h.user_mailboxsync(
            kube, namespace, "mslike", user, h.endpoint(src, "s"), destination, tmp_path / "s"
        )
        env = h.worker_env(kube, namespace, ["mslike"], tmp_path / "s", None)
        proxy.inject_throttle(2)
        logs = ""
        for _ in range(3):  # a throttled LIST before any folder ends the run (Throttled, exit 1): rerun
            cp = h.run_worker(env)
            logs += cp.stderr
            if cp.returncode == 0:
                break
        assert cp.returncode == 0, logs[-3000:]
        assert proxy.stats.throttles == 2
        assert any("Throttled" in str(e.get("reason", "")) for e in h.events(logs)), logs[-3000:]

        st = mb.status()
        assert st["phase"] == "Synced" and st["totals"]["copied"] == 7, st
        assert st["totals"].get("failed", 0) == 0, st
        refused = {f["name"]: f.get("refusedKeywords", []) for f in st["folders"]}
        assert refused == {"INBOX": ["Later", "ProjectX"], "Work": []}, refused

        with dst.connect_as(user) as c:
            inbox = _flags(c, "INBOX")
        assert sum("\\Flagged" in line for line in inbox) == 3, inbox
        assert not any("ProjectX" in line or "Later" in line for line in inbox), inbox
        with src.connect_as(user) as c:
            assert sum("ProjectX" in line for line in _flags(c, "INBOX")) == 3  # the source keeps them

        rc, out = h.verify_mailboxsync(kube, namespace, "mslike")
        assert rc == 0, out
    finally:
        proxy.stop()
