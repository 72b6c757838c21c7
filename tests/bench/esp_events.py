"""Benchmark (not a test): verified ESP events per second through `mailferry-esp-events`, and its RSS.

    .venv/bin/python tests/bench/esp_events.py [--requests 6000] [--concurrency 32] [--json out.json]

Starts the real endpoint (a subprocess, as in production its own Deployment) with test keys, signs
`--requests` unique webhooks per provider in advance (each in the provider's scheme: SNS RSA-SHA256
with its certificate fetched once from a loopback HTTPS server, SendGrid ECDSA, Mailgun HMAC, Postmark
basic auth, generic HMAC), then posts them over keep-alive connections from this process and reports
accepted events/s per provider (one event per request: the worst case) plus SendGrid with its usual
batches, and the endpoint's peak RSS (VmHWM). Load generator and endpoint share the machine's cores.
Prints PASS/MISS against the targets (1,000 events/s, RSS < 150 MB); never fails on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.esp import EspEndpoint, EspKeys

TARGET_EVENTS_PER_S = 1000
TARGET_RSS_MB = 150
DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- esp-events:begin -->", "<!-- esp-events:end -->"


def write_doc(path: Path, results: dict[str, dict[str, float]], peak: float, command: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (tests/bench/run.py rewrites the rest)."""
    rows = "\n".join(
        f"| {label} | {r['events']:.0f} | {r['seconds']:.2f} | {r['per_s']:.0f} | "
        f"{r['endpoint_cpu_s']:.2f} | {r['per_cpu_s']:.0f} |"
        for label, r in results.items()
    )
    single = [r for label, r in results.items() if " x" not in label]
    worst = min(r["per_s"] for r in single)
    per_core = min(r["per_cpu_s"] for r in single)
    section = f"""{BEGIN}
## ESP event endpoint (`mailferry-esp-events`)

`{command}` (tests/bench/esp_events.py, part of `make bench`): the real endpoint as a subprocess, unique
webhooks signed in advance in each provider's scheme, posted over 32 keep-alive connections from the
same machine (load generator and endpoint share its 2 CPUs). One event per request except "x50"
(SendGrid posts batches). "per CPU-s" = events per second of the endpoint's own CPU time (user+system
from /proc), the figure that does not depend on what else runs on the machine.
Run at load average {os.getloadavg()[0]:.1f}; endpoint peak RSS (VmHWM) **{peak:.1f} MB** (target < 150 MB).
Target 1,000 verified events/s: wall-clock **{"PASS" if worst >= TARGET_EVENTS_PER_S else "MISS"}**
(slowest scheme {worst:.0f}/s here, with the machine shared), capacity **{per_core:.0f} events per
endpoint CPU-second** in the slowest scheme, i.e. 1,000 events/s need {1000 / per_core:.2f} of one core.

| provider | events | wall s | events/s wall | endpoint CPU s | events per CPU-s |
|---|---|---|---|---|---|
{rows}
{END}
"""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def blast(
    url: str, requests: list[tuple[dict[str, str], bytes]], concurrency: int
) -> tuple[float, int]:
    """Post every request; (seconds, non-200 answers)."""
    queue = iter(requests)
    bad = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal bad
            for headers, body in queue:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    bad += resp.status != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=6000, help="signed requests per provider")
    p.add_argument("--batch", type=int, default=50, help="SendGrid events per request in the batched run")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--json", type=Path)
    p.add_argument("--doc", type=Path, default=DOC, help="section written into this file ('' to skip)")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mf-esp-bench-"))
    keys = EspKeys(root / "keys")
    endpoint = EspEndpoint(keys, root).start()
    assert endpoint.proc is not None
    pid = endpoint.proc.pid
    results: dict[str, dict[str, float]] = {}
    print(
        f"endpoint pid {pid}, RSS at start {rss_mb(pid):.1f} MB; "
        f"signing {args.requests} requests per provider"
    )
    try:
        runs = [(provider, 1) for provider in ("generic", "mailgun", "postmark", "sendgrid", "ses")]
        runs.append(("sendgrid", args.batch))
        for provider, batch in runs:
            now = time.time()
            count = args.requests if batch == 1 else max(1, args.requests // batch)
            requests = [keys.sign(provider, ["delivered"] * batch, now=now) for _ in range(count)]
            url = endpoint.url + keys.path(provider)
            cpu_before = cpu_seconds(pid)
            seconds, bad = asyncio.run(blast(url, requests, args.concurrency))
            cpu = cpu_seconds(pid) - cpu_before
            events = (count - bad) * batch
            label = provider if batch == 1 else f"{provider} x{batch}"
            results[label] = {
                "events": events,
                "seconds": round(seconds, 3),
                "per_s": round(events / seconds),
                "endpoint_cpu_s": round(cpu, 2),
                "per_cpu_s": round(events / max(cpu, 0.01)),
                "rejected": bad,
            }
            print(
                f"{label:14} {events:7d} events in {seconds:6.2f} s = {events / seconds:8.0f} events/s wall;"
                f" endpoint CPU {cpu:5.2f} s = {events / max(cpu, 0.01):6.0f} events per CPU-second"
                f"  (rejected {bad})"
            )
        peak = rss_mb(pid, "VmHWM")
    finally:
        endpoint.stop()
        keys.close()
    worst = min(r["per_s"] for label, r in results.items() if " x" not in label)
    per_core = min(r["per_cpu_s"] for label, r in results.items() if " x" not in label)
    print(
        f"slowest provider (one event per request): {worst} events/s wall-clock  "
        f"[{'PASS' if worst >= TARGET_EVENTS_PER_S else 'MISS'} >= {TARGET_EVENTS_PER_S}]; "
        f"{per_core} events per endpoint CPU-second"
    )
    print(
        f"endpoint peak RSS {peak:.1f} MB  "
        f"[{'PASS' if peak < TARGET_RSS_MB else 'MISS'} < {TARGET_RSS_MB} MB]"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if str(args.doc):
        write_doc(args.doc, results, peak, "python tests/bench/esp_events.py " + " ".join(sys.argv[1:]))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peak_rss_mb": round(peak, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
