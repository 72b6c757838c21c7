"""The event loop choice (mailferry_api/eventloop.py): uvloop by default, asyncio on request, a clear stop
for anything else."""

from __future__ import annotations

import asyncio
import sys

import pytest

from mailferry_api import eventloop


async def _loop_name() -> str:
    await asyncio.sleep(0)
    return eventloop.running_loop_name()


def test_uvloop_runs_by_default_and_asyncio_when_asked() -> None:
    assert eventloop.run(_loop_name(), "uvloop") == "uvloop"
    assert eventloop.resolved_name("uvloop") == "uvloop"
    assert eventloop.run(_loop_name(), "asyncio") == "asyncio"
    assert eventloop.resolved_name("asyncio") == "asyncio"


def test_without_uvloop_installed_the_standard_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # None in sys.modules: ImportError on import
    assert eventloop.resolved_name("uvloop") == "asyncio"
    assert eventloop.run(_loop_name(), "uvloop") == "asyncio"


def test_an_unknown_loop_stops_with_the_names_it_accepts() -> None:
    coro = _loop_name()
    with pytest.raises(SystemExit, match="MAILFERRY_EVENT_LOOP='trio': must be one of uvloop, asyncio"):
        eventloop.run(coro, "trio")
    coro.close()

