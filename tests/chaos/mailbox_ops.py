"""What people do in a mailbox during weeks of coexistence, done over IMAP on a real server (expunge, move,
flag, new mail), and the check that a destination mirrors its source plus the destination's own mail."""

from __future__ import annotations

import email.utils
import imaplib
import secrets
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from chaos.mailrun import WorkerRun, endpoint, message_ids, q
from fixtures.dovecot import Dovecot


def uids(c: imaplib.IMAP4, folder: str, criteria: str = "ALL") -> list[int]:
    c.select(q(folder))
    _, data = c.uid("SEARCH", criteria)
    return [int(x) for x in (data[0] or b"").split()]


def folder_uids(d: Dovecot, user: str, folder: str) -> list[int]:
    with d.connect_as(user) as c:
        return uids(c, folder)


def expunge(d: Dovecot, user: str, folder: str, which: list[int]) -> None:
    if not which:
        return
    with d.connect_as(user) as c:
        c.select(q(folder))
        c.uid("STORE", ",".join(map(str, which)), "+FLAGS", "(\\Deleted)")
        c.uid("EXPUNGE", ",".join(map(str, which)))


def move(d: Dovecot, user: str, folder: str, which: list[int], to: str) -> None:
    if not which:
        return
    with d.connect_as(user) as c:
        c.select(q(folder))
        typ, _ = c.uid("MOVE", ",".join(map(str, which)), q(to))
        assert typ == "OK"


def flag(d: Dovecot, user: str, folder: str, which: list[int], flags: str = "(\\Flagged)") -> None:
    if not which:
        return
    with d.connect_as(user) as c:
        c.select(q(folder))
        c.uid("STORE", ",".join(map(str, which)), "+FLAGS", flags)


def add(d: Dovecot, user: str, folder: str, messages: list[bytes]) -> None:
    with d.connect_as(user) as c:
        if folder != "INBOX":
            c.create(q(folder))  # NO when it exists
        for m in messages:
            typ, _ = c.append(q(folder), None, imaplib.Time2Internaldate(1.7e9), m)
            assert typ == "OK"


def without_message_id(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@src.test"
    msg["To"] = "b@src.test"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg.set_content(f"{subject} {secrets.token_hex(8)}\r\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def mirror_differences(src: Dovecot, dst: Dovecot, user: str, direct: Counter[str]) -> list[str]:
    """Per folder what the destination lacks or has too much, compared with its source folder plus (in
    INBOX) ``direct``, the mail delivered to the destination itself; empty when it mirrors exactly."""
    s, d = message_ids(src, user), message_ids(dst, user)
    out = []
    for folder, ids in s.items():
        want = ids + (direct if folder == "INBOX" else Counter())
        have = d.get(folder, Counter())
        if have != want:
            out.append(f"{folder}: missing {sum((want - have).values())} extra {sum((have - want).values())}")
    return out


def new_box(src: Dovecot, dst: Dovecot, workdir: Path, name: str, **options: Any) -> tuple[str, WorkerRun]:
    """A new user on both servers (passwords pw-src / pw-dst) and its MailboxSync in the file store."""
    user = f"{name}-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    ends = endpoint("127.0.0.1", src.port), endpoint("127.0.0.1", dst.port)
    return user, WorkerRun(workdir, name, user, *ends, "pw-src", "pw-dst", **options)
