"""Run the chaos load scenario (tests/chaos/load.py, unchanged) with the destination at a second closed port.

Since the operator refuses a migration whose source and destination are the same server with the same
logins (SourceIsDestination), load.py's MailMigrations (both sides at one closed port) never get their
MailboxSyncs. Until load.py gives the destination a port of its own, this runs its `scenario_load` with
`migration_manifest` wrapped to do that; everything else (two peered operators, 10,000-row inventory,
50 migrations, the figures) is load.py's. PYTHONPATH=<tree>/operator:<tree>/worker measures another tree.

    .venv/bin/python tests/tools/load_distinct_ports.py [--rows 10000] [--migrations 50] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "tools"))

import chaos.load as load  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--migrations", type=int, default=50)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    original = load.dl.migration_manifest
    dest_port = load.closed_port()

    def manifest(*a: Any, **kw: Any) -> dict[str, Any]:
        m = original(*a, **kw)
        m["spec"]["destination"]["port"] = dest_port
        return m

    load.dl.migration_manifest = manifest
    t0 = time.monotonic()
    ok, res = load.scenario_load(args, Path(tempfile.mkdtemp(prefix="mf-load-")))
    if args.json:
        args.json.write_text(json.dumps({**res, "ok": ok}, indent=1))
    print(f"load: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.1f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
