"""Peer tools timed against mailferry: mbsync (Debian isync) and doveadm backup over imapc (dsync).

Each tool is one process per mailbox; the harness runs ``concurrency`` of them at once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.bench.harness import BenchServers, ProcResult, run_measured
from tests.fixtures.dovecot import DOVEADM_BIN

MBSYNC_BIN = shutil.which("mbsync") or "/usr/bin/mbsync"


def mbsync_version() -> tuple[int, int, int]:
    out = subprocess.run([MBSYNC_BIN, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


def doveadm_version() -> str:
    return subprocess.run(
        ["dovecot", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()


class Peer:
    name = "peer"

    def __init__(self, servers: BenchServers, workdir: Path) -> None:
        self.servers = servers
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        """Forget any sync state (called when the destination is wiped)."""

    def job(self, user: str, phase: str) -> Callable[[], ProcResult]:
        raise NotImplementedError


class Mbsync(Peer):
    """One ``mbsync -a`` per mailbox: IMAP source (Far) -> IMAP destination (Near), Sync Pull."""

    name = "mbsync"

    def reset(self) -> None:
        shutil.rmtree(self.workdir / "state", ignore_errors=True)

    def config(self, user: str) -> Path:
        src, dst = self.servers.source, self.servers.destination
        pw = self.servers.corpus.password(user)
        # isync >= 1.5 renamed SSLType to TLSType.
        tls_kw = "TLSType" if mbsync_version() >= (1, 5, 0) else "SSLType"
        state = self.workdir / "state" / user
        state.mkdir(parents=True, exist_ok=True)
        rc = self.workdir / f"{user}.mbsyncrc"
        stores = ""
        tls = (
            f"{tls_kw} IMAPS\nCertificateFile {self.servers.ca_bundle}\n"
            if self.servers.tls
            else f"{tls_kw} None\n"
        )
        for label, server in (("src", src), ("dst", dst)):
            host, port = self.servers.imap_host(server), self.servers.imap_port(server)
            stores += (
                f"IMAPAccount {label}\nHost {host}\nPort {port}\nUser {user}\nPass {pw}\n"
                f"{tls}AuthMechs LOGIN\n\n"
                f"IMAPStore {label}\nAccount {label}\n\n"
            )
        rc.write_text(
            stores + "Channel migrate\nFar :src:\nNear :dst:\nPatterns *\nSync Pull\nCreate Near\n"
            "Remove None\nExpunge None\nCopyArrivalDate yes\n"
            f"SyncState {state}/\n"
        )
        rc.chmod(0o600)
        return rc

    def job(self, user: str, phase: str) -> Callable[[], ProcResult]:
        rc = self.config(user)
        log = self.workdir / "logs" / f"{phase}-{user}.log"
        return lambda: run_measured([MBSYNC_BIN, "-q", "-c", str(rc), "-a"], log)


class DoveadmBackup(Peer):
    """``doveadm backup -R`` on the destination with the source as an imapc: location (dsync engine)."""

    name = "doveadm-backup"

    def job(self, user: str, phase: str) -> Callable[[], ProcResult]:
        src, dst = self.servers.source, self.servers.destination
        pw = self.servers.corpus.password(user)
        # imapc over implicit TLS verifies the source's certificate against the bench CA bundle.
        tls = ["imapc_ssl=imaps", f"ssl_client_ca_file={self.servers.ca_bundle}"] if self.servers.tls else []
        options = [
            f"imapc_host={self.servers.imap_host(src)}",
            f"imapc_port={self.servers.imap_port(src)}",
            f"imapc_user={user}",
            f"imapc_password={pw}",
            *(tls or ["imapc_ssl=no"]),
            "imapc_features=rfc822.size fetch-headers",
            "mail_prefetch_count=20",
        ]
        argv = [DOVEADM_BIN, "-c", str(dst.conf)]
        for option in options:
            argv += ["-o", option]
        argv += ["backup", "-R", "-u", user, "imapc:"]
        log = self.workdir / "logs" / f"{phase}-{user}.log"
        return lambda: run_measured(argv, log)


PEERS: dict[str, type[Peer]] = {"mbsync": Mbsync, "doveadm-backup": DoveadmBackup}
