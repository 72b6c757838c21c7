"""deploy/examples/ against the real API server: every file applies cleanly, and `kubectl get mailferry`
lists all three kinds with their printer columns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fixtures.kubeapi import KubeAPI

EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist() -> None:
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_applies(kube: KubeAPI, namespace: str, path: Path) -> None:
    cp = kube.kubectl("apply", "-n", namespace, "-f", str(path))
    assert "Warning" not in cp.stderr, cp.stderr
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        stored = kube.get(doc["kind"].lower(), doc["metadata"]["name"], namespace)
        assert stored["metadata"]["namespace"] == namespace
        if "spec" in doc:
            # Nothing the user wrote was pruned; the server only added defaults.
            _assert_subset(doc["spec"], stored["spec"], "spec")


def _assert_subset(mine: object, theirs: object, path: str) -> None:
    if isinstance(mine, dict):
        assert isinstance(theirs, dict), path
        for key, value in mine.items():
            assert key in theirs, f"{path}.{key} was dropped by the API server"
            _assert_subset(value, theirs[key], f"{path}.{key}")
    elif isinstance(mine, list):
        assert isinstance(theirs, list) and len(theirs) == len(mine), path
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _assert_subset(a, b, f"{path}[{i}]")
    else:
        assert mine == theirs, f"{path}: {mine!r} stored as {theirs!r}"


def test_server_applies_defaults(kube: KubeAPI, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "11-mailmigration-inventory.yaml"))
    spec = kube.get("mailmigration", "example-com-to-m365", namespace)["spec"]
    assert spec["source"]["port"] == 993
    assert spec["source"]["security"] == "tls"
    assert spec["deltaInterval"] == "30m"
    assert spec["suspend"] is False
    assert spec["worker"]["mailboxConcurrency"] == 4


EXPECTED_HEADERS = {
    "dnscutover.mailferry.io": [
        *("NAME", "DOMAIN", "PHASE", "TARGET", "READY"),
        *("SWITCHED", "DRAIN-UNTIL", "AGE"),
    ],
    "mailboxsync.mailferry.io": [
        *("NAME", "SOURCE", "PHASE", "READY", "COPIED", "MESSAGES", "LAG", "ETA", "AGE"),
    ],
    "mailmigration.mailferry.io": [
        "NAME",
        "PHASE",
        "READY",
        "PROGRESS",
        "MAILBOXES",
        "LAG",
        "ETA",
        "CUTOVER",
        "AGE",
    ],
    "noticeplan.mailferry.io": [
        *("NAME", "MIGRATION", "PHASE", "PENDING-APPROVALS"),
        *("SENT", "BOUNCED", "ACKNOWLEDGED", "READY", "AGE"),
    ],
    "sendingcutover.mailferry.io": ["NAME", "DOMAIN", "PHASE", "WEIGHT", "TARGET", "READY", "AGE"],
}


def test_kubectl_get_mailferry_prints_columns(kube: KubeAPI, namespace: str) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    kube.kubectl(
        "patch",
        "mailmigration",
        "example-com",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Syncing", "progress": "1200/5000", "mailboxes": {"total": 3},'
        ' "lag": {"maxSeconds": 42, "pendingMessages": 7}, "eta": "2026-01-09T10:00:00Z",'
        ' "conditions": [{"type": "Ready", "status": "False", "reason": "BulkCopying",'
        ' "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}',
    )
    out = kube.kubectl("get", "mailferry", "-n", namespace).stdout
    tables = [block.strip().splitlines() for block in out.strip().split("\n\n")]
    by_kind: dict[str, list[str]] = {}
    for table in tables:
        kind = table[1].split()[0].split("/")[0]
        by_kind[kind] = table
    assert set(by_kind) == set(EXPECTED_HEADERS), out
    for kind, headers in EXPECTED_HEADERS.items():
        assert by_kind[kind][0].split() == headers, by_kind[kind][0]
    row = next(line for line in by_kind["mailmigration.mailferry.io"] if "/example-com " in line)
    assert row.split()[1:7] == ["Syncing", "False", "1200/5000", "3", "42", "2026-01-09T10:00:00Z"], row
    dns_row = by_kind["dnscutover.mailferry.io"][1].split()
    assert dns_row[1:3] == ["example.com", "Staged"]
    # The short names resolve too.
    for short in ("mm", "mbs", "dnsc"):
        assert kube.kubectl("get", short, "-n", namespace).stdout.startswith("NAME")
