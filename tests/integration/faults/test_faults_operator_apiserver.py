"""kube-apiserver killed (-9) and started again on the same port and etcd while the operator runs (the
operator process itself is never restarted): during a MailMigration and during a DnsCutover. It
reconnects, creates no Job twice, writes no DNS record twice, skips no gate, and converges. Short version
of `make chaos CHAOS_ARGS="--scenario apiserver-restart"`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from chaos.dns_kill import dns_faults
from chaos.operator_faults import mm_apiserver_restart
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS


def test_apiserver_restarted_during_a_migration(
    kube_factory: Callable[..., KubeAPI], dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    kube = kube_factory()
    kube.kubectl("create", "namespace", "restart")
    ok, res = mm_apiserver_restart(
        kube, "restart", dovecot_pair.source, dovecot_pair.destination, tmp_path, restarts=2, mailboxes=6
    )
    print(json.dumps(res))
    assert res["operator_pid_unchanged"], "the operator process died with the API server"
    assert res["duplicate_jobs"] == 0
    assert res["jobs_rerun_without_a_pod_failure"] == []  # a worker pod that failed may run again
    assert (res["lost"], res["duplicated"]) == (0, 0)
    assert ok, res


def test_apiserver_restarted_during_a_dnscutover(
    kube_factory: Callable[..., KubeAPI], powerdns: PowerDNS, tmp_path: Path
) -> None:
    kube = kube_factory()
    kube.kubectl("create", "namespace", "restart-dns")
    ok, res = dns_faults(kube, "restart-dns", powerdns, tmp_path, fault="apiserver", faults=4, seed=3)
    print(json.dumps({k: v for k, v in res.items() if k != "faults_detail"}))
    assert res["operator_pid_unchanged"]
    assert res["duplicate_dns_writes"] == 0, res["duplicate_dns_write_details"]
    assert res["skipped_gates"] == 0, res["skipped_gate_details"]
    assert res["zone_restored_after_rollback"]
    assert ok, res
