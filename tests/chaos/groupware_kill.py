"""`make chaos` (contacts and calendars): kill -9 the worker at random points of a full-size first copy,
then of a delta round with many changes, additions and deletions; after every kill the next run resumes.
Invariant after the last run: `verify` finds no difference (0 lost, 0 changed) and no UID twice.

    python tests/chaos/groupware_kill.py [--contacts 500] [--events 3000] [--kills 5] [--seed 1]

Exit 1 when an invariant breaks.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from tests.bench.groupware import USER, differences, seed  # noqa: E402

from fixtures.groupware_data import contact, event  # noqa: E402
from fixtures.groupware_setup import GroupwareMailbox, groupware_mailbox  # noqa: E402
from fixtures.radicale import Radicale  # noqa: E402


def copied(mbx: GroupwareMailbox) -> int:
    try:
        return sum(c.get("copied", 0) for c in mbx.collections().values())
    except (ValueError, OSError):
        return 0  # the file is replaced atomically; a read between is a miss, not an error


def killed_runs(mbx: GroupwareMailbox, kills: int, rng: random.Random, span: int) -> list[int]:
    """Start the worker, SIGKILL it once `copied` grew by a random amount; `kills` times, then finish."""
    at: list[int] = []
    for _ in range(kills):
        target = copied(mbx) + rng.randint(1, max(2, span // (kills + 1)))
        proc = mbx.worker()
        while proc.poll() is None and copied(mbx) < target:
            time.sleep(0.01)
        if proc.poll() is not None:
            break  # finished before the kill point
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at.append(copied(mbx))
    proc = mbx.worker()
    out, _ = proc.communicate(timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(f"final worker run failed ({proc.returncode}):\n{out.decode()[-2000:]}")
    return at


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=500)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="mf-chaos-groupware-") as tmp:
        work = Path(tmp)
        (work / "s").mkdir()
        (work / "d").mkdir()
        src, dst = (
            Radicale("chaos-source", work / "s").start(),
            Radicale("chaos-destination", work / "d").start(),
        )
        try:
            book, cal = seed(src, args.contacts, args.events)
            mbx = groupware_mailbox(work / "mbx", src, dst, USER)
            items = args.contacts + 10 + args.events
            started = time.monotonic()
            at = killed_runs(mbx, args.kills, rng, items)
            took = time.monotonic() - started
            diff = differences(src, dst)
            print(
                f"first copy: {items} items in {took:.0f} s ({items / took:.1f} items/s with the restarts), "
                f"killed at copied={at}, verify differences={diff}",
                flush=True,
            )
            failures += diff != 0
            # A delta round with 10 % of the events changed, 5 % deleted and 5 % contacts added.
            names = sorted(src.members(USER, cal))
            rng.shuffle(names)
            n = max(1, len(names) // 20)
            for i, name in enumerate(names[: 2 * n]):
                data = event(rng, i, i % 3 == 0, uid=name.removesuffix(".ics"), summary=f"Chaos {i}")[1]
                src.put(USER, cal + name, data, "calendars")
            for name in names[2 * n : 3 * n]:
                src.delete(USER, cal + name)
            added = max(1, args.contacts // 20)
            for i in range(added):
                cname, data = contact(rng, 50_000 + i)
                src.put(USER, book + cname, data, "contacts")
            # ... and contacts changed (5 %) and deleted (2 %), group cards left as they are.
            cards = sorted(n for n, d in src.members(USER, book).items() if "KIND:group" not in d)
            rng.shuffle(cards)
            k, gone = max(1, len(cards) // 20), max(1, len(cards) // 50)
            for i, cname in enumerate(cards[:k]):
                src.put(
                    USER,
                    book + cname,
                    contact(rng, 60_000 + i, uid=cname.removesuffix(".vcf"), note="Chaos")[1],
                    "contacts",
                )
            for cname in cards[k : k + gone]:
                src.delete(USER, book + cname)
            started = time.monotonic()
            at = killed_runs(mbx, args.kills, rng, 3 * n + added + k + gone)
            took = time.monotonic() - started
            diff = differences(src, dst)
            print(
                f"delta: {2 * n} events changed, {n} deleted; {added} contacts added, {k} changed, "
                f"{gone} deleted; {took:.0f} s, killed at copied={at}, verify differences={diff}",
                flush=True,
            )
            failures += diff != 0
        finally:
            src.stop()
            dst.stop()
    print("PASS" if failures == 0 else "FAIL: an invariant broke (lost, changed or duplicated items)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
