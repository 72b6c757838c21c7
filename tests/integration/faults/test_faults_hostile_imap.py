"""The worker's IMAP client vs a hostile IMAP server: a typed error, the process stays up, memory bounded.

Each case runs ``tests/chaos/imap_probe.py`` in a child process (address space capped at 2 GiB) against
``HostileImap``; the probe reports the exception type, the RSS growth around the call and whether a
normal session against a well-behaved server still works afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.hostile_imap import MIB, HostileImap
from mailferry_imap.client import STREAM_LIMIT

PROBE = Path(__file__).resolve().parents[2] / "chaos" / "imap_probe.py"
# The client may hold one response line (STREAM_LIMIT, 64 MiB) in memory; everything else must be
# streamed or refused. Half a limit of slack for the interpreter and buffers.
BOUND_MB = STREAM_LIMIT * 1.5 / MIB

# behaviour, command that triggers it, bytes the server sends (None: its default), expected error types
CASES: list[tuple[str, str, int | None, set[str | None]]] = [
    ("garbage_greeting", "SELECT", None, {"ConnectionFailed"}),
    ("garbage_after_greeting", "ANY", None, {"ConnectionLost", "ProtocolError"}),
    ("malformed_literal", "UID FETCH", None, {"ConnectionLost", "ProtocolError"}),
    ("literal_bad_count", "UID FETCH", None, {None, "ConnectionLost", "ProtocolError"}),
    ("huge_literal_close", "UID FETCH", 8 * MIB, {"ConnectionLost"}),
    ("close_mid_literal", "UID FETCH", None, {"ConnectionLost"}),
    ("endless_line", "SELECT", 1024 * MIB, {"ProtocolError"}),
    ("throttled", "SELECT", None, {"Throttled"}),
    ("bye_mid_command", "SELECT", None, {"ConnectionLost"}),
    ("stall", "SELECT", None, {"ConnectionLost"}),
    # 96 MiB of untagged lines: refused once over the client's untagged budget
    ("enormous_untagged_lines", "SELECT", 96 * MIB, {"ProtocolError"}),
    # one response of 96 x 1 MiB literals: spilled to disk past the per-response memory budget
    ("enormous_untagged_literals", "UID FETCH", 96 * MIB, {None, "ProtocolError"}),
]


@pytest.fixture(scope="module")
def good_server() -> Iterator[HostileImap]:
    with HostileImap("stall", on="NEVER") as srv:  # never triggered: a well-behaved server
        yield srv


def probe(port: int, followup: int) -> dict[str, Any]:
    cp = subprocess.run(
        [
            sys.executable,
            str(PROBE),
            "--port",
            str(port),
            "--followup-port",
            str(followup),
            "--read-timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, f"probe process died (rc={cp.returncode}): {cp.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(cp.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    return result


@pytest.mark.parametrize(("behaviour", "on", "total", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_server_gives_typed_error_bounded_memory(
    behaviour: str, on: str, total: int | None, expected: set[str | None], good_server: HostileImap
) -> None:
    with HostileImap(behaviour, on=on, total=total) as srv:
        r = probe(srv.port, good_server.port)
        sent = srv.bytes_sent
    print(f"{behaviour}: server sent {sent / MIB:.1f} MiB, client RSS growth {r['rss_growth_mb']} MB")
    assert not r.get("untyped"), f"untyped exception: {r}"
    assert r["error"] in expected, r
    if r["error"] is not None:
        assert r["reason"] in {"ConnectionFailed", "ProtocolError", "Throttled"}, r
        assert r["transient"] is True, r  # a retry helps: the worker backs off and reconnects
    assert r["rss_growth_mb"] < BOUND_MB, r
    assert r["followup_ok"] is True, r
    if behaviour == "throttled":
        assert "1500 milliseconds" in r["message"]
