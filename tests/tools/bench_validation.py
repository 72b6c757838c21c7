"""CPU of the operator's validation per mailbox (a benchmark, not a test).

`probe_all` on N mailboxes x 2 sides (login on both, LIST + STATUS scan of the source) against one real
Dovecot, then the same against a closed port (every connection refused), 32 at once. Prints process CPU
(threads included) per mailbox. Compare two trees with PYTHONPATH:

    PYTHONPATH=<tree>/operator:<tree>/worker .venv/bin/python tests/tools/bench_validation.py [--mailboxes N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures._proc import free_port  # nothing listens there: refused
from fixtures.dovecot import Dovecot
from mailferry_api.imap import ImapEndpoint
from mailferry_operator.mailmigration import probe


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mailboxes", type=int, default=300)
    n = p.parse_args().mailboxes
    root = Path(tempfile.mkdtemp(prefix="mf-bench-validation-"))
    (root / "imap").mkdir()
    server = Dovecot(root / "imap", "bench-validation")
    server.start()
    try:
        users = {f"v{i}@bench.test": f"pw-{i}" for i in range(n)}
        server.add_users(users)
        server.seed("v0@bench.test", "INBOX", count=5)
        creds = {u.replace("@", "_"): pw for u, pw in users.items()}
        for label, port in (("dovecot", server.port), ("refused", free_port())):
            ep = ImapEndpoint.model_validate(
                {"host": "127.0.0.1", "port": port, "security": "none", "auth": {"secretRef": {"name": "c"}}}
            )
            tasks = [
                probe.ProbeTask(u, side, ep, u, u.replace("@", "_"), side == "source")
                for u in users
                for side in ("source", "destination")
            ]
            cpu0, t0 = time.process_time(), time.monotonic()
            results = asyncio.run(probe.probe_all(tasks, {"source": creds, "destination": creds}))
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            ok = sum(1 for _, r in results if r.ok)
            print(
                f"{label:8s} {n} mailboxes, {len(tasks)} probes, {ok} ok: CPU {cpu:.2f} s "
                f"= {1000 * cpu / n:.2f} ms per mailbox, wall {wall:.1f} s",
                flush=True,
            )
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
