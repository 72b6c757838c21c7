"""The running operator the bad-input tests talk to: `mailferry-operator` as a process on the test
namespace; Jobs and MailboxSyncs it made are deleted afterwards (no job runner runs them)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.kubeapi import KubeAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demolib as d


@pytest.fixture
def operator(kube: KubeAPI, namespace: str, tmp_path: Path) -> Iterator[d.OperatorProcess]:
    op = d.OperatorProcess(kube, [namespace], tmp_path).start()
    try:
        yield op
    finally:
        op.stop()
        kube.kubectl(
            "delete", "jobs,mailboxsyncs.mailferry.io", "--all", "-n", namespace, "--wait=false", check=False
        )
