"""Pipelined MULTIAPPEND: a chunk the destination rejects while the next one is in flight.

Two zero-byte messages (Dovecot refuses empty APPENDs) sit in the middle of three MULTIAPPEND chunks:
every other message lands once, the two are reported as AppendRejected, and a rerun adds nothing.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from pathlib import Path

import mfw_harness as h

from fixtures.dovecot import Dovecot, DovecotPair
from fixtures.kubeapi import KubeAPI
from mailferry_worker.sync.bulkcopy import CHUNK_MESSAGES

MSGID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


def _message_ids(d: Dovecot, user: str) -> Counter[bytes]:
    """Message-IDs of every message in the user's INBOX (with multiplicity)."""
    ids: Counter[bytes] = Counter()
    with d.connect_as(user) as c:
        typ, _ = c.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            return ids
        for part in data:
            if isinstance(part, tuple):
                m = MSGID.search(part[1])
                ids[m.group(1) if m else b"(none)"] += 1
    return ids


def test_rejected_middle_chunk_is_isolated_and_rerun_adds_nothing(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"rej-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")

    # 250 messages = 3 chunks of CHUNK_MESSAGES (100); the empty ones are source UIDs 121 and 151 (chunk 2).
    assert CHUNK_MESSAGES == 100
    good = [h.message(f"ok {i}", size=2000) for i in range(248)]
    h.append(src, user, "INBOX", good[:120])
    src.save(user, "INBOX", b"")  # doveadm save: the source stores what its own APPEND might refuse
    h.append(src, user, "INBOX", good[120:149])
    src.save(user, "INBOX", b"")
    h.append(src, user, "INBOX", good[149:])
    assert h.imap_count(src, user) == 250
    want = Counter(m.group(1) for m in (MSGID.search(raw) for raw in good) if m)
    assert len(want) == 248 and set(want.values()) == {1}

    mb = h.user_mailboxsync(
        kube,
        namespace,
        "rejected",
        user,
        h.endpoint(src, "s"),
        h.endpoint(dst, "d"),
        tmp_path / "secrets",
    )
    env = h.worker_env(kube, namespace, ["rejected"], tmp_path / "secrets", None, MAILFERRY_MAX_RETRIES="1")

    cp = h.run_worker(env, timeout=60)
    assert cp.returncode == 0, cp.stderr[-3000:]
    ev = h.events(cp.stderr)
    # The middle chunk really went as one MULTIAPPEND that the destination refused as a whole.
    assert any(e.get("event") == "multiappend_rejected" for e in ev), cp.stderr[-3000:]
    assert sum(e.get("event") == "append_rejected" for e in ev) == 2, cp.stderr[-3000:]

    got = _message_ids(dst, user)
    assert got == want, (
        sorted(set(want) - set(got))[:5],
        {k: v for k, v in got.items() if v != 1 or k not in want},
    )
    st = mb.status()
    assert st.get("phase") not in (None, "Failed"), st
    assert st["skipReasons"] == {"AppendRejected": 2}, st
    assert st["totals"]["copied"] == 248, st
    totals1 = dict(st["totals"])

    # Rerun: nothing new on the destination, nothing counted twice.
    cp = h.run_worker(env, timeout=60)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert _message_ids(dst, user) == want
    assert h.imap_count(dst, user) == 248
    st = mb.status()
    assert st.get("phase") not in (None, "Failed"), st
    assert st["totals"]["copied"] == 248, (totals1, st)
    assert st["skipReasons"] == {"AppendRejected": 2}, st
