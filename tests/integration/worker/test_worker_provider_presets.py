"""Provider presets acting on a real run: a source named gmail loses its views, Spam and Trash; a destination
named microsoft365 gets its size limit (overridden smaller here) enforced before upload; `mailferry verify`
follows the same presets and finds no difference."""

from __future__ import annotations

import secrets
from pathlib import Path

import mfw_harness as h

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

GMAIL_FOLDERS = {
    "INBOX": 4,
    "[Gmail]/Sent Mail": 2,
    "[Gmail]/Starred": 1,
    "[Gmail]/Spam": 2,
    "[Gmail]/Trash": 1,
}


def test_gmail_source_and_microsoft365_destination_presets(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"prov-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    for folder, n in GMAIL_FOLDERS.items():
        h.append(src, user, folder, [h.message(f"{folder} {i}") for i in range(n)])
    h.append(src, user, "INBOX", [h.message("too big for this tenant", size=60_000)])
    source = {**h.endpoint(src, "s"), "provider": "gmail"}
    destination = {**h.endpoint(dst, "d"), "provider": "microsoft365", "limits": {"maxMessageBytes": 20_000}}
    mb = h.user_mailboxsync(kube, namespace, "presets", user, source, destination, tmp_path / "secrets")

    cp = h.run_worker(h.worker_env(kube, namespace, ["presets"], tmp_path / "secrets", None))
    assert cp.returncode == 0, cp.stderr[-3000:]
    st = mb.status()
    assert st["phase"] == "Synced", st
    assert st["totals"]["copied"] == 6, st  # INBOX 4 + Sent 2; the 60 kB message is skipped
    assert st["skipReasons"] == {"MessageTooLarge": 1}, st
    copied = {f["name"] for f in st["folders"]}
    assert copied == {"INBOX", "[Gmail]/Sent Mail"}, copied
    assert h.imap_count(dst, user, "INBOX") == 4
    for skipped in ("[Gmail]/Starred", "[Gmail]/Spam", "[Gmail]/Trash"):
        assert h.imap_count(dst, user, skipped) == 0

    rc, out = h.verify_mailboxsync(kube, namespace, "presets")
    assert rc == 0, out
