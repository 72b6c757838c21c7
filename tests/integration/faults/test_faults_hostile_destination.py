"""A hostile destination during APPEND, through the whole worker: a proxy in front of the real destination
Dovecot misbehaves on APPEND only (``chaos.hostile_imap.HostileDestination``). Each case: a typed error
or a correct retry, the worker process ends, and a rerun straight against the real Dovecot leaves 0 lost,
0 duplicated (counted by Message-ID on both servers).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

from chaos.hostile_imap import HostileDestination
from chaos.mailrun import HUNG, WorkerRun, compare, corpus, endpoint, events
from fixtures.dovecot import DovecotPair

FOLDERS = {"INBOX": 150, "Archive": 40}

# behaviour, LITERAL+ offered, how many APPENDs misbehave (None: all), what the hostile run must end with
CASES: list[tuple[str, bool, int | None, str]] = [
    ("no_continuation", False, None, "transient"),
    ("ok_before_literal", False, None, "transient"),
    ("no_mid_multiappend", False, None, "synced"),
    ("no_mid_multiappend", True, None, "synced"),
    ("drop_after_literal", False, 3, "completes"),
    ("drop_after_literal", True, 3, "completes"),
    # The server stores the dropped connection's APPEND while the retry matches (at its first NOOP/APPEND)
    ("late_commit", False, 1, "completes"),
    ("late_commit", True, 1, "completes"),
    # ... only once the retry's first APPEND arrives: the late twins are found after the copy
    ("late_commit_after_check", False, 1, "completes"),
    ("late_commit_after_check", True, 1, "completes"),
]


def _point_destination_at(run: WorkerRun, port: int) -> None:
    path = run.status_dir / f"{run.name}.json"
    doc = json.loads(path.read_text())
    doc["spec"]["destination"]["endpoint"]["port"] = port
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("behaviour", "literal_plus", "times", "outcome"),
    CASES,
    ids=[f"{c[0]}-{'literalplus' if c[1] else 'sync'}" for c in CASES],
)
def test_hostile_destination_during_append(
    behaviour: str,
    literal_plus: bool,
    times: int | None,
    outcome: str,
    dovecot_pair: DovecotPair,
    tmp_path: Path,
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"hd-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = corpus(src, user, FOLDERS)
    with HostileDestination(dst.port, behaviour, literal_plus=literal_plus, times=times) as proxy:
        run = WorkerRun(
            tmp_path,
            "hd",
            user,
            endpoint("127.0.0.1", src.port, read_timeout=10),
            endpoint("127.0.0.1", proxy.port, read_timeout=3),
            "pw-src",
            "pw-dst",
            connectionsPerMailbox=1,
        )
        run.hang_seconds = 120
        t0 = time.monotonic()
        if outcome == "completes":
            runs, _, codes = run.run_until_done(max_runs=5)
        else:
            codes = [run.run().returncode]
            runs = 1
        secs = time.monotonic() - t0
    st = run.status()
    log = "\n".join(run.logs)
    errors = [
        (e.get("event"), e.get("reason"), str(e.get("error"))[:80])
        for e in events(log)
        if e.get("event") in ("folder_retry", "sync_failed", "append_rejected", "multiappend_rejected")
    ]
    print(
        f"{behaviour} (LITERAL+ {literal_plus}): runs={runs} exit codes={codes} seconds={secs:.1f} "
        f"appends seen={proxy.appends} misbehaved={proxy.misbehaved} phase={st.get('phase')} "
        f"lastError={st.get('lastError')} copied={st.get('totals', {}).get('copied')}"
    )
    print(f"  worker errors: {errors[:6]}")
    assert HUNG not in codes, run.hangs[-1][-3000:]
    assert proxy.misbehaved >= 1, "the proxy never misbehaved: nothing was tested"
    if behaviour.startswith("late_commit"):
        changed = [e for e in events(log) if e.get("event") == "destination_changed"]
        removed = [e for e in events(log) if e.get("event") == "late_twins_removed"]
        print(
            f"  late commits: {proxy.late_commits}, destination_changed: {len(changed)}, "
            f"late twins removed: {sum(e['count'] for e in removed)}"
        )
        assert proxy.late_commits == 1
        if behaviour == "late_commit_after_check":  # only the check after the copy can see them
            assert sum(e["count"] for e in removed) >= 1, log[-3000:]
        else:
            assert changed or removed, log[-3000:]
    if outcome == "transient":
        assert codes == [1], log[-3000:]  # transient: the Job retries
        assert st["lastError"]["reason"] in {"ConnectionFailed", "ProtocolError"}, st["lastError"]
        diff = compare(src, dst, user)
        # Nothing counted that the destination does not hold.
        assert st["totals"]["copied"] <= diff.destination, (st["totals"], diff)
    else:
        assert codes[-1] == 0, log[-3000:]
        diff = compare(src, dst, user)
        print(f"  through the hostile destination: {diff}")
        assert (diff.lost, diff.duplicated) == (0, 0), diff.detail
        assert st["totals"]["failed"] == 0, st["totals"]

    # The Job retried against a well-behaved destination: the same Dovecot, no proxy.
    _point_destination_at(run, dst.port)
    runs, secs, codes = run.run_until_done(max_runs=3)
    diff = compare(src, dst, user)
    print(f"  rerun against Dovecot: runs={runs} exit codes={codes} seconds={secs:.1f} {diff}")
    assert codes[-1] == 0, run.logs[-1][-3000:]
    assert diff.source == total
    assert (diff.lost, diff.duplicated) == (0, 0), diff.detail
    st = run.status()
    assert st["phase"] == "Synced"
    assert st["totals"]["copied"] == total, st["totals"]
