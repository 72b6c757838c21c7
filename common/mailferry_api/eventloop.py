"""The asyncio event loop a program runs on: uvloop (libuv, in C) unless MAILFERRY_EVENT_LOOP says asyncio.

Why uvloop: the operator and the worker spend much of their CPU in the event loop itself (sockets, TLS,
callbacks). Measured on this project's benchmarks (docs/benchmarks.md): the operator's CPU over a
10,000-mailbox start about 15 % lower, the worker's over a TLS bulk copy about 8 % lower. `asyncio` is the
standard library's loop, kept as the way back if a platform has no uvloop build or it misbehaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOPS = ("uvloop", "asyncio")
SETTING_DOC = (
    "the asyncio event loop: `uvloop` (libuv, less CPU per request; the standard library's loop where "
    "uvloop is not installed) or `asyncio` (the standard library's)"
)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for `asyncio.Runner` (None: the standard loop). An unknown name stops the program."""
    if name not in EVENT_LOOPS:
        raise SystemExit(f"MAILFERRY_EVENT_LOOP={name!r}: must be one of {', '.join(EVENT_LOOPS)}")
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # a platform without a uvloop build (it is a dependency everywhere else)
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """`asyncio.run(main)` on the event loop `name` names."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


def resolved_name(name: str) -> str:
    """`uvloop` or `asyncio`: the loop `run(..., name)` will run on (uvloop may be missing)."""
    return "asyncio" if loop_factory(name) is None else "uvloop"


def running_loop_name() -> str:
    """`uvloop` or `asyncio`: what the running loop is (for the start log line)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
