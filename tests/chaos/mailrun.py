"""Run the real worker (``mailferry-worker sync``) for one mailbox and count what landed, by Message-ID.

The worker runs as a subprocess with ``--status-dir`` (MailboxSync spec+status in a JSON file, the
worker's development store) unless a KubeAPI is given, so fault scenarios need no API server.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixtures.dovecot import Dovecot, make_message
from mailferry_imap import utf7

WORKER = str(Path(sys.executable).parent / "mailferry-worker")
DEBUG_WRAPPER = Path(__file__).resolve().parent / "worker_debug.py"
HUNG = -999  # exit code recorded for a run killed after hanging
_MSGID = re.compile(rb"message-id:\s*(\S+)", re.I)


def endpoint(host: str, port: int, secret: str = "creds", read_timeout: int = 10) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "security": "none",
        "connectTimeoutSeconds": 5,
        "readTimeoutSeconds": read_timeout,
        "auth": {"secretRef": {"name": secret}},
    }


def q(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def corpus(d: Dovecot, user: str, folders: dict[str, int], size: int = 3000, tag: str = "bulk") -> int:
    """Append distinct messages (one connection); returns how many."""
    total = 0
    with d.connect_as(user) as c:
        for folder, n in folders.items():
            if folder.upper() != "INBOX":
                c.create(q(folder))
            when = imaplib.Time2Internaldate(time.time() - 86400)
            for i in range(n):
                flags = "(\\Seen)" if i % 3 == 0 else None
                msg = make_message(f"{tag} {folder} {i}", size=size, domain="chaos.test")
                c.append(q(folder), flags, when, msg)
            total += n
    return total


def message_ids(d: Dovecot, user: str) -> dict[str, Counter[str]]:
    """{folder: Counter(Message-ID)} over every selectable folder of ``user``."""
    out: dict[str, Counter[str]] = {}
    with d.connect_as(user) as c:
        typ, listing = c.list()
        names = []
        for raw in listing or []:
            line = raw.decode() if isinstance(raw, bytes) else str(raw)
            if "\\Noselect" in line:
                continue
            m = re.match(r'^\(.*?\) (?:"(?:[^"\\]|\\.)*"|NIL) (.*)$', line)
            if m:
                names.append(m.group(1).strip('"'))
        for name in names:
            typ, _ = c.select(q(name), readonly=True)
            if typ != "OK":
                continue
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            ids: Counter[str] = Counter()
            for item in data or []:
                if isinstance(item, tuple):
                    m2 = _MSGID.search(item[1])
                    ids[m2.group(1).decode() if m2 else "<none>"] += 1
            out[name] = ids
    return out


@dataclass
class Diff:
    source: int
    destination: int
    lost: int
    duplicated: int
    detail: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"source={self.source} destination={self.destination} lost={self.lost} "
            f"duplicated={self.duplicated}"
        )


def compare(src: Dovecot, dst: Dovecot, user: str) -> Diff:
    """Messages lost / duplicated per folder, counted by Message-ID (multiset difference)."""
    s, d = message_ids(src, user), message_ids(dst, user)
    lost = dup = 0
    detail: list[str] = []
    for folder, ids in s.items():
        have = d.get(folder, Counter())
        missing = ids - have
        extra = have - ids
        lost += sum(missing.values())
        dup += sum(extra.values())
        if missing or extra:
            detail.append(f"{folder}: missing={sum(missing.values())} extra={sum(extra.values())}")
    return Diff(
        sum(sum(c.values()) for c in s.values()), sum(sum(c.values()) for c in d.values()), lost, dup, detail
    )


def quote_folder(name: str) -> str:
    """An IMAP quoted string of the folder's modified UTF-7 name."""
    enc = utf7.encode(name)
    return '"' + enc.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DestCounter:
    """Messages on the destination over one persistent connection (cheap to poll)."""

    def __init__(self, d: Dovecot, user: str, names: list[str]) -> None:
        self.d, self.user, self.names = d, user, names
        self.conn: imaplib.IMAP4 | None = None

    def __call__(self) -> int:
        try:
            if self.conn is None:
                self.conn = self.d.connect_as(self.user)
            n = 0
            for f in self.names:
                typ, data = self.conn.status(quote_folder(f), "(MESSAGES)")
                if typ == "OK" and data and isinstance(data[0], bytes):
                    n += int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" ()"))
            return n
        except (imaplib.IMAP4.error, OSError):
            self.conn = None
            return -1

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                self.conn.logout()
            self.conn = None


class WorkerRun:
    """One MailboxSync (file store) and how to run the worker on it."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        user: str,
        source: dict[str, Any],
        destination: dict[str, Any],
        src_password: str,
        dst_password: str,
        **options: Any,
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.status_dir = workdir / "status"
        self.secrets_dir = workdir / "secrets"
        self.logs: list[str] = []
        self.hangs: list[str] = []  # stderr (with the task dump) of each hung run
        self.hang_seconds = 120.0
        self.status_dir.mkdir(parents=True, exist_ok=True)
        key = user.replace("@", "_")
        for side, pw in (("source", src_password), ("destination", dst_password)):
            sd = self.secrets_dir / side
            sd.mkdir(parents=True, exist_ok=True)
            sd.chmod(0o700)
            (sd / key).write_text(pw)
        spec = {
            "source": {"username": user, "endpoint": source},
            "destination": {"username": user, "endpoint": destination},
            **options,
        }
        (self.status_dir / f"{name}.json").write_text(json.dumps({"spec": spec, "status": {}}))

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MAILFERRY_MAILBOXSYNCS=self.name,
            MAILFERRY_ROUND="1",
            MAILFERRY_JOB_NAME="chaos-r1-b0",
            MAILFERRY_SECRETS_DIR=str(self.secrets_dir),
            MAILFERRY_LOG_FORMAT="json",
            MAILFERRY_BACKOFF_BASE="0.2",
            MAILFERRY_MAX_RETRIES="3",
        )
        env.update(extra)
        return env

    def argv(self) -> list[str]:
        return [sys.executable, str(DEBUG_WRAPPER), "sync", "--status-dir", str(self.status_dir)]

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        """One worker run. A run still going after ``hang_seconds`` counts as a hang: its asyncio task
        stacks are dumped (SIGUSR1), it is killed, and it returns exit code HUNG."""
        p = subprocess.Popen(
            self.argv(), env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = p.communicate(timeout=self.hang_seconds)
            code = p.returncode
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGUSR1)
            time.sleep(2)
            p.kill()
            out, err = p.communicate()
            code = HUNG
            self.hangs.append(err[-20000:])
        cp = subprocess.CompletedProcess(p.args, code, out, err)
        self.logs.append(out + err)
        return cp

    def start(self, log: Path, **env: str) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(self.argv(), env=self.env(**env), stdout=out, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.status_dir / f"{self.name}.json").read_text())
        return doc.get("status") or {}

    def run_until_done(self, max_runs: int = 40, **env: str) -> tuple[int, float, list[int]]:
        """Rerun (like the Job controller would) until exit 0; (runs, seconds, exit codes)."""
        t0 = time.monotonic()
        codes: list[int] = []
        for _ in range(max_runs):
            cp = self.run(**env)
            codes.append(cp.returncode)
            if cp.returncode == 0:
                break
            if cp.returncode not in (0, 1, HUNG):
                raise AssertionError(f"worker exit {cp.returncode}: {cp.stderr[-3000:]}")
        return len(codes), time.monotonic() - t0, codes


def events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
