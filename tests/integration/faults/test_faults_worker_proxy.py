"""Worker faults on the real Dovecot pair: connections cut at random (TCP fault proxy), [THROTTLED] and BYE
injected, kill -9 during a delta round. Rerun like the Job controller would: 0 lost, 0 duplicated.

Figures (runs, cuts, seconds to recover) are printed (``pytest -s``) and collected in docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.faultproxy import FaultProxy
from chaos.mailrun import DestCounter, WorkerRun, compare, corpus, endpoint, events
from fixtures.dovecot import DovecotPair

FOLDERS = {"INBOX": 200, "Archive": 80, "Work/Reports": 60}


@pytest.fixture
def proxies(dovecot_pair: DovecotPair) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    src = FaultProxy("127.0.0.1", dovecot_pair.source.port).start()
    dst = FaultProxy("127.0.0.1", dovecot_pair.destination.port).start()
    try:
        yield src, dst
    finally:
        src.stop()
        dst.stop()


def _mailbox(
    pair: DovecotPair, tmp: Path, name: str, sp: FaultProxy, dp: FaultProxy
) -> tuple[str, WorkerRun, int]:
    user = f"{name}-{secrets.token_hex(3)}@example.test"
    pair.source.add_user(user, "pw-src")
    pair.destination.add_user(user, "pw-dst")
    total = corpus(pair.source, user, FOLDERS)
    run = WorkerRun(
        tmp,
        name,
        user,
        endpoint("127.0.0.1", sp.port, read_timeout=5),
        endpoint("127.0.0.1", dp.port, read_timeout=5),
        "pw-src",
        "pw-dst",
        connectionsPerMailbox=2,
    )
    return user, run, total


def test_random_cuts_during_bulk_and_delta_lose_and_duplicate_nothing(
    dovecot_pair: DovecotPair, proxies: tuple[FaultProxy, FaultProxy], tmp_path: Path
) -> None:
    sp, dp = proxies
    user, run, total = _mailbox(dovecot_pair, tmp_path, "cuts", sp, dp)
    # Every connection is reset after 30 kB..600 kB (one MULTIAPPEND chunk is ~300 kB).
    sp.random_cuts(30_000, 600_000, seed=1)
    dp.random_cuts(30_000, 600_000, seed=2)
    runs, secs, codes = run.run_until_done()
    cuts_bulk = sp.stats.cuts + dp.stats.cuts
    print(f"bulk: {total} messages, runs={runs} exit codes={codes} cuts={cuts_bulk} seconds={secs:.1f}")
    assert codes[-1] == 0, run.logs[-1][-3000:]
    assert cuts_bulk >= 3, "the proxy cut too little to prove anything"
    diff = compare(dovecot_pair.source, dovecot_pair.destination, user)
    print(f"bulk: {diff}")
    assert (diff.lost, diff.duplicated) == (0, 0), diff.detail
    # A new process (run 2, 3, ...) re-matches from the stored checkpoint: partial, not the whole folder.
    later = _rematches(run.logs[1:])
    print(f"bulk: re-matches in later runs: {_summary(later)}")
    assert runs == 1 or any(e["partial"] for e in later), later

    added = corpus(dovecot_pair.source, user, {"INBOX": 60, "Archive": 20}, tag="delta")
    runs, secs, codes = run.run_until_done(MAILFERRY_ROUND="2")
    cuts_delta = sp.stats.cuts + dp.stats.cuts - cuts_bulk
    print(f"delta: +{added} messages, runs={runs} exit codes={codes} cuts={cuts_delta} seconds={secs:.1f}")
    assert codes[-1] == 0, run.logs[-1][-3000:]
    diff = compare(dovecot_pair.source, dovecot_pair.destination, user)
    print(f"delta: {diff}")
    assert diff.source == total + added
    assert (diff.lost, diff.duplicated) == (0, 0), diff.detail
    assert run.status()["phase"] == "Synced"


def _rematches(logs: list[str]) -> list[dict[str, Any]]:
    return [e for log in logs for e in events(log) if e.get("event") == "rematch"]


def _summary(rematches: list[dict[str, Any]]) -> dict[str, int]:
    part = [e for e in rematches if e["partial"]]
    full = [e for e in rematches if not e["partial"]]
    return {
        "partial": len(part),
        "full": len(full),
        "dest_meta_partial": sum(e["dest_meta"] for e in part),
        "dest_meta_full": sum(e["dest_meta"] for e in full),
    }


def test_throttled_and_bye_injected_then_completes(
    dovecot_pair: DovecotPair, proxies: tuple[FaultProxy, FaultProxy], tmp_path: Path
) -> None:
    sp, dp = proxies
    user, run, _ = _mailbox(dovecot_pair, tmp_path, "throttle", sp, dp)
    sp.inject_throttle(1)  # the first interceptable source command (LIST): NO [THROTTLED]
    first = run.run()
    assert first.returncode == 1, first.stderr[-3000:]  # transient: the Job retries
    st = run.status()
    print(f"throttled run: phase={st.get('phase')} lastError={st.get('lastError')}")
    assert st["phase"] == "Throttled", st
    assert st["lastError"]["reason"] == "Throttled", st
    assert "Suggested Backoff Time" in st["lastError"]["message"]
    assert {c["type"]: c["status"] for c in st["conditions"]}.get("Throttled") == "True", st
    dp.inject_throttle(1)  # at least one of each for sure, whatever the worker's command count
    sp.inject_bye(1)
    sp.inject_probability(throttle=0.15, bye=0.08, seed=4)
    dp.inject_probability(throttle=0.15, bye=0.08, seed=5)
    runs, secs, codes = run.run_until_done()
    injected = {
        "throttles": sp.stats.throttles + dp.stats.throttles,
        "byes": sp.stats.byes + dp.stats.byes,
    }
    print(f"throttle/bye: runs={runs} exit codes={codes} injected={injected} seconds={secs:.1f}")
    assert codes[-1] == 0, run.logs[-1][-3000:]
    assert injected["throttles"] >= 2 and injected["byes"] >= 1, injected
    log = "\n".join(run.logs)
    retries = [e.get("reason") for e in events(log) if e.get("event") in ("folder_retry", "connect_retry")]
    print(f"throttle/bye: in-run retries by reason: { {r: retries.count(r) for r in set(retries)} }")
    assert retries, "no in-run retry: the faults were not injected mid-transfer"
    diff = compare(dovecot_pair.source, dovecot_pair.destination, user)
    print(f"throttle/bye: {diff}")
    assert (diff.lost, diff.duplicated) == (0, 0), diff.detail
    st = run.status()
    assert st["phase"] == "Synced"
    assert st.get("lastError") is None and st.get("throttle") is None, st


def test_kill9_three_times_during_delta_round(
    dovecot_pair: DovecotPair, proxies: tuple[FaultProxy, FaultProxy], tmp_path: Path
) -> None:
    sp, dp = proxies
    user, run, total = _mailbox(dovecot_pair, tmp_path, "killdelta", sp, dp)
    assert run.run().returncode == 0, run.logs[-1][-3000:]
    added = corpus(dovecot_pair.source, user, {"INBOX": 250, "Archive": 100}, tag="delta")
    rng = random.Random(11)
    count = DestCounter(dovecot_pair.destination, user, list(FOLDERS))
    kills = 0
    t0 = time.monotonic()
    try:
        for i, frac in enumerate(sorted(rng.uniform(0.05, 0.9) for _ in range(3))):
            target = total + int(added * frac)  # kill once the delta has copied this far
            p = run.start(tmp_path / f"kill-{i}.log", MAILFERRY_ROUND="2")
            while p.poll() is None and count() < target:
                time.sleep(0.005)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                kills += 1
            p.wait()
    finally:
        count.close()
    logs_before = len(run.logs)
    runs, _, codes = run.run_until_done(MAILFERRY_ROUND="2")
    recover = time.monotonic() - t0
    kill_logs = [(tmp_path / f"kill-{i}.log").read_text() for i in range(3)]
    later = _rematches(kill_logs[1:] + run.logs[logs_before:])
    print(f"kill -9 during delta: re-matches after the first kill: {_summary(later)}")
    assert later and all(e["partial"] for e in later), later
    diff = compare(dovecot_pair.source, dovecot_pair.destination, user)
    print(f"kill -9 during delta: kills={kills} reruns={runs} seconds to complete={recover:.1f} {diff}")
    assert codes[-1] == 0
    assert kills >= 1, "the worker finished before any kill landed"
    assert diff.source == total + added
    assert (diff.lost, diff.duplicated) == (0, 0), diff.detail
