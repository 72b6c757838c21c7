"""The operator-fault invariants can fail: the counters used by tests/chaos/operator_faults.py and
dns_kill.py flag a rewrite of an unchanged RRset, a phase beyond its approval, a Job created before
approval and a Job created twice for one batch (pure checks, no server)."""

from __future__ import annotations

import calendar
import json
import time

from chaos.dns_kill import duplicate_writes, skipped_gates
from chaos.operator_faults import gate_checks, job_figures
from chaos.opslib import Version

MX = ("example.test.", "MX")


def _patch(content: list[str], ttl: int = 30) -> tuple[str, str, bytes, int]:
    rr = {
        "name": MX[0],
        "type": MX[1],
        "ttl": ttl,
        "changetype": "REPLACE",
        "records": [{"content": c, "disabled": False} for c in content],
    }
    return ("PATCH-applied", "/zones/example.test.", json.dumps({"rrsets": [rr]}).encode(), 204)


def test_duplicate_dns_write_is_counted() -> None:
    start = {MX: (120, ("10 mx1.old.test.",))}
    once = [_patch(["10 mx1.new.test."])]
    assert duplicate_writes(start, once) == []
    assert len(duplicate_writes(start, [*once, _patch(["10 mx1.new.test."])])) == 1  # rewritten after a kill
    assert len(duplicate_writes(start, [_patch(["10 mx1.old.test."], ttl=120)])) == 1  # no-op vs start


def _dc(rv: int, phase: str, approved: str | None, gates: list[dict[str, str]] | None = None) -> Version:
    obj = {
        "metadata": {"resourceVersion": str(rv)},
        "spec": {"targetPhase": "Enforced", **({"approvedPhase": approved} if approved else {})},
        "status": {"phase": phase, "gates": gates or []},
    }
    return Version(0.0, 0.0, "MODIFIED", obj)


def test_phase_beyond_approval_is_a_skipped_gate() -> None:
    waiting = _dc(1, "Planned", None, [{"phase": "TTLLowered", "name": "approve", "result": "Pending"}])
    assert skipped_gates([waiting, _dc(2, "TTLLowered", "TTLLowered")]) == []
    assert len(skipped_gates([waiting, _dc(2, "TTLLowered", None)])) == 1  # advanced without approval
    assert len(skipped_gates([_dc(1, "Planned", "TTLLowered"), _dc(2, "TTLLowered", "TTLLowered")])) == 1


def _job(name: str, rnd: str, batch: str, created: str, failed: bool = False) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"mailferry.io/round": rnd, "mailferry.io/batch": batch},
        },
        "status": {"failed": 1} if failed else {"succeeded": 1},
    }


def test_duplicate_and_early_jobs_are_counted() -> None:
    a = _job("m-r1-b0", "1", "0", "2026-11-25T18:00:05Z")
    assert job_figures([a])["duplicate_jobs"] == 0
    assert job_figures([a, _job("m-r1-b0-x", "1", "0", "2026-11-25T18:00:06Z")])["duplicate_jobs"] == 1
    retry = [_job("m-r1-b0", "1", "0", "2026-11-25T18:00:05Z", failed=True), _job("m-r1-b0-a1", "1", "0", "")]
    assert job_figures(retry)["duplicate_jobs"] == 0  # a retry after a failure is not a duplicate
    approved = calendar.timegm(time.strptime("2026-11-25T18:00:10", "%Y-%m-%dT%H:%M:%S"))
    gates = gate_checks([], [a], approved, None, 1)
    assert gates["Syncing"] == ["Job m-r1-b0 created before approval"]
