"""Fidelity: a corpus with every awkward case survives a sync; the verifier proves it and can fail."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import mfw_harness as h

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI


def _corpus(src, user: str) -> int:  # type: ignore[no-untyped-def]
    day = 86400.0
    now = time.time()
    n = 0
    h.append(src, user, "INBOX", [h.message(f"inbox {i}", size=2000) for i in range(10)], date=now - 30 * day)
    h.append(
        src, user, "INBOX", [h.message(f"seen {i}") for i in range(5)], flags="\\Seen", date=now - 3 * day
    )
    n += 15
    h.append(
        src, user, "Sent", [h.message(f"sent {i}") for i in range(3)], flags="\\Seen", date=now - 2 * day
    )
    h.append(src, user, "Projects/2024/Q1", [h.message(f"q1 {i}") for i in range(4)], date=now - 400 * day)
    h.append(src, user, "Ünïcödé/日本語 & Co", [h.message(f"uni {i}") for i in range(3)], date=now - 5 * day)
    n += 10
    dup = h.message("duplicate twice")
    noid = h.message("no message-id", msgid=False)
    noid_twin = h.message("no message-id twin", msgid=False)
    empty_body = h.message("empty body", body="")
    edge = [dup, dup, noid, noid_twin, noid_twin, empty_body]
    h.append(src, user, "Edge", edge, date=now - 7 * day)
    h.append(
        src,
        user,
        "Edge",
        [h.message("all flags")],
        flags="\\Seen \\Answered \\Flagged \\Deleted \\Draft $Forwarded $MDNSent Custom_Kw",
        date=now - day,
    )
    h.append(src, user, "Edge", [h.message("keyword only")], flags="$Label1 Work", date=now - day)
    n += 8
    # 25 MB attachment
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "big@src.test"
    msg["To"] = "rcpt@src.test"
    msg["Subject"] = "25 MB attachment"
    msg["Message-ID"] = "<big-attachment@src.test>"
    msg.set_content("see attachment\r\n")
    msg.add_attachment(
        os.urandom(19 * 1024 * 1024), maintype="application", subtype="octet-stream", filename="big.bin"
    )
    big = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    assert len(big) > 25_000_000
    h.append(src, user, "Big", [big], flags="\\Seen", date=now - 10 * day)
    n += 1
    return n


def test_fidelity_corpus_verifies_with_zero_differences(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"fid-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = _corpus(src, user)
    ca = h.ca_bundle(tmp_path, src, dst)
    mb = h.user_mailboxsync(
        kube,
        namespace,
        "fidelity",
        user,
        h.endpoint(src, "src-creds", "starttls"),
        h.endpoint(dst, "dst-creds", "tls"),
        tmp_path / "secrets",
        connectionsPerMailbox=3,
    )
    env = h.worker_env(kube, namespace, ["fidelity"], tmp_path / "secrets", ca)
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    st = mb.status()
    assert st["phase"] == "Synced", st
    assert st["totals"]["copied"] == total
    # messages: what the source holds (the MailMigration's expectedMessages and progress sum these)
    assert st["totals"]["messages"] == total == sum(f["messages"] for f in st["folders"]), st["totals"]
    assert st["round"] == 1
    assert "pw-src" not in cp.stderr and "pw-dst" not in cp.stderr
    names = {f["name"]: f for f in st["folders"]}
    assert {"INBOX", "Sent", "Projects/2024/Q1", "Ünïcödé/日本語 & Co", "Edge", "Big"} <= set(names)
    assert names["Ünïcödé/日本語 & Co"]["destination"] == "Ünïcödé/日本語 & Co"

    rc, out = h.verify(src, dst, user)
    print(out)
    assert rc == 0, out
    assert "differences=0" in out

    # Delta: a flag change and a new message propagate; an unchanged folder costs one STATUS.
    with src.connect_as(user) as c:
        c.select('"Sent"')
        c.uid("STORE", "1", "+FLAGS", "(\\Flagged $Important)")
    h.append(src, user, "INBOX", [h.message("late arrival")])
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    synced = [e for e in h.events(cp.stderr) if e.get("event") == "folder_synced"]
    assert {e["folder"] for e in synced} == {"INBOX", "Sent"}, synced
    rc, out = h.verify(src, dst, user)
    assert rc == 0, out

    # Nothing changed: one source connection and STATUS prove it, the destination is not contacted.
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert any(e.get("event") == "sync_started" and e.get("noop") for e in h.events(cp.stderr)), cp.stderr
    assert mb.status()["phase"] == "Synced"

    # The verifier can fail: remove one destination message and change a flag.
    with dst.connect_as(user) as c:
        c.select('"Edge"')
        c.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        c.uid("EXPUNGE", "1")  # only this one: the corpus has a message flagged \Deleted on purpose
        c.select('"INBOX"')
        c.uid("STORE", "2", "+FLAGS", "(\\Answered)")
    rc, out = h.verify(src, dst, user)
    assert rc == 1, out
    assert "missing=1" in out and "flags=1" in out

    # The verifier also reads endpoints and Secrets from the MailboxSync through the API.
    cp2 = subprocess.run(
        [h.VERIFY, "verify", "--mailboxsync", "fidelity", "--namespace", namespace, "--ca-file", str(ca)],
        env=dict(os.environ, KUBECONFIG=str(kube.kubeconfig)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp2.returncode == 1, cp2.stdout + cp2.stderr
    assert "missing=1" in cp2.stdout
