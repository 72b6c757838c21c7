"""Drive the worker's IMAP client against one server in a child process and report what happened.

    python tests/chaos/imap_probe.py --port P [--followup-port Q] [--read-timeout 3] [--as-limit-mb 2048]

Runs connect -> LOGIN -> SELECT INBOX -> UID FETCH 1 BODY[] -> LOGOUT with
``mailferry_imap.ImapClient`` and prints one JSON line:

    {"ok": false, "error": "ProtocolError", "reason": "ProtocolError", "transient": true,
     "message": "...", "baseline_rss_mb": 40.1, "peak_rss_mb": 105.2, "rss_growth_mb": 65.1,
     "seconds": 1.2, "followup_ok": true}

``followup_ok`` is the same sequence against a well-behaved server afterwards: the process is still
healthy after the hostile exchange. A child process keeps a runaway client from hurting the test
runner; its address space is capped (RLIMIT_AS) so a leak ends in MemoryError, not in the OOM killer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import traceback
from typing import Any

from mailferry_imap import ImapClient, ImapError


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576


def peak_rss_mb() -> float:
    # VmHWM, not getrusage: Linux carries ru_maxrss across execve, so a probe started from a big
    # pytest process would report the parent's peak as its own.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


async def session(port: int, read_timeout: float, user: str, password: str) -> None:
    client = await ImapClient.connect(
        "127.0.0.1", port, security="none", connect_timeout=read_timeout, read_timeout=read_timeout
    )
    try:
        await client.login(user, password)
        await client.select("INBOX")
        bodies = await client.fetch_bodies([1])
        for b in bodies.values():
            if not isinstance(b, bytes):
                b.close()
    finally:
        await client.logout()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--followup-port", type=int)
    ap.add_argument("--read-timeout", type=float, default=3.0)
    ap.add_argument("--as-limit-mb", type=int, default=2048)
    ap.add_argument("--user", default="probe@hostile.test")
    ap.add_argument("--password-env", default="PROBE_PASSWORD")
    args = ap.parse_args()
    limit = args.as_limit_mb * 1048576
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    password = os.environ.get(args.password_env, "probe-password")
    out: dict[str, Any] = {"ok": True, "error": None}
    base = rss_mb()
    t0 = time.monotonic()
    try:
        asyncio.run(session(args.port, args.read_timeout, args.user, password))
    except ImapError as exc:
        out.update(
            ok=False, error=type(exc).__name__, reason=exc.reason, transient=exc.transient, message=str(exc)
        )
    except BaseException as exc:
        out.update(
            ok=False,
            error=type(exc).__name__,
            reason=None,
            untyped=True,
            message=str(exc)[:500],
            traceback=traceback.format_exc()[-2000:],
        )
    out["seconds"] = round(time.monotonic() - t0, 3)
    out["baseline_rss_mb"] = round(base, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["rss_growth_mb"] = round(peak_rss_mb() - base, 1)
    if args.followup_port:
        try:
            asyncio.run(session(args.followup_port, args.read_timeout, args.user, password))
            out["followup_ok"] = True
        except BaseException as exc:
            out["followup_ok"] = False
            out["followup_error"] = f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
