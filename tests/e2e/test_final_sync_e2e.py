"""The final sync after the MX swap, end to end: real kube-apiserver, two real Dovecots, the operator as a
process and the job runner running the real worker.

A MailMigration referenced by a DnsCutover gets `complete: true` right after the switch; it waits for the
drain (DnsCutover `status.switchedAt` / `status.drainUntil`, written here directly with a status patch and
a short drain, so the test does not depend on the DNS side's progress); mail delivered to the source
during the drain (a sender that still had the old MX cached) is on the destination when the migration
reports Completed, and `mailferry verify` is clean.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair, make_message
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(300)
NAME = "acme"
CUTOVER = "acme-dns"
DRAIN = timedelta(seconds=30)  # short, for the test (the default is max(2 x MX TTL, 1 h))


@pytest.fixture
def stack(kube: KubeAPI, namespace: str, tmp_path: Path) -> Iterator[None]:
    runner = d.JobRunnerProcess(kube, [namespace], tmp_path).start()
    # the DnsCutover's own timer stays out of the way: this test writes its status fields itself
    operator = d.OperatorProcess(
        kube, [namespace], tmp_path, extra_env={"MAILFERRY_DNS_GATE_INTERVAL": "3600"}
    ).start()
    try:
        yield
    finally:
        operator.stop()
        runner.stop()
        kube.kubectl(
            "delete", "jobs,mailboxsyncs.mailferry.io", "--all", "-n", namespace, "--wait=false", check=False
        )


def _rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(kube: KubeAPI, namespace: str) -> dict[str, Any]:
    return dict(d.migration(kube, namespace, NAME).get("status") or {})


def _held(
    kube: KubeAPI, namespace: str, reason: str, timeout: float = 60, saying: str = ""
) -> dict[str, Any]:
    """Wait until CutoverDrained has `reason` (and a message containing `saying`); the status then."""

    def check() -> dict[str, Any] | None:
        st = _status(kube, namespace)
        held = (d.condition({"status": st}, "CutoverDrained") or {}).get("reason") == reason
        return st if held and saying in _why(st) else None

    return dict(d.wait_for(check, timeout, f"CutoverDrained {reason}"))


def _why(st: dict[str, Any]) -> str:
    """The CutoverDrained message (until when, and why)."""
    return str((d.condition({"status": st}, "CutoverDrained") or {}).get("message", ""))


def _cutover_status(kube: KubeAPI, namespace: str, fields: dict[str, Any]) -> None:
    """What the DNS side writes at the switch (or clears on a rollback below Switched)."""
    kube.kubectl(
        "patch", "dnscutover", CUTOVER, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": fields}),
    )  # fmt: skip


def _switch(kube: KubeAPI, namespace: str) -> datetime:
    """Switched now, drained after DRAIN; returns drainUntil once the migration has seen it."""
    at = datetime.now(UTC).replace(microsecond=0)
    until = at + DRAIN
    fields = {"phase": "Switched", "switchedAt": _rfc3339(at), "drainUntil": _rfc3339(until)}

    def seen() -> bool:
        # the DNS side's reconcile may have read the object just before this patch: write until it holds
        if (d.get(kube, "dnscutover", namespace, CUTOVER).get("status") or {}).get("drainUntil") != fields[
            "drainUntil"
        ]:
            _cutover_status(kube, namespace, fields)
        return ((_status(kube, namespace).get("cutover") or {}).get("drainUntil")) == fields["drainUntil"]

    d.wait_for(seen, 60, "the migration to see the switch")
    return until


def _dnscutover(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "DnsCutover",
        "metadata": {"name": CUTOVER, "namespace": namespace},
        "spec": {
            "domain": f"{namespace}.test",
            # nothing listens there and the Secret does not exist: the DNS side stalls, harmlessly
            "provider": {
                "type": "powerdns",
                "secretRef": {"name": "no-such-secret"},
                "powerdns": {"apiUrl": "http://127.0.0.1:9", "serverId": "localhost"},
            },
            "migrationRef": {"name": NAME},
            "targetPhase": "Planned",
            "records": {"mx": [{"host": "mx.new-provider.test", "priority": 10}]},
        },
    }


def test_mail_delivered_to_the_old_mx_during_the_drain_is_copied_before_completed(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, stack: None
) -> None:
    pair = (dovecot_pair.source, dovecot_pair.destination)
    org = d.seeded_org(*pair, 3, 3, f"{namespace}.test")
    # no delta round by the clock: only the final round can carry the late message
    d.apply(kube, *d.org_migration(NAME, namespace, *pair, org, deltaInterval="1h"), _dnscutover(namespace))
    st = _held(kube, namespace, "WaitingForSwitch", timeout=150)
    assert "DnsCutover acme-dns" in _why(st)
    d.wait_for(lambda: _status(kube, namespace).get("phase") == "InSync", 150, "bulk copy (InSync)")

    # complete: true before the switch waits for it
    kube.kubectl(
        "patch", "mailmigration", NAME, "-n", namespace, "--type=merge", "-p", '{"spec":{"complete":true}}'
    )
    # the operator's next pass says so (the patch above is not seen at once)
    st = _held(kube, namespace, "WaitingForSwitch", saying="complete: true waits")
    assert st["phase"] == "InSync" and "complete: true waits" in _why(st)

    # the switch, rolled back below Switched (fields cleared), waits again; then switched for good
    _switch(kube, namespace)
    _held(kube, namespace, "Draining")
    _cutover_status(kube, namespace, {"phase": "Staged", "switchedAt": None, "drainUntil": None})
    _held(kube, namespace, "WaitingForSwitch")
    until = _switch(kube, namespace)
    # a sender with the old MX cached delivers to the old provider after the switch, within the drain
    late = org.addresses[1]
    before = d.folder_counts(dovecot_pair.source, late).get("INBOX", 0)
    dovecot_pair.source.append(late, "INBOX", [make_message("after the MX swap", domain=org.domain)])
    st = _held(kube, namespace, "Draining")
    assert f"until {_rfc3339(until)}" in _why(st), _why(st)
    assert st["phase"] == "InSync" and st.get("completedAt") is None
    table = kube.kubectl("get", "mm", NAME, "-n", namespace).stdout
    assert f"until {_rfc3339(until)}" in table and "CUTOVER" in table, table

    def completed() -> dict[str, Any] | None:
        s = _status(kube, namespace)
        return s if s.get("phase") == "Completed" else None

    st = dict(d.wait_for(completed, 180, "phase Completed"))
    started = datetime.fromisoformat(st["round"]["startedAt"].replace("Z", "+00:00"))
    assert st["round"]["kind"] == "final" and started > until
    assert (d.condition({"status": st}, "CutoverDrained") or {}).get("reason") == "Drained"
    assert d.folder_counts(dovecot_pair.destination, late).get("INBOX", 0) == before + 1
    result = d.verify(kube, namespace, NAME)
    assert result.clean, f"{result.summary()} per mailbox {result.per_mailbox} {result.errors}"
    assert result.mailboxes == 3 and result.source == result.destination > 0
