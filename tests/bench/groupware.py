"""`make bench` (contacts and calendars): mailferry's worker against vdirsyncer, same data, same run.

    python tests/bench/groupware.py [--contacts 200] [--events 1000] [--repeat 3] [--json FILE]

Radicale servers on loopback: one source (an address book with photos and groups, a calendar with
recurring series across DST with moved and cancelled occurrences) and an empty destination for every
first copy. Each tool does a first copy (--repeat times, each into a fresh destination, the tools
alternating so neither always runs first; medians compared), then a round with nothing changed (no-op),
then a round after a few changes. Printed per tool and round: wall seconds, items/s, the HTTP requests
both servers saw (counted from Radicale's own request log, not from the tool) and the seconds the
servers logged for them. The no-op goal: one request per collection.
A measurement, not a test: it exits 0 whatever the figures; non-zero only when a copy is incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
SERVED = re.compile(r" response status for .* in ([0-9.]+) seconds")
FIRST_COPY_ORDER = ("mailferry", "vdirsyncer", "vdirsyncer", "mailferry", "mailferry", "vdirsyncer")
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
    server_seconds: float = 0.0  # what the servers themselves logged as time spent on these requests

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def server_seconds(*servers: Radicale) -> float:
    """Seconds Radicale logged for its answers so far ('... response status for ... in S seconds')."""
    total = 0.0
    for s in servers:
        for m in SERVED.finditer((s.directory / "radicale.log").read_text(errors="replace")):
            total += float(m.group(1))
    return total


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
            body = sync_collection(None, ("d:getetag", DATA_PROP[kind]))
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
    before, served = requests_seen(*servers), server_seconds(*servers)
    start = time.monotonic()
    run()  # type: ignore[operator]
    seconds = time.monotonic() - start
    return Round(
        tool, rnd, seconds, items, requests_seen(*servers) - before, server_seconds(*servers) - served
    )


def run_mailferry(mbx: GroupwareMailbox) -> None:
    proc = mbx.worker()
    out, _ = proc.communicate(timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(f"mailferry worker exit {proc.returncode}:\n{out.decode()[-3000:]}")


def vdirsyncer_setup(work: Path, source: Radicale, dest: Radicale) -> Path:
    work.mkdir(parents=True, exist_ok=True)
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


def vdirsyncer_first_copy(conf: Path) -> None:
    """What a new destination takes with vdirsyncer: `discover` creates its collections, then `sync`
    (mailferry's one run does both)."""
    vdirsyncer(conf, "discover")
    vdirsyncer(conf, "sync")


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
    ap.add_argument("--contacts", type=int, default=200)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="first copies per tool (alternating order)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mf-bench-groupware-") as tmp:
        work = Path(tmp)
        servers: list[Radicale] = []

        def server(role: str) -> Radicale:
            (work / role).mkdir()
            servers.append(Radicale(role, work / role, log_level="info").start())
            return servers[-1]

        try:
            rounds, diff = compare(work, server, args.contacts, args.events, args.repeat)
        finally:
            for s in servers:
                s.stop()
    report(rounds, diff, args.json)
    return 0 if diff["mailferry"] == 0 else 1


def compare(
    work: Path, server: Callable[[str], Radicale], contacts: int, events: int, repeat: int
) -> tuple[list[Round], dict[str, int]]:
    """Each first copy into a fresh destination server, the tools alternating (m v v m m v ...) so neither
    always goes first on a warm or a loaded machine; the no-op and change rounds on each tool's last."""
    src = server("source")
    print(f"seeding {contacts} contacts (+10 groups) and {events} events ...", flush=True)
    book, cal = seed(src, contacts, events)
    items = contacts + 10 + events
    rounds: list[Round] = []
    last: dict[str, tuple[Radicale, Callable[[], None]]] = {}
    order = [FIRST_COPY_ORDER[i % len(FIRST_COPY_ORDER)] for i in range(2 * repeat)]
    for n, tool in enumerate(order):
        dest = server(f"dest-{tool}-{n}")
        if tool == "mailferry":
            mbx = groupware_mailbox(work / f"mf-{n}", src, dest, USER)
            run: Callable[[], None] = functools.partial(run_mailferry, mbx)
        else:
            dest.add_user(USER)
            conf = vdirsyncer_setup(work / f"vd-{n}", src, dest)
            run = functools.partial(vdirsyncer_first_copy, conf)
        rounds.append(timed(tool, "first copy", items, (src, dest), run))
        print(f"  {tool} first copy {rounds[-1].seconds:.2f} s", flush=True)
        last[tool] = (dest, run if tool == "mailferry" else functools.partial(vdirsyncer, conf, "sync"))
    for tool in ("mailferry", "vdirsyncer"):
        rounds.append(timed(tool, "no-op", items, (src, last[tool][0]), last[tool][1]))
    change_some(src, book, cal)
    for tool in ("mailferry", "vdirsyncer"):
        rounds.append(timed(tool, "30 changes", 30, (src, last[tool][0]), last[tool][1]))
    return rounds, {tool: differences(src, last[tool][0]) for tool in ("mailferry", "vdirsyncer")}


def median_seconds(rounds: list[Round], tool: str, rnd: str) -> float:
    return statistics.median(r.seconds for r in rounds if r.tool == tool and r.round == rnd)


def report(rounds: list[Round], diff: dict[str, int], json_file: Path | None) -> None:
    print(f"\n{'tool':11} {'round':11} {'seconds':>8} {'items/s':>9} {'HTTP requests':>14} {'server s':>9}")
    for r in rounds:
        print(
            f"{r.tool:11} {r.round:11} {r.seconds:8.2f} {r.items_per_second:9.1f} {r.requests:14d} "
            f"{r.server_seconds:9.2f}"
        )
    print(f"verify differences after the last round: {diff} (2 collections per tool)")
    for rnd in ("first copy", "no-op"):
        mf_s, vd_s = median_seconds(rounds, "mailferry", rnd), median_seconds(rounds, "vdirsyncer", rnd)
        ok = "PASS" if mf_s <= vd_s else "MISS"
        print(f"{ok} {rnd} (median): mailferry {mf_s:.2f} s vs vdirsyncer {vd_s:.2f} s")
    if json_file:
        json_file.write_text(
            json.dumps({"rounds": [asdict(r) for r in rounds], "differences": diff}, indent=1)
        )


if __name__ == "__main__":
    sys.exit(main())
