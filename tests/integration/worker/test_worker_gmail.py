"""Gmail over a Gmail-like server (tests/fixtures/gmail_like.py: real Dovecot, one stored copy per message,
label folders as views): the fixture behaves like Gmail where a migration cares; a Gmail source is copied
once per X-GM-MSGID into its home folder with its other labels as keywords, across rounds and kill -9;
`mailferry verify` compares per message; a Gmail destination gets a message once, its second folder as a
label."""

from __future__ import annotations

import imaplib
import os
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import mfw_harness as h
import pytest

from fixtures.dovecot import Dovecot, DovecotPair
from fixtures.gmail_like import STORE, GmailLike
from fixtures.kubeapi import KubeAPI
from mailferry_imap import utf7

_MSGID = re.compile(rb"message-id:\s*(\S+)", re.I)


@pytest.fixture(scope="module")
def gmail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GmailLike]:
    gm = GmailLike(tmp_path_factory.mktemp("gmail-like")).start()
    try:
        yield gm
    finally:
        gm.destroy()


def _ids(c: imaplib.IMAP4, folder: str) -> list[tuple[str, str]]:
    """(Message-ID, FLAGS text) of every message of ``folder``."""
    typ, _ = c.select(h.quote_folder(folder), readonly=True)
    if typ != "OK":
        return []
    typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = []
    for d in data:
        if isinstance(d, tuple):
            m = _MSGID.search(d[1])
            out.append((m.group(1).decode() if m else "-", d[0].decode()))
    return out


def _dest_ids(d: Dovecot, user: str) -> dict[str, list[tuple[str, str]]]:
    """Destination folder -> its messages (Message-ID, FLAGS text)."""
    with d.connect_as(user) as c:
        _, listing = c.list()
        raw = [re.sub(r'^\(.*?\) "." ', "", x.decode()).strip('"') for x in listing if isinstance(x, bytes)]
        names = [utf7.decode(n) for n in raw]
        return {n: _ids(c, n) for n in names if "\\Noselect" not in n}


def _stored(gm: GmailLike, user: str) -> Counter[str]:
    """Message-IDs of the messages the Gmail-like server stores (each stored message once)."""
    with gm.dovecot.connect_as(user) as c:
        return Counter(mid for mid, _ in _ids(c, STORE))


def _labels(gm: GmailLike, user: str) -> dict[str, set[str]]:
    """Message-ID -> X-GM-LABELS, through the proxy (what a Gmail client sees)."""
    c = gm.connect(user)
    try:
        c.select('"[Gmail]/All Mail"', readonly=True)
        _, data = c.uid("FETCH", "1:*", "(X-GM-LABELS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        out: dict[str, set[str]] = {}
        for d in data:
            if isinstance(d, tuple):
                m = _MSGID.search(d[1])
                raw = re.search(r"X-GM-LABELS \((.*?)\) BODY", d[0].decode())
                labels = set(re.findall(r'"[^"]*"|\S+', raw.group(1))) if raw else set()
                out[m.group(1).decode() if m else "-"] = {x.strip('"') for x in labels}
        return out
    finally:
        c.logout()


def _mid(raw: bytes) -> str:
    m = _MSGID.search(raw)
    assert m is not None
    return m.group(1).decode()


# ------------------------------------------------------------------------------------------ fixture
def test_fixture_is_gmail_like(gmail: GmailLike) -> None:
    user = f"fx-{secrets.token_hex(3)}@example.test"
    gmail.add_user(user, "pw")
    three = h.message("three labels")
    gmail.put(user, three, ["\\Inbox", "Work", "Travel"])
    gmail.put(user, h.message("archived"), [])
    c = gmail.connect(user)
    try:
        assert "X-GM-EXT-1" in c.capabilities
        listing = [x.decode() for x in c.list()[1] if isinstance(x, bytes)]
        for attr, name in (("\\All", "All Mail"), ("\\Sent", "Sent Mail"), ("\\Junk", "Spam")):
            assert any(attr in x and name in x for x in listing), listing
        assert any("\\Important" in x and "Important" in x for x in listing), listing
        # one stored message, visible in three folders (and All Mail), same X-GM-MSGID everywhere
        ids = set()
        for folder in ("INBOX", "Work", "Travel", '"[Gmail]/All Mail"'):
            c.select(folder, readonly=True)
            _, data = c.uid("FETCH", "1:*", "(X-GM-MSGID X-GM-LABELS)")
            got = [d.decode() for d in data if isinstance(d, bytes)]
            ids |= {re.search(r"X-GM-MSGID (\d+)", g).group(1) for g in got if "Work" in g}  # type: ignore[union-attr]
        assert len(ids) == 1
        # COPY into a label folder adds the label, no new message; APPEND to a label stores one
        c.select("INBOX")
        assert c.create("Later")[0] == "OK"
        assert c.uid("COPY", "1", "Later")[0] == "OK"
        assert c.append("Later", "(\\Seen)", None, h.message("appended"))[0] == "OK"
        c.select('"[Gmail]/All Mail"')
        assert c.uid("STORE", "2", "+X-GM-LABELS", "(Receipts)")[0] == "OK"
        assert c.uid("STORE", "1", "FLAGS", "(\\Answered)")[0] == "OK"  # a replace keeps the labels
    finally:
        c.logout()
    assert sum(_stored(gmail, user).values()) == 3
    labels = _labels(gmail, user)
    assert labels[_mid(three)] == {"\\Inbox", "Work", "Travel", "Later"}
    assert {"Receipts"} in labels.values() and {"Later"} in labels.values()


# ------------------------------------------------------------------------------------- Gmail source
SOURCE = [
    # (subject, labels, flags, expected home on the destination, keywords riding along)
    ("three labels", ["\\Inbox", "Work", "Travel"], "\\Seen", "INBOX", {"Travel", "Work"}),
    ("work only", ["Work"], "", "Work", set()),
    ("two labels", ["Work", "Travel"], "", "Travel", {"Work"}),
    ("non-ascii label", ["Reisen/Übersee"], "", "Reisen/Übersee", set()),
    ("archived", [], "\\Seen", "Archive", set()),
    ("starred important", ["\\Starred", "\\Important"], "", "Archive", {"\\Flagged", "$Important"}),
    ("sent", ["\\Sent", "Clients"], "\\Seen", "Clients", {"$GmailSent"}),
    ("sent only", ["\\Sent"], "\\Seen", "Sent", set()),
    ("draft", ["\\Draft"], "\\Draft", "Drafts", set()),
    ("spam", ["\\Spam"], "", None, set()),
    ("trash", ["\\Trash", "Work"], "", None, set()),
]


def _gmail_source(
    kube: KubeAPI, namespace: str, gm: GmailLike, dst: Dovecot, tmp: Path, name: str, **spec: object
) -> tuple[str, h.Mailbox, dict[str, str]]:
    user = f"{name}-{secrets.token_hex(3)}@example.test"
    gm.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    source = {**h.endpoint(dst, "s", port=gm.port), "provider": "gmail"}
    mb = h.user_mailboxsync(kube, namespace, name, user, source, h.endpoint(dst, "d"), tmp / "s", **spec)
    return user, mb, h.worker_env(kube, namespace, [name], tmp / "s", None)


def test_gmail_source_copies_each_message_once_into_its_home(
    kube: KubeAPI, namespace: str, gmail: GmailLike, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    dst = dovecot_pair.destination
    user, mb, env = _gmail_source(kube, namespace, gmail, dst, tmp_path, "gmsrc")
    want: dict[str, tuple[str | None, set[str]]] = {}
    for subject, labels, flags, home, keywords in SOURCE:
        raw = h.message(subject)
        gmail.put(user, raw, labels, flags)
        want[_mid(raw)] = (home, keywords)

    gmail.proxy.inject_overquota(2)  # Gmail's daily download limit answered twice: backed off, retried
    before = gmail.proxy.stats["overquota"]
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert gmail.proxy.stats["overquota"] - before == 2
    assert any(e.get("reason") == "Throttled" for e in h.events(cp.stderr)), cp.stderr[-3000:]
    st = mb.status()
    assert st["phase"] == "Synced", st
    copied = [m for m in want.values() if m[0] is not None]
    assert st["totals"]["copied"] == len(copied), st
    found = _dest_ids(dst, user)
    where = Counter(mid for msgs in found.values() for mid, _ in msgs)
    assert all(n == 1 for n in where.values()), where  # no message twice, in any folder
    for mid, (home, keywords) in want.items():
        if home is None:
            assert mid not in where  # Spam / Trash not copied
            continue
        flags = dict(found[home])[mid]
        assert all(k in flags for k in keywords), (home, flags, keywords)
    assert {f for f, msgs in found.items() if msgs} == {
        "INBOX",
        "Work",
        "Travel",
        "Archive",
        "Clients",
        "Sent",
        "Drafts",
        "Reisen/Übersee",
    }

    # Round 2: a label added to a copied message, a new message with three labels: copied once.
    c = gmail.connect(user)
    try:
        c.select("Work")
        c.uid("STORE", "1:*", "+X-GM-LABELS", "(Later)")
        new = h.message("new with labels")
        c.append("Travel", None, None, new)
        c.select("Travel")
        c.uid("STORE", "1:*", "+X-GM-LABELS", "(\\Inbox Receipts)")
    finally:
        c.logout()
    env2 = dict(env, MAILFERRY_ROUND="2", MAILFERRY_JOB_NAME="test-r2-b0")
    cp = h.run_worker(env2)
    assert cp.returncode == 0, cp.stderr[-3000:]
    found = _dest_ids(dst, user)
    where = Counter(mid for msgs in found.values() for mid, _ in msgs)
    assert all(n == 1 for n in where.values()), where
    assert _mid(new) in dict(found["INBOX"]), found["INBOX"]
    assert sum(where.values()) == len(copied) + 1

    rc, out = h.verify_mailboxsync(kube, namespace, "gmsrc")
    assert rc == 0, out
    # one copy gone on the destination: verify finds exactly that message missing
    with dst.connect_as(user) as d:
        d.select("Work")
        d.uid("STORE", "1:*", "+FLAGS", "(\\Deleted)")
        d.expunge()
    rc, out = h.verify_mailboxsync(kube, namespace, "gmsrc")
    assert rc == 1, out
    assert "missing=1" in out and "differences=1" in out, out


def test_gmail_source_kill9_loses_and_duplicates_nothing(
    kube: KubeAPI, namespace: str, gmail: GmailLike, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    dst = dovecot_pair.destination
    user, mb, env = _gmail_source(kube, namespace, gmail, dst, tmp_path, "gmkill", connectionsPerMailbox=2)
    label_sets = [["\\Inbox"], ["\\Inbox", "Work", "Travel"], ["Work"], [], ["\\Sent"], ["Travel", "Work"]]
    total = 600
    with gmail.dovecot.connect_as(user) as c:
        from fixtures.gmail_like import label_keyword

        when = imaplib.Time2Internaldate(time.time() - 86400)
        for lb in {x for s in label_sets for x in s if not x.startswith("\\")}:
            gmail.dovecot.add_label(user, lb)
        for i in range(total):
            kws = " ".join(label_keyword(x) for x in label_sets[i % len(label_sets)])
            c.append(STORE, f"({kws})" if kws else None, when, h.message(f"bulk {i}", size=3000))
    folders = ["INBOX", "Work", "Travel", "Archive", "Sent"]

    def count() -> int:
        return sum(h.imap_count(dst, user, f) for f in folders)

    kills = 0
    for i, frac in enumerate([0.05, 0.2, 0.4, 0.6, 0.8]):
        p = h.start_worker(env, tmp_path / f"kill-{i}.log")
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline and count() < total * frac:
            time.sleep(0.01)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 3, f"only {kills} kills landed during the copy"
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    where = Counter(mid for msgs in _dest_ids(dst, user).values() for mid, _ in msgs)
    assert len(where) == total, f"{total - len(where)} lost"
    assert all(n == 1 for n in where.values()), [m for m, n in where.items() if n > 1][:5]
    assert mb.status()["phase"] == "Synced"
    rc, out = h.verify_mailboxsync(kube, namespace, "gmkill")
    assert rc == 0, out


# -------------------------------------------------------------------------------- Gmail destination
def test_gmail_destination_uploads_once_and_labels_the_other_folders(
    kube: KubeAPI, namespace: str, gmail: GmailLike, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src = dovecot_pair.source
    user = f"gmdst-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    gmail.add_user(user, "pw-dst")
    shared = h.message("filed twice")
    # Flags and INTERNALDATE are per message on Gmail (not per label): the copies carry the same ones.
    when = time.time() - 3600
    h.append(src, user, "INBOX", [shared, h.message("inbox only")], flags="\\Seen", date=when)
    h.append(src, user, "Work", [shared], flags="\\Seen", date=when)
    h.append(src, user, "Work", [h.message("work only")])
    h.append(src, user, "Projects/Alpha", [shared], flags="\\Seen", date=when)
    destination = {**h.endpoint(src, "d", port=gmail.port), "provider": "gmail"}
    mb = h.user_mailboxsync(
        kube,
        namespace,
        "gmdst",
        user,
        h.endpoint(src, "s"),
        destination,
        tmp_path / "s",
        connectionsPerMailbox=3,
    )
    env = h.worker_env(kube, namespace, ["gmdst"], tmp_path / "s", None)
    gmail.proxy.inject_overquota(1, on="append")  # the upload limit answered once: backed off, retried
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert any(e.get("reason") == "Throttled" for e in h.events(cp.stderr)), cp.stderr[-3000:]
    assert mb.status()["phase"] == "Synced", mb.status()
    stored = _stored(gmail, user)
    assert sum(stored.values()) == 3 and stored[_mid(shared)] == 1, stored  # uploaded once
    assert _labels(gmail, user)[_mid(shared)] == {"\\Inbox", "Work", "Projects/Alpha"}
    cp = h.run_worker(dict(env, MAILFERRY_ROUND="2", MAILFERRY_JOB_NAME="test-r2-b0"))
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert sum(_stored(gmail, user).values()) == 3
    rc, out = h.verify_mailboxsync(kube, namespace, "gmdst")
    assert rc == 0, out


def test_gmail_destination_kill9_uploads_each_message_once(
    kube: KubeAPI, namespace: str, gmail: GmailLike, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    """300 messages, each also filed in a second folder; kill -9 during the copy, then a run: each is
    stored once on the Gmail-like destination, with both folders as labels."""
    src = dovecot_pair.source
    user = f"gmdkill-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    gmail.add_user(user, "pw-dst")
    when = time.time() - 3600
    msgs = [h.message(f"filed twice {i}", size=3000) for i in range(300)]
    h.append(src, user, "INBOX", msgs, flags="\\Seen", date=when)
    h.append(src, user, "Work", msgs[::2], flags="\\Seen", date=when)
    h.append(src, user, "Later", msgs[1::2], flags="\\Seen", date=when)
    destination = {**h.endpoint(src, "d", port=gmail.port), "provider": "gmail"}
    mb = h.user_mailboxsync(
        kube,
        namespace,
        "gmdkill",
        user,
        h.endpoint(src, "s"),
        destination,
        tmp_path / "s",
        connectionsPerMailbox=3,
    )
    env = h.worker_env(kube, namespace, ["gmdkill"], tmp_path / "s", None)

    def stored() -> int:
        return sum(_stored(gmail, user).values())

    kills = 0
    for i, frac in enumerate([0.1, 0.4, 0.7]):
        p = h.start_worker(env, tmp_path / f"kill-{i}.log")
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline and stored() < 300 * frac:
            time.sleep(0.02)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 2, f"only {kills} kills landed during the copy"
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    counts = _stored(gmail, user)
    assert len(counts) == 300 and all(n == 1 for n in counts.values()), counts.most_common(3)
    labels = _labels(gmail, user)
    assert all(labels[_mid(m)] == {"\\Inbox", "Work" if i % 2 == 0 else "Later"} for i, m in enumerate(msgs))
    assert mb.status()["phase"] == "Synced"
    rc, out = h.verify_mailboxsync(kube, namespace, "gmdkill")
    assert rc == 0, out
