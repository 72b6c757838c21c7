"""CPU seconds of this process's tree, grouped by the child that started each part (a benchmark aid).

Every live process below us is charged to the group of its ancestor that is our direct child (the API
server, etcd, each Dovecot, the operator, a job runner...), ourselves to "harness". A process's share is
utime + stime + cutime + cstime: a child that ended and was reaped (Dovecot's imap processes, kubectl
runs) moves from its own line into its parent's cutime, so nothing is counted twice or lost between two
samples. Groups are named by the child's command (`name_of` may rename one, e.g. by pid).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(ppid, command, utime+stime+cutime+cstime seconds), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, tail = raw.rsplit(")", 1)
    fields = tail.split()
    ticks = sum(int(v) for v in fields[11:15])
    return int(fields[1]), head.split("(", 1)[1], ticks / TICK


def tree_cpu(root: int, name_of: Callable[[int, str], str] | None = None) -> dict[str, float]:
    """Group -> CPU seconds so far, for `root` ("harness") and each of its direct children's trees."""
    procs: dict[int, tuple[int, str, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            procs[int(entry)] = found
    groups: dict[str, float] = {}
    for pid, (_ppid, _comm, cpu) in procs.items():
        node, chain = pid, 0
        while node in procs and procs[node][0] != root and node != root and chain < 64:
            node, chain = procs[node][0], chain + 1
        if node == root:
            group = "harness"
        elif node in procs and procs[node][0] == root:
            group = name_of(node, procs[node][1]) if name_of else procs[node][1]
        else:
            continue  # not ours
        groups[group] = groups.get(group, 0.0) + cpu
    return groups


class CpuSampler(threading.Thread):
    """Samples `tree_cpu(os.getpid())` every `interval` seconds; `at(t)` is the last sample taken at or
    before `t` seconds after `start_clock()`, a group's max seen (a process that ended keeps its
    seconds in its parent: the sums only grow, but a late-reaped one may dip for one sample)."""

    def __init__(self, interval: float = 0.5, name_of: Callable[[int, str], str] | None = None) -> None:
        super().__init__(daemon=True, name="cpu-sampler")
        self.interval = interval
        self.name_of = name_of
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.t0 = time.monotonic()
        self.base: dict[str, float] = {}
        self._halt = threading.Event()

    def start_clock(self) -> None:
        """From now on: seconds and CPU are counted from this moment."""
        self.base = tree_cpu(os.getpid(), self.name_of)
        self.t0 = time.monotonic()
        self.samples = []

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            now = tree_cpu(os.getpid(), self.name_of)
            since = {k: max(0.0, v - self.base.get(k, 0.0)) for k, v in now.items()}
            self.samples.append((time.monotonic() - self.t0, since))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def at(self, seconds: float) -> dict[str, float]:
        best: dict[str, float] = {}
        for t, since in self.samples:
            if t > seconds:
                break
            best = {k: max(best.get(k, 0.0), v) for k, v in since.items()}
        return best
