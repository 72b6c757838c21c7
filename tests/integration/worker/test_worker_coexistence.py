"""Weeks of coexistence, in delta rounds on a real Dovecot pair (QRESYNC on the source): messages
expunged, moved between folders (with and without a Message-ID), flags changed and new mail on the source;
mail delivered directly to the destination.

The kill -9 test runs against a source without QRESYNC/CONDSTORE (expunges found by counting UIDs).

After the last round: destination = source + the destination's own mail, nothing else; moved messages
were moved on the destination (not appended again); a source folder emptied at once trips the safety cap
(condition DeletionsHeld, nothing removed) and `mailferry verify` tells the extra messages apart by kind.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import mfw_harness as h
import pytest

from chaos.mailbox_ops import add, expunge, mirror_differences, move, new_box, uids, without_message_id
from chaos.mailrun import WorkerRun, events, message_ids, q
from fixtures.dovecot import Dovecot, DovecotPair, make_message

FOLDERS = {"INBOX": 40, "Archive": 12, "Work": 12}


def own_mail(d: Dovecot, user: str) -> Counter[str]:
    return Counter(message_ids(d, user).get("INBOX", Counter()))


def assert_mirrored(pair: DovecotPair, user: str, direct: Counter[str]) -> None:
    """Every destination folder = its source folder, INBOX plus the destination's own mail."""
    diff = mirror_differences(pair.source, pair.destination, user, direct)
    assert not diff, diff


def run_round(run: WorkerRun, n: int) -> dict[str, Any]:
    cp = run.run(MAILFERRY_ROUND=str(n))
    assert cp.returncode == 0, cp.stderr[-4000:]
    return next(e for e in events(cp.stderr) if e.get("event") == "batch_finished")


def verify_json(pair: DovecotPair, user: str, run: WorkerRun) -> dict[str, Any]:
    src, dst = pair.source, pair.destination
    env = dict(
        os.environ,
        MF_SRC_PW=src.master_password,
        MF_DST_PW=dst.master_password,
        MF_SRC_MASTER=src.master_user,
        MF_DST_MASTER=dst.master_user,
    )
    args = [h.VERIFY, "verify", "--json", "--mailboxsync", run.name, "--status-dir", str(run.status_dir)]
    for side, d, pw, master in (
        ("source", src, "MF_SRC_PW", "MF_SRC_MASTER"),
        ("dest", dst, "MF_DST_PW", "MF_DST_MASTER"),
    ):
        args += [f"--{side}-host", "127.0.0.1", f"--{side}-port", str(d.port), f"--{side}-security", "none"]
        args += [f"--{side}-user", user, f"--{side}-password-env", pw, f"--{side}-master-user-env", master]
    cp = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert cp.returncode in (0, 1), cp.stderr
    out: dict[str, Any] = json.loads(cp.stdout)
    return out


PLAIN_CAPS = "IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE ESEARCH ENABLE MULTIAPPEND"


@pytest.fixture
def plain_source(dovecot_factory: Any) -> DovecotPair:
    """A Dovecot pair whose source announces neither QRESYNC nor CONDSTORE (the UID-count path)."""
    return DovecotPair(
        dovecot_factory(name="src-plain", imap_capability=PLAIN_CAPS), dovecot_factory(name="dst")
    )


def test_coexistence_rounds_mirror_deletions_moves_and_keep_direct_mail(
    dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    """QRESYNC on the source (Dovecot announces it): VANISHED in the SELECT says what went."""
    pair = dovecot_pair
    src, dst = pair.source, pair.destination
    user, run = new_box(src, dst, tmp_path, "coex", deletionSafety={"maxPercent": 50, "alwaysAllowed": 10})
    for folder, n in FOLDERS.items():
        add(src, user, folder, [make_message(f"{folder} {i}", domain="src.test") for i in range(n)])
    add(src, user, "Work", [without_message_id(f"no-id {i}") for i in range(3)])
    run_round(run, 1)
    add(dst, user, "INBOX", [make_message(f"direct {i}", domain="dst.test") for i in range(3)])
    direct = own_mail(dst, user) - message_ids(src, user)["INBOX"]
    assert sum(direct.values()) == 3

    with src.connect_as(user) as c:
        inbox, work = uids(c, "INBOX"), uids(c, "Work")
    expunge(src, user, "INBOX", inbox[:3])
    move(src, user, "INBOX", inbox[3:7], "Archive")
    move(src, user, "Work", work[-2:], "Archive")  # two of the messages without Message-ID
    with src.connect_as(user) as c:
        c.select(q("Archive"))
        c.uid("STORE", "1:2", "+FLAGS", "(\\Flagged)")
    add(src, user, "INBOX", [make_message(f"new {i}", domain="src.test") for i in range(2)])
    done = run_round(run, 2)
    assert done["copied"] == 2, done  # the new mail only: moved messages were moved, not appended
    assert_mirrored(pair, user, direct)
    st = run.status()
    assert st["totals"]["deleted"] == 3 and st["totals"]["moved"] == 6, st["totals"]

    # Round 3: more of the same, and a message expunged right after it was moved.
    with src.connect_as(user) as c:
        arch = uids(c, "Archive")
    move(src, user, "Archive", arch[:2], "Work")
    expunge(src, user, "Archive", arch[-1:])
    run_round(run, 3)
    assert_mirrored(pair, user, direct)
    report = verify_json(pair, user, run)
    assert report["differences"] == 0, report
    inbox_report = next(f for f in report["folders"] if f["source"] == "INBOX")
    assert inbox_report["extraByKind"] == {"copies": 0, "direct": 3, "unknown": 0}

    # A source outage empties Archive: more than the cap, so nothing is removed, the condition says so.
    with src.connect_as(user) as c:
        arch = uids(c, "Archive")
    expunge(src, user, "Archive", arch)
    before = message_ids(dst, user)["Archive"]
    run_round(run, 4)
    assert message_ids(dst, user)["Archive"] == before, "the safety cap let the destination be emptied"
    st = run.status()
    held = next(c for c in st["conditions"] if c["type"] == "DeletionsHeld")
    assert held["status"] == "True" and held["reason"] == "DeletionCapExceeded", held
    assert "Archive" in held["message"]
    report = verify_json(pair, user, run)
    archive = next(f for f in report["folders"] if f["source"] == "Archive")
    assert archive["extraByKind"]["copies"] == len(arch), archive


def kill_at(run: WorkerRun, event: str, log: Path, round_: int) -> bool:
    """Start a round, SIGKILL the worker as soon as it logs ``event``; True if it was still running."""
    p = run.start(log, MAILFERRY_ROUND=str(round_))
    try:
        while p.poll() is None:
            if event in log.read_text(errors="replace"):
                break
            time.sleep(0.002)
        running = p.poll() is None
        p.kill()
        p.wait()
        return running
    finally:
        if p.poll() is None:
            p.kill()


def test_kill9_during_rounds_that_delete_and_move(plain_source: DovecotPair, tmp_path: Path) -> None:
    """Without QRESYNC/CONDSTORE on the source (expunges found by counting UIDs), kill -9 right after the
    worker found orphans, after it moved copies, after it removed copies; each time a rerun."""
    src, dst = plain_source.source, plain_source.destination
    user, run = new_box(src, dst, tmp_path, "coexkill")
    for folder, n in {"INBOX": 60, "Archive": 20, "Work": 20}.items():
        add(src, user, folder, [make_message(f"{folder} {i}", domain="src.test") for i in range(n)])
    add(src, user, "Work", [without_message_id(f"no-id {i}") for i in range(4)])
    run_round(run, 1)
    add(dst, user, "INBOX", [make_message(f"direct {i}", domain="dst.test") for i in range(2)])
    direct = own_mail(dst, user) - message_ids(src, user)["INBOX"]
    killed_running = 0
    for i, event in enumerate(("orphans_found", "copies_moved", "copies_deleted")):
        with src.connect_as(user) as c:
            inbox, work = uids(c, "INBOX"), uids(c, "Work")
        expunge(src, user, "INBOX", inbox[:3])
        move(src, user, "INBOX", inbox[3:6], "Archive")
        move(src, user, "Work", work[-1:], "Archive")
        killed_running += kill_at(run, event, tmp_path / f"kill{i}.log", 2 + i)
        run_round(run, 2 + i)  # the rerun after the kill: nothing lost, duplicated or wrongly removed
        assert_mirrored(plain_source, user, direct)
    assert killed_running >= 2, "the kills came too late to prove anything"
    totals = run.status()["totals"]
    assert totals["deleted"] + totals["moved"] > 0, totals
