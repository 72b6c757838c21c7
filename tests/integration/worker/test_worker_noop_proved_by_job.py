"""A delta round under spec.noopStatusInterval (MAILFERRY_NOOP_STATUS_SECONDS, sync/noopproof.py), on a real
Dovecot pair and a real API server: a mailbox proved unchanged is not rewritten and the run exits 0 (the
Job's success is the proof); a changed one is copied and written as always; a batch that cannot exit 0
writes its proofs one by one first; a spec changed since the last write, or a status older than its
share of the interval, is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import mfw_harness as h

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

FOLDERS = {"INBOX": 6, "Archive": 3}
HOUR = "3600"


def _round(
    kube: KubeAPI, namespace: str, names: list[str], secrets_dir: Path, number: int, every: str | None
) -> tuple[int, list[dict[str, object]]]:
    extra = {"MAILFERRY_ROUND": str(number), "MAILFERRY_JOB_NAME": f"r{number}"}
    if every is not None:
        extra["MAILFERRY_NOOP_STATUS_SECONDS"] = every
    cp = h.run_worker(h.worker_env(kube, namespace, names, secrets_dir, None, **extra))
    assert cp.returncode in (0, 1, 2, 3), cp.stderr[-2000:]
    return cp.returncode, h.events(cp.stderr)


def _version(kube: KubeAPI, namespace: str, name: str) -> str:
    return str(kube.get("mailboxsyncs.mailferry.io", name, namespace)["metadata"]["resourceVersion"])


def test_a_proved_noop_is_left_unwritten_and_written_when_the_job_cannot_prove_it(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    _ua, a, _ = h.pair_box(kube, namespace, dovecot_pair, tmp_path, "quiet-a", FOLDERS)
    ub, b, _ = h.pair_box(kube, namespace, dovecot_pair, tmp_path, "quiet-b", FOLDERS)
    names, secrets = [a.name, b.name], a.secrets_dir
    code, _ = _round(kube, namespace, names, secrets, 1, None)
    assert code == 0 and a.status()["round"] == b.status()["round"] == 1

    # Nothing changed: exit 0 and neither status is touched.
    before = {n: _version(kube, namespace, n) for n in names}
    code, events = _round(kube, namespace, names, secrets, 2, HOUR)
    assert code == 0
    assert {n: _version(kube, namespace, n) for n in names} == before, "a proved no-op was written"
    assert sorted(str(e["mailboxsync"]) for e in events if e.get("event") == "noop_proved") == sorted(names)

    # New mail on b: b is copied and written as always, a still left alone.
    h.append(dovecot_pair.source, ub, "INBOX", [h.message("after round 2")])
    code, _ = _round(kube, namespace, names, secrets, 3, HOUR)
    assert code == 0
    assert _version(kube, namespace, a.name) == before[a.name]
    assert (b.status()["round"], b.status()["phase"]) == (3, "Synced")
    assert h.message_count(dovecot_pair.destination, ub) == h.message_count(dovecot_pair.source, ub)

    # A batch that exits 2 (a MailboxSync it cannot read): its exit code proves nothing, so a's proof is
    # written before the end.
    code, _ = _round(kube, namespace, [a.name, "no-such-mailbox"], secrets, 4, HOUR)
    assert code == 2
    st = a.status()
    assert (st["round"], st["jobName"], st["phase"]) == (4, "r4", "Synced")

    # a's spec changes after its last write: the status must answer the new spec, so it is written.
    kube.kubectl(
        "patch", "mailboxsyncs.mailferry.io", a.name, "-n", namespace, "--type=merge",
        "-p", '{"spec": {"connectionsPerMailbox": 3}}',
    )  # fmt: skip
    code, _ = _round(kube, namespace, [a.name], secrets, 5, HOUR)
    assert code == 0 and a.status()["round"] == 5

    # A status older than its share of the interval (at most 1 s here) is written again.
    time.sleep(1.1)
    code, _ = _round(kube, namespace, [a.name], secrets, 6, "1")
    assert code == 0 and a.status()["round"] == 6
