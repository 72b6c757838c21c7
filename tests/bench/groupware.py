"""`make bench` (contacts and calendars): mailferry's worker against vdirsyncer, same data, same run.

    python tests/bench/groupware.py [--contacts 500] [--events 3000] [--json FILE]

Three Radicale servers on loopback: one source (an address book with photos and groups, a calendar with
recurring series across DST with moved and cancelled occurrences) and one empty destination per tool.
Each tool does a first copy, then a round with nothing changed (no-op), then a round after a few
changes. Printed per tool and round: wall seconds, items/s, and the HTTP requests both servers saw
(counted from Radicale's own request log, not from the tool). The no-op goal: one request per collection.
A measurement, not a test: it exits 0 whatever the figures; non-zero only when a copy is incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from fixtures.groupware_data import address_book, calendar, contact, event  # noqa: E402
from fixtures.groupware_setup import GroupwareMailbox, groupware_mailbox  # noqa: E402
from fixtures.radicale import Radicale  # noqa: E402
from mailferry_worker.groupware.dav import DavClient  # noqa: E402
from mailferry_worker.groupware.protocol import DATA_PROP, sync_collection  # noqa: E402
from mailferry_worker.groupware.verify import verify_collections  # noqa: E402

USER = "bench@example.com"
VDIRSYNCER_GENERAL = """
[general]
status_path = "{status}"
"""
VDIRSYNCER_PAIR = """
[pair {kind}]
a = "{kind}_src"
b = "{kind}_dst"
collections = ["from a"]
conflict_resolution = "a wins"

[storage {kind}_src]
type = "{type}"
url = "{src}"
username = "{user}"
password = "{src_pw}"

[storage {kind}_dst]
type = "{type}"
url = "{dst}"
username = "{user}"
password = "{dst_pw}"
"""


@dataclass
class Round:
    tool: str
    round: str
    seconds: float
    items: int
    requests: int

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def requests_seen(*servers: Radicale) -> int:
    """Requests Radicale logged so far (level info: one 'request for' line per request)."""
    return sum(
        (s.directory / "radicale.log").read_text(errors="replace").count(" request for ") for s in servers
    )


def seed(source: Radicale, contacts: int, events: int) -> tuple[str, str]:
    source.add_user(USER)
    book = source.seed(USER, "contacts", "contacts", address_book(contacts, groups=10), "Contacts")
    cal = source.seed(USER, "calendar", "calendars", calendar(events), "Calendar")
    # Radicale parses every item into its cache on its first read of the item's data (a PROPFIND for
    # ETags is not enough): read everything once, so the first tool timed does not pay for the second.
    with source.client(USER, timeout=3600) as c:  # minutes for thousands of items on a busy machine
        for path, kind in ((book, "contacts"), (cal, "calendars")):
            c.request("PROPFIND", path, headers={"Depth": "1"}).raise_for_status()
            body = sync_collection(None, ("d:getetag", DATA_PROP[kind]))  # type: ignore[index]
            c.request("REPORT", path, content=body, headers={"Depth": "1"}).raise_for_status()
    return book, cal


def change_some(source: Radicale, book: str, cal: str, n: int = 10) -> None:
    rng = random.Random(42)
    names = sorted(source.members(USER, cal))
    for i, name in enumerate(names[:n]):
        data = event(rng, i, i % 2 == 0, uid=name.removesuffix(".ics"), summary=f"Changed {i}")[1]
        source.put(USER, cal + name, data, "calendars")
    for name in names[n : 2 * n]:
        source.delete(USER, cal + name)
    for i in range(n):
        name, data = contact(rng, 10_000 + i)
        source.put(USER, book + name, data, "contacts")


def timed(tool: str, rnd: str, items: int, servers: tuple[Radicale, ...], run: object) -> Round:
    before = requests_seen(*servers)
    start = time.monotonic()
    run()  # type: ignore[operator]
    seconds = time.monotonic() - start
    return Round(tool, rnd, seconds, items, requests_seen(*servers) - before)


def run_mailferry(mbx: GroupwareMailbox) -> None:
    proc = mbx.worker()
    out, _ = proc.communicate(timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(f"mailferry worker exit {proc.returncode}:\n{out.decode()[-3000:]}")


def vdirsyncer_setup(work: Path, source: Radicale, dest: Radicale) -> Path:
    conf = work / "vdirsyncer.conf"
    parts = [VDIRSYNCER_GENERAL.format(status=work / "vdirsyncer-status")]
    for kind, typ in (("contacts", "carddav"), ("calendars", "caldav")):
        parts.append(
            VDIRSYNCER_PAIR.format(
                kind=kind,
                type=typ,
                src=source.url,
                dst=dest.url,
                user=USER,
                src_pw=source.users[USER],
                dst_pw=dest.users[USER],
            )
        )
    conf.write_text("".join(parts))
    return conf


def vdirsyncer(conf: Path, *args: str) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "vdirsyncer"), "-c", str(conf), "-v", "WARNING", *args],
        input="y\n" * 20,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if proc.returncode != 0:
        raise SystemExit(f"vdirsyncer {args} exit {proc.returncode}:\n{proc.stderr[-3000:]}")


def differences(source: Radicale, dest: Radicale) -> int:
    async def go() -> int:
        src = DavClient(source.url, httpx.BasicAuth(USER, source.users[USER]))
        dst = DavClient(dest.url, httpx.BasicAuth(USER, dest.users[USER]))
        try:
            reports = await verify_collections(src, dst, ["contacts", "calendars"])
            return sum(r.differences for r in reports) if reports else 1
        finally:
            await src.close()
            await dst.close()

    return asyncio.run(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--contacts", type=int, default=500)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mf-bench-groupware-") as tmp:
        work = Path(tmp)
        servers: dict[str, Radicale] = {}
        try:
            for role in ("source", "dest-mailferry", "dest-vdirsyncer"):
                (work / role).mkdir()
                servers[role] = Radicale(role, work / role, log_level="info").start()
            rounds, diff = compare(work, servers, args.contacts, args.events)
        finally:
            for server in servers.values():
                server.stop()
    report(rounds, diff, args.json)
    return 0 if diff["mailferry"] == 0 else 1


def compare(
    work: Path, servers: dict[str, Radicale], contacts: int, events: int
) -> tuple[list[Round], dict[str, int]]:
    src, dmf, dvd = servers["source"], servers["dest-mailferry"], servers["dest-vdirsyncer"]
    print(f"seeding {contacts} contacts (+10 groups) and {events} events ...", flush=True)
    book, cal = seed(src, contacts, events)
    items = contacts + 10 + events
    mbx = groupware_mailbox(work / "mf", src, dmf, USER)
    dvd.add_user(USER)
    conf = vdirsyncer_setup(work, src, dvd)
    rounds: list[Round] = []

    def mf() -> None:
        run_mailferry(mbx)

    def vd() -> None:
        vdirsyncer(conf, "sync")

    rounds.append(timed("mailferry", "first copy", items, (src, dmf), mf))
    vdirsyncer(conf, "discover")  # creates the destination collections; not timed
    rounds.append(timed("vdirsyncer", "first copy", items, (src, dvd), vd))
    rounds.append(timed("mailferry", "no-op", items, (src, dmf), mf))
    rounds.append(timed("vdirsyncer", "no-op", items, (src, dvd), vd))
    change_some(src, book, cal)
    rounds.append(timed("mailferry", "30 changes", 30, (src, dmf), mf))
    rounds.append(timed("vdirsyncer", "30 changes", 30, (src, dvd), vd))
    return rounds, {"mailferry": differences(src, dmf), "vdirsyncer": differences(src, dvd)}


def report(rounds: list[Round], diff: dict[str, int], json_file: Path | None) -> None:
    print(f"\n{'tool':11} {'round':11} {'seconds':>8} {'items/s':>9} {'HTTP requests':>14}")
    for r in rounds:
        print(f"{r.tool:11} {r.round:11} {r.seconds:8.2f} {r.items_per_second:9.1f} {r.requests:14d}")
    print(f"verify differences after the last round: {diff} (2 collections per tool)")
    for rnd in ("first copy", "no-op"):
        mf_r = next(r for r in rounds if r.tool == "mailferry" and r.round == rnd)
        vd_r = next(r for r in rounds if r.tool == "vdirsyncer" and r.round == rnd)
        ok = "PASS" if mf_r.seconds <= vd_r.seconds else "MISS"
        print(f"{ok} {rnd}: mailferry {mf_r.seconds:.2f} s vs vdirsyncer {vd_r.seconds:.2f} s")
    if json_file:
        json_file.write_text(
            json.dumps({"rounds": [asdict(r) for r in rounds], "differences": diff}, indent=1)
        )


if __name__ == "__main__":
    sys.exit(main())
