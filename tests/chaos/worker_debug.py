"""``mailferry-worker`` with a SIGUSR1 handler that prints every asyncio task's stack to stderr.

Chaos scenarios run the worker through this wrapper so that a hung run can be diagnosed
(``kill -USR1 <pid>``) before it is killed. Nothing else differs from the real entry point.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
from types import FrameType

from mailferry_worker.main import main


def dump_tasks(signum: int, frame: FrameType | None) -> None:
    out = io.StringIO()
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        tasks = set()
    print(f"=== {len(tasks)} asyncio tasks", file=out)
    for t in tasks:
        print(f"--- {t.get_name()} {t.get_coro()!r}", file=out)
        t.print_stack(limit=30, file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, dump_tasks)
    sys.exit(main())
