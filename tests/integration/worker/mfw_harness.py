"""Helpers for the worker integration tests: MailboxSyncs in the real API server, running the real worker."""

from __future__ import annotations

import email.utils
import imaplib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from chaos.mailrun import quote_folder
from fixtures.dovecot import Dovecot, DovecotPair, make_message
from fixtures.kubeapi import KubeAPI
from mailferry_imap import utf7

VENV_BIN = Path(sys.executable).parent
WORKER = str(VENV_BIN / "mailferry-worker")
VERIFY = str(VENV_BIN / "mailferry")


def ca_bundle(tmp: Path, *servers: Dovecot) -> Path:
    p = tmp / "ca-bundle.pem"
    p.write_text("".join(s.ca_cert.read_text() for s in servers))
    return p


def endpoint(
    d: Dovecot, secret: str, security: str = "none", port: int | None = None, **auth: Any
) -> dict[str, Any]:
    if port is None:
        port = d.tls_port if security == "tls" else d.port
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "connectTimeoutSeconds": 5,
        "readTimeoutSeconds": 30,
        "auth": {"secretRef": {"name": secret}, **auth},
    }


@dataclass
class Mailbox:
    """One MailboxSync in the API server plus the Secret volume files the job runner would mount."""

    kube: KubeAPI
    namespace: str
    name: str
    secrets_dir: Path

    def status(self) -> dict[str, Any]:
        return self.kube.get("mailboxsyncs.mailferry.io", self.name, self.namespace).get("status") or {}


def create_mailboxsync(
    kube: KubeAPI,
    namespace: str,
    name: str,
    user: str,
    source: dict[str, Any],
    destination: dict[str, Any],
    secrets_dir: Path,
    source_secrets: dict[str, str],
    dest_secrets: dict[str, str],
    dest_user: str | None = None,
    **options: Any,
) -> Mailbox:
    spec = {
        "source": {"username": user, "endpoint": source},
        "destination": {"username": dest_user or user, "endpoint": destination},
        **options,
    }
    kube.apply(
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "MailboxSync",
            "metadata": {"name": name},
            "spec": spec,
        },
        namespace=namespace,
    )
    for side, values in (("source", source_secrets), ("destination", dest_secrets)):
        d = secrets_dir / side
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        for k, v in values.items():
            (d / k).write_text(v)
        secret_name = (source if side == "source" else destination)["auth"]["secretRef"]["name"]
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name, "labels": {"mailferry.io/credentials": "true"}},
                "stringData": values,
            },
            namespace=namespace,
        )
    return Mailbox(kube, namespace, name, secrets_dir)


def user_mailboxsync(
    kube: KubeAPI,
    namespace: str,
    name: str,
    user: str,
    source: dict[str, Any],
    destination: dict[str, Any],
    secrets_dir: Path,
    **options: Any,
) -> Mailbox:
    """``create_mailboxsync`` for one user whose passwords are pw-src / pw-dst (how the tests add users)."""
    key = user.replace("@", "_")
    return create_mailboxsync(
        kube,
        namespace,
        name,
        user,
        source,
        destination,
        secrets_dir,
        {key: "pw-src"},
        {key: "pw-dst"},
        **options,
    )


def pair_box(
    kube: KubeAPI,
    namespace: str,
    pair: DovecotPair,
    tmp: Path,
    name: str,
    folders: dict[str, int],
    **options: Any,
) -> tuple[str, Mailbox, int]:
    """A new user on both Dovecots of `pair` (pw-src / pw-dst), `folders` of mail on the source
    (bulk_corpus), and its MailboxSync `name`: (user, mailbox, messages)."""
    user = f"{name}-{secrets.token_hex(3)}@example.test"
    pair.source.add_user(user, "pw-src")
    pair.destination.add_user(user, "pw-dst")
    total = bulk_corpus(pair.source, user, folders)
    return user, pair_mailboxsync(kube, namespace, pair, tmp, name, user, **options), total


def pair_mailboxsync(
    kube: KubeAPI, namespace: str, pair: DovecotPair, tmp: Path, name: str, user: str, **options: Any
) -> Mailbox:
    """``user_mailboxsync`` from the source to the destination of `pair` (Secret files under tmp/secrets)."""
    source, destination = endpoint(pair.source, "src-creds"), endpoint(pair.destination, "dst-creds")
    return user_mailboxsync(kube, namespace, name, user, source, destination, tmp / "secrets", **options)


def worker_env(
    kube: KubeAPI, namespace: str, names: Iterable[str], secrets_dir: Path, ca: Path | None, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(kube.kubeconfig),
        MAILFERRY_NAMESPACE=namespace,
        MAILFERRY_MAILBOXSYNCS=",".join(names),
        MAILFERRY_ROUND="1",
        MAILFERRY_JOB_NAME="test-r1-b0",
        MAILFERRY_MAILBOX_CONCURRENCY="4",
        MAILFERRY_SECRETS_DIR=str(secrets_dir),
        MAILFERRY_LOG_FORMAT="json",
        MAILFERRY_BACKOFF_BASE="0.2",
        # A worker killed with -9 keeps its mailbox's Lease until it expires; the rerun waits that long.
        MAILFERRY_LEASE_SECONDS="8",
    )
    if ca is not None:
        env["SSL_CERT_FILE"] = str(ca)
    env.update(extra)
    return env


def run_worker(env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WORKER, "sync"], env=env, capture_output=True, text=True, timeout=timeout)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([WORKER, "sync"], env=env, stdout=out, stderr=subprocess.STDOUT)


def events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def verify(src: Dovecot, dst: Dovecot, user: str, ca: Path | None = None, *extra: str) -> tuple[int, str]:
    env = dict(
        os.environ,
        MF_SRC_PW=src.master_password,
        MF_DST_PW=dst.master_password,
        MF_SRC_MASTER=src.master_user,
        MF_DST_MASTER=dst.master_user,
    )
    cp = subprocess.run(
        [
            VERIFY,
            "verify",
            "--source-host",
            "127.0.0.1",
            "--source-port",
            str(src.port),
            "--source-security",
            "none",
            "--source-user",
            user,
            "--source-password-env",
            "MF_SRC_PW",
            "--source-master-user-env",
            "MF_SRC_MASTER",
            "--dest-host",
            "127.0.0.1",
            "--dest-port",
            str(dst.port),
            "--dest-security",
            "none",
            "--dest-user",
            user,
            "--dest-password-env",
            "MF_DST_PW",
            "--dest-master-user-env",
            "MF_DST_MASTER",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return cp.returncode, cp.stdout + cp.stderr


def verify_mailboxsync(kube: KubeAPI, namespace: str, name: str) -> tuple[int, str]:
    """`mailferry verify --mailboxsync`: endpoints, Secrets and checkpoints from the API server."""
    cp = subprocess.run(
        [VERIFY, "verify", "--mailboxsync", name, "--namespace", namespace],
        env=dict(os.environ, KUBECONFIG=str(kube.kubeconfig)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return cp.returncode, cp.stdout + cp.stderr


def message_count(d: Dovecot, user: str) -> int:
    return sum(v.get("messages", 0) for v in d.mailbox_status(user).values())


def imap_count(d: Dovecot, user: str, folder: str = "INBOX") -> int:
    with d.connect_as(user) as c:
        typ, data = c.status(quote_folder(folder), "(MESSAGES)")
        if typ != "OK":
            return 0
        raw = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
        return int(raw.rsplit("MESSAGES", 1)[1].strip(" ()"))


def append(
    d: Dovecot, user: str, folder: str, messages: Iterable[bytes], flags: str = "", date: float | None = None
) -> None:
    d.append(user, utf7.encode(folder), messages, flags=flags, date=date)


def message(
    subject: str, size: int = 0, msgid: bool = True, body: str = "hello\r\n", domain: str = "src.test"
) -> bytes:
    if msgid:
        return make_message(subject, size=size, domain=domain, body=body)
    msg = EmailMessage()
    msg["From"] = f"a@{domain}"
    msg["To"] = f"b@{domain}"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def bulk_corpus(d: Dovecot, user: str, folders: dict[str, int], size: int = 3000) -> int:
    """Append distinct messages quickly (one connection per folder)."""
    total = 0
    with d.connect_as(user) as c:
        for folder, n in folders.items():
            mbox = quote_folder(folder)
            if folder.upper() != "INBOX":
                c.create(mbox)
            when = imaplib.Time2Internaldate(time.time() - 86400)
            for i in range(n):
                flags = "(\\Seen)" if i % 3 == 0 else None
                c.append(mbox, flags, when, make_message(f"{folder} {i}", size=size, domain="bulk.test"))
            total += n
    return total
