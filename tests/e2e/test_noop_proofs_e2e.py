"""Delta rounds under `spec.noopStatusInterval`, end to end: real kube-apiserver, two real Dovecots, the
operator as a process and the job runner running the real worker.

While nothing changes, delta rounds complete without one MailboxSync status write (each Job's success
proves its mailboxes unchanged), and the migration's lag counts those rounds; under `spec.deltaBatchSize`
the delta rounds run one Job for what the bulk copy split in two; a mailbox given new mail is
copied and written as always; the final round after `complete: true` writes every MailboxSync again, and
`mailferry verify` is clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair, make_message
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(300)
NAME = "quiet"
SYNCS = "mailboxsyncs.mailferry.io"


@pytest.fixture
def stack(kube: KubeAPI, namespace: str, tmp_path: Path) -> Iterator[None]:
    runner = d.JobRunnerProcess(kube, [namespace], tmp_path).start()
    operator = d.OperatorProcess(kube, [namespace], tmp_path).start()
    try:
        yield
    finally:
        operator.stop()
        runner.stop()
        kube.kubectl("delete", f"jobs,{SYNCS}", "--all", "-n", namespace, "--wait=false", check=False)


def _status(kube: KubeAPI, namespace: str) -> dict[str, Any]:
    return dict(d.migration(kube, namespace, NAME).get("status") or {})


def _syncs(kube: KubeAPI, namespace: str) -> dict[str, dict[str, Any]]:
    items = d.get(kube, SYNCS, namespace, selector=f"mailferry.io/migration={NAME}")["items"]
    return {str(o["spec"]["source"]["username"]): o for o in items}


def _env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def _job_sizes(kube: KubeAPI, namespace: str) -> dict[tuple[str, int], int]:
    """(round, batch) -> mailboxes in its Job (first attempts)."""
    out: dict[tuple[str, int], int] = {}
    for j in d.worker_jobs(kube, namespace, NAME):
        labels = j["metadata"]["labels"]
        if labels.get("mailferry.io/attempt", "0") != "0":
            continue
        out[(labels["mailferry.io/round"], int(labels["mailferry.io/batch"]))] = len(
            _env(j)["MAILFERRY_MAILBOXSYNCS"].split(",")
        )
    return out


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _round_done(kube: KubeAPI, namespace: str, number: int, timeout: float = 120) -> dict[str, Any]:
    """The migration's status once round `number` has completed (the next may have started since)."""

    def check() -> dict[str, Any] | None:
        st = _status(kube, namespace)
        rnd = st.get("round") or {}
        at = rnd.get("number", 0)
        return st if at > number or (at == number and rnd.get("completedAt")) else None

    return dict(d.wait_for(check, timeout, f"round {number} completed"))


def test_unchanged_mailboxes_cost_no_status_write_and_the_final_round_writes_them_all(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, stack: None
) -> None:
    pair = (dovecot_pair.source, dovecot_pair.destination)
    org = d.seeded_org(*pair, 4, 3, f"{namespace}.test")
    quiet = {"batchSize": 2, "deltaBatchSize": 4, "deltaInterval": "5s", "noopStatusInterval": "1h"}
    d.apply(kube, *d.org_migration(NAME, namespace, *pair, org, **quiet))
    _round_done(kube, namespace, 1, timeout=150)
    bulk = _syncs(kube, namespace)
    assert {o["status"]["round"] for o in bulk.values()} == {1}
    assert sorted(_job_sizes(kube, namespace).items())[:2] == [(("1", 0), 2), (("1", 1), 2)]

    # Delta rounds with nothing to copy: no MailboxSync is written, yet the lag follows the rounds.
    st = _round_done(kube, namespace, 5)
    quiet = _syncs(kube, namespace)
    for user, obj in quiet.items():
        assert obj["metadata"]["resourceVersion"] == bulk[user]["metadata"]["resourceVersion"], user
    worker_jobs = d.worker_jobs(kube, namespace, NAME)
    delta_env = [_env(j) for j in worker_jobs if j["metadata"]["labels"]["mailferry.io/round"] != "1"]
    assert delta_env and all(env.get("MAILFERRY_NOOP_STATUS_SECONDS") == "3600" for env in delta_env)
    # deltaBatchSize after the bulk copy: one Job of 4 per round; the round records the size it runs with
    delta_sizes = {k: n for k, n in _job_sizes(kube, namespace).items() if k[0] != "1"}
    assert delta_sizes and set(delta_sizes.values()) == {4} and {b for _, b in delta_sizes} == {0}
    assert st["round"]["batchSize"] == 4, st["round"]
    # The lag counts from the last rounds' Jobs, not from the statuses (the bulk copy's): counted from
    # those it would be at least their age when the current round started.
    oldest = min(_time(o["status"]["lastSyncTime"]) for o in quiet.values())
    assert st["lag"]["maxSeconds"] < (_time(st["round"]["startedAt"]) - oldest).total_seconds(), st

    # New mail for one user: copied, and that MailboxSync alone is written.
    changed = org.addresses[2]
    dovecot_pair.source.append(changed, "INBOX", [make_message("during coexistence", domain=org.domain)])
    target = st["round"]["number"] + 2  # the round running now may have looked already
    _round_done(kube, namespace, target)
    now = _syncs(kube, namespace)
    assert now[changed]["status"]["round"] > 1
    assert d.folder_counts(dovecot_pair.destination, changed) == d.folder_counts(dovecot_pair.source, changed)
    for user in org.addresses:
        if user != changed:
            assert now[user]["metadata"]["resourceVersion"] == bulk[user]["metadata"]["resourceVersion"], user

    # The final round writes every MailboxSync: the proof the cutover reads stays on each of them.
    kube.kubectl(
        "patch", "mailmigration", NAME, "-n", namespace, "--type=merge", "-p", '{"spec":{"complete":true}}'
    )

    def completed() -> dict[str, Any] | None:
        s = _status(kube, namespace)
        return s if s.get("phase") == "Completed" else None

    st = dict(d.wait_for(completed, 120, "phase Completed"))
    assert st["round"]["kind"] == "final"
    final = _syncs(kube, namespace)
    assert {o["status"]["round"] for o in final.values()} == {st["round"]["number"]}
    result = d.verify(kube, namespace, NAME)
    assert result.clean, f"{result.summary()} per mailbox {result.per_mailbox} {result.errors}"
