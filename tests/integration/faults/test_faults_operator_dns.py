"""The operator killed (-9) at random in every DnsCutover phase on real PowerDNS, forward to Enforced
and during the rollback: 0 duplicate DNS writes, 0 skipped gates, the zone restored exactly; once paced by
spec gates (manual approvals), once by the built-in gates alone with the drain after the switch. Short
version of `make chaos CHAOS_ARGS="--scenario dns-kill"` (tests/chaos/dns_kill.py)."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.dns_kill import dns_builtin_faults, dns_faults
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS


def test_operator_killed_in_each_dnscutover_phase(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    ok, res = dns_faults(kube, namespace, powerdns, tmp_path, fault="kill", faults=6, seed=5)
    print(json.dumps({k: v for k, v in res.items() if k != "faults_detail"}))
    assert res["faults"] == 6
    assert res["duplicate_dns_writes"] == 0, res["duplicate_dns_write_details"]
    assert res["skipped_gates"] == 0, res["skipped_gate_details"]
    assert res["zone_restored_after_rollback"]
    assert ok, res


def test_operator_killed_while_builtin_gates_hold_and_during_the_drain(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    """No spec gate: kills while minDwell/oldTtl hold, during the drain, during the rollback; no step
    sooner than its gate's condition allows (status timestamps), the old MX leave MTA-STS after drainUntil."""
    ok, res = dns_builtin_faults(kube, namespace, powerdns, tmp_path, faults=6, seed=5)
    print(json.dumps({k: v for k, v in res.items() if k != "faults_detail"}))
    assert res["faults"] == 6 and res["faults_during_drain"] >= 1
    assert res["duplicate_dns_writes"] == 0, res["duplicate_dns_write_details"]
    assert res["skipped_gates"] == 0, res["skipped_gate_details"]
    assert res["drained_policy_announced"] and res["zone_restored_after_rollback"]
    assert ok, res
