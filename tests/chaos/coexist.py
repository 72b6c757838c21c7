"""`make chaos` scenarios of issue 13: one writer per mailbox, and weeks of coexistence mirrored.

one-writer  K workers (2 and 5) started at once on one MailboxSync, REPEAT times on each store (file lock,
            and the Lease on a real API server); then a worker SIGSTOPped past its Lease and resumed.
            Figures: runs, exactly-one-copier count, lost, duplicated, writes after resuming.
coexist     ROUNDS delta rounds of random mailbox life on the source (expunge, move between folders with
            and without Message-ID, flags, new mail) and mail delivered to the destination itself, on a
            source with QRESYNC and on one announcing neither QRESYNC nor CONDSTORE; in a third of the
            rounds the worker is killed (-9) at a random moment of the round and run again. After every
            round: destination = source + its own mail. At the end a source folder emptied at once must
            trip the safety cap (DeletionsHeld) with nothing removed.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.mailbox_ops import add, expunge, flag, folder_uids, mirror_differences, move, without_message_id
from chaos.mailrun import DestCounter, WorkerRun, compare, corpus, endpoint, events, message_ids
from fixtures.dovecot import Dovecot, make_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "worker"))
import mfw_harness as h

FOLDERS = {"INBOX": 450, "Archive": 150}
PLAIN_CAPS = "IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE ESEARCH ENABLE MULTIAPPEND"
KILL_POINTS = ("orphans_found", "copies_moved", "copies_deleted", "folder_synced", None)


def _outcomes(logs: list[Path]) -> list[tuple[int, int]]:
    out = []
    for log in logs:
        done = [e for e in events(log.read_text(errors="replace")) if e.get("event") == "batch_finished"]
        out.append((done[-1]["exit_code"], done[-1]["copied"]) if done else (-1, 0))
    return out


def _at_once(starts: list[Any], logs: list[Path]) -> list[tuple[int, int]]:
    for p in starts:
        p.wait(timeout=300)
    return _outcomes(logs)


def one_writer(
    kube: Any, namespace: str, src: Dovecot, dst: Dovecot, work: Path, repeat: int
) -> dict[str, Any]:
    res: dict[str, Any] = {"runs": 0, "one_copier": 0, "overlapped": 0, "lost": 0, "duplicated": 0}
    n = 0
    for store in ("file", "api"):
        for k in (2, 5):
            for _ in range(repeat):
                n += 1
                name = f"ow{n}"
                user = f"{name}@chaos.test"
                src.add_user(user, "pw-src")
                dst.add_user(user, "pw-dst")
                total = corpus(src, user, FOLDERS, size=2000, tag=name)
                d = work / name
                logs = [d / f"w{i}.log" for i in range(k)]
                if store == "file":
                    run = WorkerRun(
                        d,
                        name,
                        user,
                        endpoint("127.0.0.1", src.port),
                        endpoint("127.0.0.1", dst.port),
                        "pw-src",
                        "pw-dst",
                    )
                    procs = [run.start(log) for log in logs]
                else:
                    d.mkdir(parents=True)
                    h.user_mailboxsync(
                        kube, namespace, name, user, h.endpoint(src, "s"), h.endpoint(dst, "d"), d / "secrets"
                    )
                    env = h.worker_env(kube, namespace, [name], d / "secrets", None)
                    procs = [
                        h.start_worker(dict(env, HOSTNAME=f"pod-{i}"), log) for i, log in enumerate(logs)
                    ]
                got = _at_once(procs, logs)
                diff = compare(src, dst, user)
                copiers = [c for _, c in got if c]
                res["runs"] += 1
                res["one_copier"] += copiers == [total]
                res["overlapped"] += any(
                    "lease_wait" in t or "already_running" in t for t in (x.read_text() for x in logs)
                )
                res["lost"] += diff.lost
                res["duplicated"] += diff.duplicated
                res.setdefault("detail", []).append({"store": store, "workers": k, "outcomes": got})
    res["sigstop"] = [_sigstop(kube, namespace, src, dst, work / f"stop{i}", i) for i in range(repeat)]
    return res


def _sigstop(kube: Any, namespace: str, src: Dovecot, dst: Dovecot, d: Path, i: int) -> dict[str, Any]:
    name, user = f"stop{i}", f"stop{i}@chaos.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = corpus(src, user, FOLDERS, size=2000, tag=name)
    d.mkdir(parents=True)
    h.user_mailboxsync(kube, namespace, name, user, h.endpoint(src, "s"), h.endpoint(dst, "d"), d / "secrets")
    env = h.worker_env(kube, namespace, [name], d / "secrets", None, MAILFERRY_LEASE_SECONDS="5")
    count = DestCounter(dst, user, list(FOLDERS))
    try:
        stale = h.start_worker(dict(env, HOSTNAME="stale"), d / "stale.log")
        target = random.randint(20, total // 2)
        while count() < target and stale.poll() is None:
            time.sleep(0.002)
        os.kill(stale.pid, signal.SIGSTOP)
        time.sleep(6)
        second = h.run_worker(dict(env, HOSTNAME="new"))
        after = count()
        os.kill(stale.pid, signal.SIGCONT)
        code = stale.wait(timeout=120)
        time.sleep(0.5)
        diff = compare(src, dst, user)
        return {
            "stopped_at": target,
            "second_exit": second.returncode,
            "stale_exit": code,
            "writes_after_resume": count() - after,
            "lost": diff.lost,
            "duplicated": diff.duplicated,
        }
    finally:
        count.close()


def coexist(
    src: Dovecot, dst: Dovecot, work: Path, rounds: int, rng: random.Random, tag: str
) -> dict[str, Any]:
    user = f"{tag}@chaos.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    names = ("INBOX", "Archive", "Work", "Lists")
    for f in names:
        add(src, user, f, [make_message(f"{f} {i}", domain="chaos.test") for i in range(60)])
    add(src, user, "Work", [without_message_id(f"{tag} no-id {i}") for i in range(6)])
    run = WorkerRun(
        work / tag,
        tag,
        user,
        endpoint("127.0.0.1", src.port),
        endpoint("127.0.0.1", dst.port),
        "pw-src",
        "pw-dst",
        deletionSafety={"maxPercent": 60, "alwaysAllowed": 10},
    )
    res: dict[str, Any] = {"rounds": 0, "kills": 0, "mismatched_rounds": 0, "detail": []}
    assert run.run(MAILFERRY_ROUND="1").returncode == 0
    for r in range(2, rounds + 2):
        for _ in range(rng.randint(1, 4)):
            f, to = rng.sample(names, 2)
            have = folder_uids(src, user, f)
            if not have:
                continue
            pick = rng.sample(have, min(len(have), rng.randint(1, 4)))
            action = rng.choice(("expunge", "move", "move", "flag", "new"))
            if action == "expunge":
                expunge(src, user, f, pick)
            elif action == "move":
                move(src, user, f, pick, to)
            elif action == "flag":
                flag(src, user, f, pick)
            else:
                add(src, user, f, [make_message(f"{tag} r{r} {i}", domain="chaos.test") for i in range(3)])
        if rng.random() < 0.3:
            add(dst, user, "INBOX", [make_message(f"{tag} direct r{r}", domain="dst.chaos.test")])
        point = rng.choice(KILL_POINTS)
        if rng.random() < 0.35:
            log = work / tag / f"kill{r}.log"
            p = run.start(log, MAILFERRY_ROUND=str(r))
            deadline = time.monotonic() + rng.uniform(0.3, 3.0)
            while p.poll() is None and (
                (point is not None and point not in log.read_text(errors="replace"))
                or (point is None and time.monotonic() < deadline)
            ):
                time.sleep(0.002)
            res["kills"] += p.poll() is None
            p.kill()
            p.wait()
        done = run.run(MAILFERRY_ROUND=str(r))
        direct = Counter(message_ids(dst, user).get("INBOX", Counter())) - message_ids(src, user).get(
            "INBOX", Counter()
        )
        diff = mirror_differences(src, dst, user, +direct)
        res["rounds"] += 1
        res["mismatched_rounds"] += bool(diff) or done.returncode != 0
        if diff:
            res["detail"].append({"round": r, "diff": diff})
    st = run.status()
    res["deleted"], res["moved"] = st["totals"]["deleted"], st["totals"]["moved"]
    victim = "Lists"
    before = message_ids(dst, user).get(victim, Counter())
    expunge(src, user, victim, folder_uids(src, user, victim))
    run.run(MAILFERRY_ROUND=str(rounds + 2))
    held: dict[str, Any] = next((c for c in run.status()["conditions"] if c["type"] == "DeletionsHeld"), {})
    res["cap_tripped"] = (
        held.get("status") == "True" and message_ids(dst, user).get(victim, Counter()) == before
    )
    return res


def scenario_coexist(args: Any, work: Path, dovecot_pair: Any) -> tuple[bool, dict[str, Any]]:
    rng = random.Random(args.seed)
    res: dict[str, Any] = {}
    for variant, caps in (("qresync", None), ("plain", PLAIN_CAPS)):
        with dovecot_pair(work / variant, src_caps=caps) as (src, dst):
            res[variant] = coexist(src, dst, work / variant, args.rounds, rng, f"coex-{variant}")
    ok = all(v["mismatched_rounds"] == 0 and v["cap_tripped"] for v in res.values())
    return ok, res


def ok_one_writer(res: dict[str, Any]) -> bool:
    stops = res["sigstop"]
    return (
        res["lost"] == 0
        and res["duplicated"] == 0
        and res["one_copier"] == res["runs"]
        and all(s["stale_exit"] == 3 and s["writes_after_resume"] == 0 and not s["duplicated"] for s in stops)
    )
