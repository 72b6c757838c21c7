"""The operator killed (-9) in every MailMigration phase, Validating and AwaitingApproval included:
no duplicate Job, no Job run twice, no gate skipped, nothing lost or duplicated. Short version of
`make chaos CHAOS_ARGS="--scenario operator-phases"` (tests/chaos/operator_faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.operator_faults import mm_phase_kills
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI


def test_operator_killed_in_each_migration_phase(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    ok, res = mm_phase_kills(
        kube,
        namespace,
        dovecot_pair.source,
        dovecot_pair.destination,
        tmp_path,
        kills=6,
        mailboxes=6,
        per_mailbox=8,
        login_delay=1.0,
        probe_concurrency=2,
        seed=11,
    )
    print(json.dumps({k: v for k, v in res.items() if k != "kill_detail"}))
    assert res["kills_per_phase"]["Validating"] >= 1, res["kill_detail"]
    assert res["kills_per_phase"]["AwaitingApproval"] >= 1, res["kill_detail"]
    assert res["duplicate_jobs"] == 0
    assert res["jobs_run_more_than_once"] == []
    assert res["skipped_gates"] == 0, res["skipped_gate_details"]
    assert (res["lost"], res["duplicated"]) == (0, 0)
    assert ok, res
