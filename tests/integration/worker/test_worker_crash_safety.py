"""Crash safety: kill -9 at 10 moments, Dovecot restarts, UIDVALIDITY reset: nothing lost or doubled."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import mfw_harness as h

from chaos.mailrun import DestCounter
from fixtures.dovecot import Dovecot, DovecotPair
from fixtures.kubeapi import KubeAPI

FOLDERS = {"INBOX": 900, "Archive": 300, "Work/Reports": 300, "Ünï": 150}


def _setup(
    kube: KubeAPI, namespace: str, pair: DovecotPair, tmp: Path, name: str
) -> tuple[str, dict[str, str], int]:
    user, _box, total = h.pair_box(kube, namespace, pair, tmp, name, FOLDERS, connectionsPerMailbox=2)
    env = h.worker_env(kube, namespace, [name], tmp / "secrets", None, MAILFERRY_MAX_RETRIES="6")
    return user, env, total


def _assert_exact(pair: DovecotPair, user: str, total: int) -> None:
    rc, out = h.verify(pair.source, pair.destination, user)
    print(out)
    assert rc == 0, out
    assert f"source={total} destination={total} differences=0" in out


def test_kill9_at_ten_moments_then_rerun_loses_and_duplicates_nothing(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    user, env, total = _setup(kube, namespace, dovecot_pair, tmp_path, "killnine")
    count = DestCounter(dovecot_pair.destination, user, list(FOLDERS))
    fractions = [0.0, 0.03, 0.08, 0.15, 0.25, 0.35, 0.5, 0.62, 0.75, 0.9]
    killed_mid_copy = 0
    try:
        for i, frac in enumerate(fractions):
            target = int(total * frac)
            before = count()
            p = h.start_worker(env, tmp_path / f"worker-{i}.log")
            deadline = time.monotonic() + 120
            while p.poll() is None and time.monotonic() < deadline:
                if count() >= max(target, before + 1 if frac > 0 else 0):
                    break
                time.sleep(0.002)
            running = p.poll() is None
            if running:  # a run that finished first was reaped by poll(): nothing left to kill
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
            after = count()
            print(f"kill {i}: target={target} before={before} after={after} killed_running={running}")
            killed_mid_copy += running and 0 < after < total
        assert killed_mid_copy >= 8, f"only {killed_mid_copy} kills landed during the copy"
        cp = h.run_worker(env)
        assert cp.returncode == 0, cp.stderr[-3000:]
    finally:
        count.close()
    _assert_exact(dovecot_pair, user, total)
    st = kube.get("mailboxsyncs.mailferry.io", "killnine", namespace)["status"]
    assert st["phase"] == "Synced"
    assert st["totals"]["copied"] == total
    assert st["attempts"] >= 2  # kills before the first status write do not count


def _uidnext(d: Dovecot, user: str, folder: str) -> int:
    with d.connect_as(user) as c:
        typ, data = c.status(f'"{folder}"', "(UIDNEXT)")
        assert typ == "OK" and isinstance(data[0], bytes), data
        return int(data[0].decode().rsplit("UIDNEXT", 1)[1].strip(" ()"))


def test_new_process_after_kill_rematches_only_above_the_checkpoint(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    """kill -9 mid-copy, then a new process: it compares only source UIDs above lastUid with destination
    UIDs at/above the checkpoint's destUidNext (not the whole folder), and still ends exact."""
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"tail-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = h.bulk_corpus(src, user, {"INBOX": 4000}, size=3000)
    mb = h.user_mailboxsync(
        kube, namespace, "tail", user, h.endpoint(src, "s"), h.endpoint(dst, "d"), tmp_path / "secrets"
    )
    env = h.worker_env(kube, namespace, ["tail"], tmp_path / "secrets", None)

    def inbox() -> dict[str, Any]:
        return {f["name"]: f for f in mb.status().get("folders", [])}.get("INBOX", {})

    # Kill past 40 %, once a checkpoint is stored (checkpoints with the destination floor are stored at
    # most once a second, so the stored one lags the copy a little: that lag is what the rerun re-matches;
    # a fast copy could reach any fixed share before the first one, so the kill waits for it).
    count = DestCounter(dst, user, ["INBOX"])
    try:
        p = h.start_worker(env, tmp_path / "killed.log")
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            if count() >= total * 0.4 and inbox().get("lastUid"):
                break
            time.sleep(0.002)
        assert p.poll() is None, "the worker finished before the kill"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        count.close()
    st = mb.status()
    ck = inbox()
    # Dovecot may still commit the MULTIAPPEND that was in flight at the kill: wait until it has.
    top = _uidnext(dst, user, "INBOX")
    for _ in range(20):
        time.sleep(0.5)
        before, top = top, _uidnext(dst, user, "INBOX")
        if top == before:
            break
    print(f"killed with {top - 1}/{total} on the destination; checkpoint {ck}")
    assert st["phase"] != "Synced"
    assert 0 < ck["lastUid"] < total and ck["destUidNext"] > 1, ck
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    rematch = [e for e in h.events(cp.stderr) if e.get("event") == "rematch"]
    print(f"rerun: {rematch}")
    assert len(rematch) == 1, rematch
    ev = rematch[0]
    assert ev["partial"] is True, ev
    assert (ev["source_from"], ev["dest_from"]) == (ck["lastUid"] + 1, ck["destUidNext"])
    # Dovecot UIDs here are dense (no expunges): exactly the messages above the floor were read.
    assert ev["dest_meta"] == top - ck["destUidNext"] < top - 1
    _assert_exact(dovecot_pair, user, total)
    assert mb.status()["totals"]["copied"] == total


def test_destination_and_source_restart_mid_copy(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    user, env, total = _setup(kube, namespace, dovecot_pair, tmp_path, "restart")
    count = DestCounter(dovecot_pair.destination, user, list(FOLDERS))
    restarted = []
    try:
        p = h.start_worker(env, tmp_path / "worker.log")
        for server, frac in ((dovecot_pair.destination, 0.3), (dovecot_pair.source, 0.6)):
            deadline = time.monotonic() + 120
            while p.poll() is None and time.monotonic() < deadline and count() < total * frac:
                time.sleep(0.002)
            if p.poll() is not None:
                break
            server.kill()  # every Dovecot process at once: the worker's connections drop mid-command
            server.start()
            count.conn = None
            restarted.append(server.name)
        assert restarted, "worker finished before the first restart point"
        rc = p.wait(timeout=180)
        assert rc in (0, 1)
        if rc == 1:
            cp = h.run_worker(env)
            assert cp.returncode == 0, cp.stderr[-3000:]
    finally:
        count.close()
    log = (tmp_path / "worker.log").read_text()
    assert '"folder_retry"' in log, log[-3000:]
    # An in-run retry re-matches only what this process appended since its mark, not the whole folder.
    rematches = [e for e in h.events(log) if e.get("event") == "rematch"]
    assert any(e["partial"] for e in rematches), rematches
    _assert_exact(dovecot_pair, user, total)


def test_uidvalidity_reset_rematches_without_duplicates(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    user = f"uidv-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    h.append(src, user, "Proj", [h.message(f"p {i}") for i in range(30)])
    h.append(src, user, "Proj", [h.message("no id", msgid=False)], flags="\\Flagged")
    mb = h.user_mailboxsync(
        kube,
        namespace,
        "uidv",
        user,
        h.endpoint(src, "s"),
        h.endpoint(dst, "d"),
        tmp_path / "secrets",
    )
    env = h.worker_env(kube, namespace, ["uidv"], tmp_path / "secrets", None)
    assert h.run_worker(env).returncode == 0
    old = {f["name"]: f for f in mb.status()["folders"]}["Proj"]["uidValidity"]
    # Recreate the folder on the source: same messages, new UIDVALIDITY and UIDs, plus two new ones.
    with src.connect_as(user) as c:
        c.create('"ProjTmp"')
        c.select('"Proj"')
        c.uid("COPY", "1:*", '"ProjTmp"')
        c.close()
        c.delete('"Proj"')
        c.rename('"ProjTmp"', '"Proj"')
    h.append(src, user, "Proj", [h.message("new after reset 1"), h.message("new after reset 2")])
    cp = h.run_worker(env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert any(e.get("event") == "uidvalidity_changed" for e in h.events(cp.stderr)), cp.stderr[-2000:]
    new = {f["name"]: f for f in mb.status()["folders"]}["Proj"]
    assert new["uidValidity"] != old
    rc, out = h.verify(src, dst, user)
    assert rc == 0, out
    assert "source=33 destination=33 differences=0" in out
