"""Budgets across the Jobs of a migration, and the ETA, on a real API server with the operator as a process
and two real Dovecots: the operator never runs more Jobs/connections than spec.budgets allow, the shares
the Jobs carry sum to at most the budget, the ETA is in status and in `kubectl get mm`/`mbs`, and the real
worker records its usage and ETA in MailboxSync status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(300)
NAME = "budgeted"
CONNECTIONS = 6  # source: with 2 per mailbox, 3 mailboxes at once over every Job
DAY_BYTES = 1_000_000_000  # destination, over every mailbox


def _env(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _active(kube: KubeAPI, namespace: str) -> list[dict[str, Any]]:
    jobs = d.worker_jobs(kube, namespace, NAME)
    done = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
    finished = {
        j["metadata"]["name"]
        for j in jobs
        for c in j.get("status", {}).get("conditions", [])
        if c["type"] in done and c["status"] == "True"
    }
    return [j for j in jobs if j["metadata"]["name"] not in finished]


def _check_budget(jobs: list[dict[str, Any]]) -> None:
    """The running Jobs' connections and byte shares stay within spec.budgets."""
    connections = shares = 0
    for job in jobs:
        env = _env(job)
        share = json.loads(env["MAILFERRY_BUDGET"])
        assert int(env["MAILFERRY_MAILBOX_CONCURRENCY"]) == share["concurrency"]
        connections += share["concurrency"] * 2
        shares += share.get("destination_bytes_per_day", 0)
        assert share["destination_bytes_per_day"] > 0
    assert connections <= CONNECTIONS, f"{connections} source connections over {len(jobs)} Jobs"
    assert shares <= DAY_BYTES


def test_jobs_stay_within_budgets_and_eta_is_shown(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    org = d.make_org(8, domain=f"{namespace}.test")
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org)
    d.seed_org(dovecot_pair.source, org, 4)
    operator = d.OperatorProcess(kube, [namespace], tmp_path).start()
    runner: d.JobRunnerProcess | None = None
    try:
        d.apply(
            kube,
            *d.org_migration(
                NAME,
                namespace,
                dovecot_pair.source,
                dovecot_pair.destination,
                org,
                batchSize=2,
                maxConcurrentJobs=5,
                connectionsPerMailbox=2,
                worker={"mailboxConcurrency": 4},
                budgets={"source": {"connections": CONNECTIONS}, "destination": {"bytesPerDay": DAY_BYTES}},
            ),
        )

        # No job runner yet: the Jobs stay running, so what the operator started is what the budget allowed.
        def held() -> dict[str, Any] | None:
            st = d.migration(kube, namespace, NAME).get("status") or {}
            return st if (st.get("budget") or {}).get("heldJobs") else None

        st = d.wait_for(held, 120, "Jobs held back by the connection budget")
        assert st["budget"]["reason"] == "ConnectionBudget", st["budget"]
        jobs = _active(kube, namespace)
        # maxConcurrentJobs would allow 4 batches; 6 connections allow 2 mailboxes + 1 mailbox
        assert sorted(int(_env(j)["MAILFERRY_MAILBOX_CONCURRENCY"]) for j in jobs) == [1, 2]
        _check_budget(jobs)
        assert st["budget"]["source"]["connections"] == CONNECTIONS
        assert st["budget"]["destination"]["bytesPerDay"] <= DAY_BYTES

        # The ETA, from the scan and the budget (nothing copied yet), in status and in `kubectl get mm`.
        assert st["scan"]["bytes"] > 0
        assert st["etaReason"] == "BudgetBound" and st["etaSeconds"] >= 0 and st["eta"]
        table = kube.kubectl("get", "mm", NAME, "-n", namespace).stdout
        header, row = table.splitlines()[:2]
        assert "ETA" in header.split() and st["eta"] in row.split(), table

        # A few more passes change nothing: still two Jobs.
        kube.kubectl("annotate", "mm", NAME, "-n", namespace, "poke=1", "--overwrite")
        d.wait_for(
            lambda: (d.migration(kube, namespace, NAME)["metadata"].get("annotations") or {}).get("poke"),
            30,
            "annotation seen",
        )
        assert len(_active(kube, namespace)) == 2

        # Now the Jobs run (the real worker): every later look stays within the budget, and the bulk
        # copy finishes with usage and an ETA in each MailboxSync's status.
        runner = d.JobRunnerProcess(kube, [namespace], tmp_path).start()

        def bulk_done() -> dict[str, Any] | None:
            _check_budget(_active(kube, namespace))
            status = d.migration(kube, namespace, NAME).get("status") or {}
            bulk = d.condition({"status": status}, "BulkCopied") or {}
            return status if bulk.get("status") == "True" else None

        st = d.wait_for(bulk_done, 200, "bulk copy under the budget")
        assert st["totals"]["copiedMessages"] == sum(org.messages.values())
        assert len(d.worker_jobs(kube, namespace, NAME)) >= 4  # every batch ran, two at most at once
        syncs = d.get(kube, "mailboxsyncs.mailferry.io", namespace)["items"]
        for mbs in syncs:
            status = mbs["status"]
            assert sum(b["bytes"] for b in status["usage"]) == status["totals"]["bytes"] > 0
            assert status["etaReason"] == "Done" and status["etaSeconds"] == 0
        table = kube.kubectl("get", "mbs", "-n", namespace).stdout
        assert "ETA" in table.splitlines()[0].split()
    finally:
        operator.stop()
        if runner is not None:
            runner.stop()
        kube.kubectl(
            "delete", "jobs,mailboxsyncs.mailferry.io", "--all", "-n", namespace, "--wait=false", check=False
        )
