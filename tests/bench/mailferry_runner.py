"""Run mailferry the way a Job would: MailboxSync objects in a real kube-apiserver, Secret files on disk,
then ``mailferry-worker sync`` with the pod env (see docs/job-contract.md).

The API server comes from tests/fixtures/kubeapi.py (``start_envtest``, its non-pytest factory).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.bench.harness import BenchServers, ProcResult, run_measured

REPO = Path(__file__).resolve().parents[2]
WORKER_MAIN = REPO / "worker" / "mailferry_worker" / "main.py"
NAMESPACE = "mailferry-bench"


def worker_bin() -> str | None:
    beside = Path(sys.executable).parent / "mailferry-worker"
    if beside.exists():
        return str(beside)
    return shutil.which("mailferry-worker")


def mailferry_available() -> tuple[bool, str]:
    """Whether mailferry can be benchmarked here, and why not."""
    if not WORKER_MAIN.exists():
        return False, f"{WORKER_MAIN.relative_to(REPO)} does not exist yet (worker not written)"
    if worker_bin() is None:
        return False, "no mailferry-worker entry point (pip install -e .)"
    try:
        from tests.fixtures import kubeapi  # noqa: F401
    except ImportError as exc:
        return False, f"tests/fixtures/kubeapi.py unusable: {exc}"
    return True, ""


class MailferryRunner:
    """Context manager: starts the API server and creates one MailboxSync per bench user."""

    def __init__(
        self, servers: BenchServers, workdir: Path, concurrency: int, connections: int | None = None
    ) -> None:
        self.servers = servers
        self.workdir = workdir
        self.concurrency = concurrency
        self.connections = connections
        self.kube: Any = None
        self.secrets_dir = workdir / "secrets"

    # --------------------------------------------------------------- set-up
    def __enter__(self) -> MailferryRunner:
        from tests.fixtures.kubeapi import find_bin_dir, start_envtest

        self.workdir.mkdir(parents=True, exist_ok=True)
        kroot = self.workdir / "kube"
        shutil.rmtree(kroot, ignore_errors=True)
        kroot.mkdir()
        self.kube = start_envtest(kroot, find_bin_dir())
        try:
            self.kube.install_crds()
            self.kube.kubectl("create", "namespace", NAMESPACE)
            self._write_secrets()
        except BaseException:
            self.kube.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.kube is not None:
            self.kube.stop()
        shutil.rmtree(self.secrets_dir, ignore_errors=True)

    def reset(self) -> None:
        """(Re)create one MailboxSync per user, without status (no checkpoints)."""
        self.kube.kubectl("delete", "mailboxsyncs.mailferry.io", "--all", "-n", NAMESPACE, "--wait=true")
        self.kube.apply([self._mailboxsync(u) for u in self.servers.users], namespace=NAMESPACE)

    def _write_secrets(self) -> None:
        """The two Secret volumes as a kubelet would mount them: one file per key, 0700 dir."""
        shutil.rmtree(self.secrets_dir, ignore_errors=True)
        self.secrets_dir.mkdir(mode=0o700, parents=True)
        for side in ("source", "destination"):
            d = self.secrets_dir / side
            d.mkdir(mode=0o700)
            for user in self.servers.users:
                f = d / user
                f.write_text(self.servers.corpus.password(user))
                f.chmod(0o600)

    def _mailboxsync(self, user: str) -> dict[str, Any]:
        def side(server: Any, secret: str) -> dict[str, Any]:
            return {
                "endpoint": {
                    "host": server.host,
                    "port": self.servers.imap_port(server),
                    "security": "tls" if self.servers.tls else "none",
                    "tlsVerify": self.servers.tls,
                    "auth": {"method": "password", "secretRef": {"name": secret}},
                },
                "username": user,
            }

        spec: dict[str, Any] = {
            "source": side(self.servers.source, "bench-source"),
            "destination": side(self.servers.destination, "bench-destination"),
            "secretKey": user,
        }
        if self.connections is not None:
            spec["connectionsPerMailbox"] = self.connections
        return {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "MailboxSync",
            "metadata": {"name": user, "namespace": NAMESPACE},
            "spec": spec,
        }

    # ------------------------------------------------------------------ run
    def sync(self, phase: str, profile: Path | None = None) -> ProcResult:
        """One ``mailferry-worker sync`` over every user (bulk: round 1, delta: round 2).

        With ``profile``, the worker runs under cProfile (slower; not for timing) and the stats go there.
        """
        round_ = 1 if phase == "bulk" else 2
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kube.kubeconfig),
            MAILFERRY_NAMESPACE=NAMESPACE,
            MAILFERRY_MAILBOXSYNCS=",".join(self.servers.users),
            MAILFERRY_ROUND=str(round_),
            MAILFERRY_JOB_NAME=f"bench-r{round_}-b0",
            MAILFERRY_MAILBOX_CONCURRENCY=str(self.concurrency),
            MAILFERRY_SECRETS_DIR=str(self.secrets_dir),
            MAILFERRY_LOG_FORMAT="json",
        )
        if self.servers.tls:
            env["MAILFERRY_CA_FILE"] = str(self.servers.ca_bundle)  # verifies both bench CAs
        bin_ = worker_bin()
        assert bin_ is not None
        argv = [bin_, "sync"]
        if profile is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *argv]
        log = self.workdir / "logs" / f"{phase}{'-profile' if profile else ''}.log"
        return run_measured(argv, log, env=env, sample_rss=True)

    def statuses(self) -> dict[str, Any]:
        """MailboxSync status per user (for diagnostics)."""
        items = self.kube.get("mailboxsyncs.mailferry.io", namespace=NAMESPACE).get("items", [])
        return {i["metadata"]["name"]: i.get("status", {}) for i in items}
