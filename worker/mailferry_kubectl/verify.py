"""`kubectl mailferry verify`: the worker's verifier (`mailferry verify --mailboxsync`) for every mailbox of a
migration, run as separate processes (the plugin never imports the worker), results summed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class VerifyResult:
    mailboxes: int = 0
    folders: int = 0
    source: int = 0
    destination: int = 0
    differences: int = 0
    errors: list[str] = field(default_factory=list)
    per_mailbox: dict[str, int] = field(default_factory=dict)  # source address -> differences

    @property
    def clean(self) -> bool:
        return self.differences == 0 and not self.errors

    def summary(self) -> str:
        return (
            f"verify: mailboxes={self.mailboxes} folders={self.folders} source={self.source} "
            f"destination={self.destination} differences={self.differences}"
            + (f" errors={len(self.errors)}" if self.errors else "")
        )

    def add(self, address: str, cp: subprocess.CompletedProcess[str]) -> None:
        self.mailboxes += 1
        try:
            data = json.loads(cp.stdout)
        except json.JSONDecodeError:
            self.errors.append(f"{address}: exit {cp.returncode}: {cp.stderr.strip()[-300:]}")
            return
        self.per_mailbox[address] = int(data.get("differences", 0))
        self.differences += int(data.get("differences", 0))
        for f in data.get("folders", []):
            self.folders += 1
            self.source += int(f.get("sourceCount", 0) or 0)
            self.destination += int(f.get("destinationCount", f.get("destCount", 0)) or 0)


def verifier() -> str:
    """`mailferry` from the same installation as this plugin, else from PATH."""
    beside = Path(sys.executable).parent / "mailferry"
    return str(beside) if beside.exists() else (shutil.which("mailferry") or "mailferry")


def verify_mailboxes(
    syncs: Sequence[Mapping[str, Any]],
    namespace: str,
    kubeconfig: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> VerifyResult:
    """Compare source and destination of each MailboxSync (8 at a time)."""

    def one(sync: Mapping[str, Any]) -> tuple[str, subprocess.CompletedProcess[str]]:
        argv = [
            verifier(),
            "verify",
            "--namespace",
            namespace,
            "--mailboxsync",
            sync["metadata"]["name"],
            "--json",
        ]
        if kubeconfig:
            argv += ["--kubeconfig", kubeconfig]
        cp = subprocess.run(
            argv, env=dict(env) if env is not None else None, capture_output=True, text=True, timeout=timeout
        )
        return str(sync["spec"]["source"]["username"]), cp

    result = VerifyResult()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for address, cp in pool.map(one, syncs):
            result.add(address, cp)
    return result
