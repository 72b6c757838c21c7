"""MailMigration end to end: real kube-apiserver, two real Dovecots, `mailferry-operator` as a process,
the local job runner running the real `mailferry-worker` for every Job."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair, make_message
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(300)
NAME = "acme"


@pytest.fixture
def stack(kube: KubeAPI, namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    runner = d.JobRunnerProcess(kube, [namespace], tmp_path).start()
    operator = d.OperatorProcess(kube, [namespace], tmp_path).start()
    try:
        yield {"operator": operator, "runner": runner, "logs": tmp_path}
    finally:
        operator.stop()
        runner.stop()
        # no garbage collector runs here: remove what the migration owns so nothing keeps running
        kube.kubectl(
            "delete", "jobs,mailboxsyncs.mailferry.io", "--all", "-n", namespace, "--wait=false", check=False
        )


def _org(pair: DovecotPair, namespace: str, n: int, per_mailbox: int, wrong: tuple[str, ...] = ()) -> d.Org:
    org = d.make_org(n, domain=f"{namespace}.test")
    d.add_org_users(
        pair.source, pair.destination, org, wrong_destination=[a for a in org.addresses if a in wrong]
    )
    d.seed_org(pair.source, org, per_mailbox)
    return org


def _apply(kube: KubeAPI, namespace: str, pair: DovecotPair, org: d.Org, **spec: Any) -> None:
    d.apply(kube, *d.org_migration(NAME, namespace, pair.source, pair.destination, org, **spec))


def _status(kube: KubeAPI, namespace: str) -> dict[str, Any]:
    return dict(d.migration(kube, namespace, NAME).get("status") or {})


def _cond(kube: KubeAPI, namespace: str, type_: str) -> dict[str, Any] | None:
    return d.condition(d.migration(kube, namespace, NAME), type_)


def _wait_status(kube: KubeAPI, namespace: str, pred: Any, what: str, timeout: float = 150) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = _status(kube, namespace)
        return st if pred(st) else None

    return dict(d.wait_for(check, timeout, what))


def _conditions_true(*types: str) -> Callable[[dict[str, Any]], bool]:
    """A status predicate: every condition of `types` is True."""
    return lambda s: all((d.condition({"status": s}, t) or {}).get("status") == "True" for t in types)


def _complete(kube: KubeAPI, namespace: str) -> dict[str, Any]:
    kube.kubectl(
        "patch", "mailmigration", NAME, "-n", namespace, "--type=merge", "-p", '{"spec":{"complete":true}}'
    )
    return _wait_status(kube, namespace, lambda s: s.get("phase") == "Completed", "phase Completed")


def _same_mail(pair: DovecotPair, org: d.Org, skip: tuple[str, ...] = ()) -> None:
    for addr in org.addresses:
        if addr in skip:
            continue
        src = d.folder_counts(pair.source, addr)
        dst = d.folder_counts(pair.destination, addr)
        for folder, count in src.items():
            assert dst.get(folder) == count, f"{addr} {folder}: source {count}, destination {dst.get(folder)}"


def _verify(kube: KubeAPI, namespace: str, org: d.Org, skip: tuple[str, ...] = ()) -> str:
    result = d.verify(kube, namespace, NAME, skip=skip)
    assert result.clean, f"{result.summary()} per mailbox {result.per_mailbox} {result.errors}"
    assert result.mailboxes == len(org.users) - len(skip)
    assert result.source == result.destination > 0
    return result.summary()


def test_twenty_mailboxes_bulk_delta_lag_and_complete(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, stack: dict[str, Any]
) -> None:
    org = _org(dovecot_pair, namespace, 20, per_mailbox=6)
    _apply(kube, namespace, dovecot_pair, org)

    st = _wait_status(
        kube, namespace, _conditions_true("BulkCopied", "Validated"), "bulk copy and validation"
    )
    assert st["scan"]["mailboxes"] == 20 and st["scan"]["messages"] == sum(org.messages.values())
    assert st["mailboxes"]["total"] == 20
    assert st["totals"]["expectedMessages"] == st["totals"]["copiedMessages"] == sum(org.messages.values())
    assert len(d.get(kube, "mailboxsyncs.mailferry.io", namespace)["items"]) == 20
    _same_mail(dovecot_pair, org)
    bulk_round = st["round"]["number"]

    # a message delivered after bulk arrives by a later delta round
    alice = org.addresses[0]
    before = d.folder_counts(dovecot_pair.destination, alice).get("INBOX", 0)
    dovecot_pair.source.append(alice, "INBOX", [make_message("late arrival", domain=org.domain)])
    lags: list[int] = []

    def arrived() -> bool:
        lags.append(int((_status(kube, namespace).get("lag") or {}).get("maxSeconds", 0)))
        return d.folder_counts(dovecot_pair.destination, alice).get("INBOX", 0) == before + 1

    d.wait_for(arrived, 90, "the late message on the destination")
    st = _status(kube, namespace)
    # round 1 is the bulk copy; whatever round carried the message is a delta round
    assert bulk_round >= 1 and st["round"]["number"] >= 2 and st["round"]["kind"] == "delta"
    alice_sync = next(
        s
        for s in d.get(kube, "mailboxsyncs.mailferry.io", namespace)["items"]
        if s["spec"]["source"]["username"] == alice
    )
    assert alice_sync["status"]["round"] >= 2
    # lag rises between rounds and falls when a round lands
    d.wait_for(
        lambda: (
            lags.append(int(_status(kube, namespace)["lag"]["maxSeconds"]))
            or (
                any(later < earlier for i, earlier in enumerate(lags) for later in lags[i + 1 :])
                and max(lags) >= 3
            )
        ),
        60,
        f"lag to rise and fall (seen {lags})",
    )

    st = _complete(kube, namespace)
    assert st["round"]["kind"] == "final"
    phases = [h["phase"] for h in st["history"]]
    assert phases[-1] == "Completed" and "Completing" in phases and "InSync" in phases
    assert (d.condition({"status": st}, "Ready") or {}).get("status") == "True"
    assert st["observedGeneration"] == d.migration(kube, namespace, NAME)["metadata"]["generation"]
    assert st["totals"]["copiedMessages"] == sum(org.messages.values()) + 1
    _same_mail(dovecot_pair, org)
    print(_verify(kube, namespace, org))

    # the Jobs: per contract, owned, restricted, no credential literals
    # only the last two rounds' Jobs are kept: the older ones went with their pods (rounds.prunable_jobs)
    last = st["round"]["number"]
    jobs = d.worker_jobs(kube, namespace, NAME)
    names = {j["metadata"]["name"] for j in jobs}
    assert {f"acme-r{last}-b{b}" for b in range(4)} <= names
    kept = {int(j["metadata"]["labels"]["mailferry.io/round"]) for j in jobs}
    assert kept <= {last - 1, last}, f"Jobs of rounds {sorted(kept)} kept after round {last}"
    for job in jobs:
        assert re.fullmatch(r"acme-r\d+-b\d+", job["metadata"]["name"])
        assert job["metadata"]["ownerReferences"][0]["kind"] == "MailMigration"
        pod = job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["command"] == ["mailferry-worker", "sync"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        text = json.dumps(job)
        assert not any(pw in text for pw in org.users.values())
    events = d.get(kube, "events", namespace)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == NAME}
    assert {"RoundStarted", "RoundCompleted", "Completed", "JobCreated"} <= reasons
    metrics = stack["operator"].metrics()
    assert re.search(r'mailferry_migration_phase\{[^}]*phase="Completed"[^}]*\} 1\.0', metrics)
    assert "mailferry_migration_lag_seconds" in metrics


def test_operator_killed_mid_migration_no_duplicate_jobs_no_lost_progress(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, stack: dict[str, Any]
) -> None:
    org = _org(dovecot_pair, namespace, 20, per_mailbox=16)
    _apply(kube, namespace, dovecot_pair, org, batchSize=2, maxConcurrentJobs=2, deltaInterval="1h")
    operator: d.OperatorProcess = stack["operator"]
    d.wait_for(lambda: len(d.worker_jobs(kube, namespace, NAME)) >= 3, 90, "a few batch Jobs")
    operator.kill()  # SIGKILL: no graceful shutdown
    before = _status(kube, namespace)
    jobs_at_kill = {j["metadata"]["name"] for j in d.worker_jobs(kube, namespace, NAME)}
    time.sleep(3)  # the runner finishes Jobs while no operator runs
    operator.start()
    st = _wait_status(
        kube,
        namespace,
        _conditions_true("BulkCopied"),
        "bulk copy after the restart",
        timeout=180,
    )
    assert st["round"]["number"] == 1 == before["round"]["number"]
    assert st["history"][: len(before.get("history", []))] == before.get("history", [])
    st = _complete(kube, namespace)
    jobs = d.worker_jobs(kube, namespace, NAME)
    names = [j["metadata"]["name"] for j in jobs]
    assert jobs_at_kill <= set(names)
    # one Job per batch per round, no retries, each run exactly once by the runner
    assert sorted(n for n in names if n.startswith("acme-r1-")) == sorted(f"acme-r1-b{b}" for b in range(10))
    assert not [n for n in names if "-a" in n.split("-b")[-1]]
    for log in Path(stack["runner"].log_dir).glob("*.log"):
        assert log.read_text().count("--- ") == 1, f"{log.name} ran more than once"
    assert st["totals"]["copiedMessages"] == st["totals"]["expectedMessages"] == sum(org.messages.values())
    _same_mail(dovecot_pair, org)  # equal counts: nothing lost, nothing copied twice
    print(_verify(kube, namespace, org))


def test_wrong_destination_password_fails_one_mailbox_others_complete(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, stack: dict[str, Any]
) -> None:
    org = d.make_org(20, domain=f"{namespace}.test")
    bad = org.addresses[7]
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org, wrong_destination=[bad])
    d.seed_org(dovecot_pair.source, org, 4)
    _apply(kube, namespace, dovecot_pair, org)
    st = _wait_status(
        kube, namespace, _conditions_true("BulkCopied", "Validated"), "bulk copy and validation"
    )
    assert (d.condition({"status": st}, "Validated") or {}).get("reason") == "SomeMailboxesUnreachable"
    assert st["scan"]["reachable"] == 19
    assert [(e["mailbox"], e["side"], e["reason"]) for e in st["scan"]["errors"]] == [
        (bad, "destination", "AuthenticationFailed")
    ]
    syncs = d.get(kube, "mailboxsyncs.mailferry.io", namespace)["items"]
    by_source = {s["spec"]["source"]["username"]: s for s in syncs}
    failed = by_source[bad]["status"]
    assert failed["phase"] == "Failed" and failed["lastError"]["reason"] == "AuthenticationFailed"
    assert all(s["status"]["phase"] == "Synced" for a, s in by_source.items() if a != bad)
    assert [(e["mailbox"], e["reason"]) for e in st["failedMailboxes"]] == [(bad, "AuthenticationFailed")]
    stalled = d.condition({"status": st}, "Stalled") or {}
    assert stalled.get("status") == "True" and stalled.get("reason") == "MailboxesFailed"
    assert bad in stalled.get("message", "") and "1 of 20" in stalled.get("message", "")
    assert st["mailboxes"]["failed"] == 1 and st["mailboxes"]["synced"] == 19
    st = _complete(kube, namespace)
    assert (d.condition({"status": st}, "Ready") or {}).get("reason") == "MailboxesFailed"
    _same_mail(dovecot_pair, org, skip=(bad,))
    print(_verify(kube, namespace, org, skip=(bad,)))
    assert d.folder_counts(dovecot_pair.destination, bad).get("INBOX", 0) == 0
    secret_values = set(org.users.values())
    for log in [stack["logs"] / "operator.log", *Path(stack["runner"].log_dir).glob("*.log")]:
        text = log.read_text()
        assert not any(v in text for v in secret_values), f"a password leaked into {log.name}"


def test_configmap_inventory_approval_suspend_resume(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, stack: dict[str, Any]
) -> None:
    org = _org(dovecot_pair, namespace, 4, per_mailbox=4)
    a = org.addresses
    csv = (
        "# exported from the old provider\nsource,destination,secretKey\n"
        f"{a[0]},{a[0]}\n{a[1]}\nnot-an-address@@x\n{a[2]},,{a[2].replace('@', '_')}\n{a[1]},{a[1]}\n{a[3]}\n"
    )
    cm = d.inventory_manifest("inventory", namespace, csv)
    manifest = d.migration_manifest(
        NAME,
        namespace,
        dovecot_pair.source,
        dovecot_pair.destination,
        inventory_configmap="inventory",
        approval={"required": True},
    )
    d.apply(
        kube,
        cm,
        d.secret_manifest(f"{NAME}-source", namespace, d.credentials(org)),
        d.secret_manifest(f"{NAME}-destination", namespace, d.credentials(org)),
        manifest,
    )
    st = _wait_status(kube, namespace, lambda s: s.get("phase") == "AwaitingApproval", "AwaitingApproval")
    assert st["inventory"]["total"] == 6 and st["inventory"]["valid"] == 4 and st["inventory"]["invalid"] == 2
    assert [e["line"] for e in st["inventory"]["errors"]] == [5, 7]
    assert "duplicate source" in st["inventory"]["errors"][1]["reason"]
    assert st["scan"]["messages"] == sum(org.messages.values()) and st["scan"]["reachable"] == 4
    assert "waiting for approval" in st["history"][-1]["message"]
    assert d.worker_jobs(kube, namespace, NAME) == []  # nothing is copied before approval

    kube.kubectl("annotate", "mailmigration", NAME, "-n", namespace, "mailferry.io/approved=true")
    st = _wait_status(
        kube,
        namespace,
        _conditions_true("BulkCopied"),
        "bulk copy after approval",
    )
    assert (d.condition({"status": st}, "Approved") or {}).get("reason") == "Approved"

    kube.kubectl(
        "patch", "mailmigration", NAME, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    st = _wait_status(
        kube, namespace, lambda s: s.get("phase") == "Suspended" and s["jobs"]["active"] == 0, "Suspended"
    )
    suspended_round = st["round"]["number"]
    jobs_before = {j["metadata"]["name"] for j in d.worker_jobs(kube, namespace, NAME)}
    time.sleep(8)  # longer than deltaInterval (5s): a delta round would have started by now
    st = _status(kube, namespace)
    assert st["phase"] == "Suspended" and st["round"]["number"] == suspended_round
    assert {j["metadata"]["name"] for j in d.worker_jobs(kube, namespace, NAME)} == jobs_before

    kube.kubectl(
        "patch", "mailmigration", NAME, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    _wait_status(
        kube,
        namespace,
        lambda s: s["round"]["number"] > suspended_round and s.get("phase") != "Suspended",
        "a delta round after resume",
    )
    d.wait_for(
        lambda: len(d.worker_jobs(kube, namespace, NAME)) > len(jobs_before), 60, "new Jobs after resume"
    )
    st = _complete(kube, namespace)
    assert st["totals"]["copiedMessages"] == sum(org.messages.values())
    _same_mail(dovecot_pair, org)
    # the only finalizer is Kopf's (to stop the daemon): deletion goes through while the operator runs
    assert d.migration(kube, namespace, NAME)["metadata"]["finalizers"] == ["mailferry.io/finalizer"]
    kube.kubectl("delete", "mailmigration", NAME, "-n", namespace, "--wait=true", "--timeout=60s")
