"""One mailbox's change feed on the source: NOTIFY, else IDLE on INBOX plus a STATUS sweep, else none.

The feed only says *that* the mailbox changed (and when it first saw it), and whether its folders
themselves changed (``on_hierarchy``: the follower's kept listings are stale); the follower then runs the
engine's delta, which finds *what* changed from the checkpoints. A lost connection is opened again with
exponential back-off and full jitter; the time it went down counts as a change (something may have
arrived unseen, folders too), so a delta runs once the feed is back."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable

from mailferry_imap.client import ImapClient
from mailferry_imap.credentials import Connector
from mailferry_imap.errors import CommandFailed, ImapError
from mailferry_imap.parser import Response

from ..sync.run import backoff
from . import metrics
from .watchplan import (
    NOTIFY_SET,
    Mode,
    choose_mode,
    hierarchy_changed,
    is_change,
    is_hierarchy_change,
    sweep_changes,
)

Log = Callable[..., None]


class Feed:
    def __init__(
        self,
        connector: Connector,
        on_change: Callable[[float], None],
        log: Log,
        *,
        modes: Iterable[Mode],
        idle_seconds: float,
        sweep_seconds: float,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        on_hierarchy: Callable[[], None] | None = None,
    ) -> None:
        self.connector = connector
        self.on_change = on_change
        self.on_hierarchy = on_hierarchy or (lambda: None)
        self.log = log
        self.modes: tuple[Mode, ...] = tuple(modes)
        self.idle_seconds = idle_seconds
        self.sweep_seconds = sweep_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.mode: Mode = "poll"
        self.watching = False
        self.decided = asyncio.Event()  # set once the mode is known (the first login)
        self._statuses: dict[str, dict[str, int]] = {}

    def _idle_cap(self, client: ImapClient) -> float:
        # DONE and its answer must fit in the read timeout: otherwise a healthy IDLE reads as a dead link.
        return max(1.0, min(self.idle_seconds, client.read_timeout - 10.0))

    async def run(self) -> None:
        """Watch until cancelled (returns at once when the mode is poll: nothing to watch)."""
        attempt = 0
        down_since: float | None = None
        while True:
            client: ImapClient | None = None
            try:
                client = await self.connector.open()
                self.mode = choose_mode(client.capabilities, self.modes)
                self.decided.set()
                if self.mode == "poll":
                    self.log("follow_feed", mode="poll")
                    return
                await self._prepare(client)
                self.watching = True
                attempt = 0
                self.log("follow_feed", mode=self.mode)
                if down_since is not None:
                    self.on_hierarchy()
                    self.on_change(down_since)  # whatever arrived while the feed was down
                    down_since = None
                await self._watch(client)
            except CommandFailed as exc:
                if self.mode == "notify":
                    # The server announces NOTIFY but refuses ours: IDLE + sweep it is.
                    self.log("follow_notify_refused", "warning", error=exc.message[:200])
                    self.modes = tuple(m for m in self.modes if m != "notify")
                    continue
                raise
            except ImapError as exc:
                if not exc.transient:
                    raise
                if self.watching or down_since is None:
                    down_since = time.time() if self.watching else down_since
                self.watching = False
                metrics.RECONNECTS.inc()
                delay = backoff(
                    attempt, self.backoff_base, self.backoff_cap, getattr(exc, "retry_after", None)
                )
                attempt += 1
                self.log(
                    "follow_feed_lost",
                    "warning",
                    reason=exc.reason,
                    error=exc.message[:200],
                    delay=round(delay, 2),
                    attempt=attempt,
                )
                await asyncio.sleep(delay)
            finally:
                self.watching = False
                if client is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(client.close())

    async def _prepare(self, client: ImapClient) -> None:
        if self.mode == "notify":
            if client.has("CONDSTORE"):
                await client.enable("CONDSTORE")  # flag changes of unselected folders: STATUS HIGHESTMODSEQ
            await client.execute(NOTIFY_SET)
        else:
            await client.select("INBOX", readonly=True)
            self._statuses = await self._sweep_status(client)

    async def _sweep_status(self, client: ImapClient) -> dict[str, dict[str, int]]:
        folders = [
            f.name
            for f in await client.list_folders()
            if f.name.upper() != "INBOX"
            and "\\NOSELECT" not in {x.upper() for x in f.flags}
            and "\\NONEXISTENT" not in {x.upper() for x in f.flags}
        ]
        got = await client.status_many(folders) if folders else {}
        return {k: v for k, v in got.items() if isinstance(v, dict)}

    async def _watch(self, client: ImapClient) -> None:
        next_sweep = time.monotonic() + self.sweep_seconds
        while True:
            wait = self._idle_cap(client)
            if self.mode == "idle":
                wait = max(0.5, min(wait, next_sweep - time.monotonic()))
            seen_at: list[float] = []
            renamed: list[bool] = []
            await client.idle(functools.partial(_note, seen=seen_at, renamed=renamed), wait)
            if renamed:
                self.on_hierarchy()
            if seen_at:
                self.on_change(seen_at[0])
            if self.mode == "idle" and time.monotonic() >= next_sweep:
                at = time.time()
                now_status = await self._sweep_status(client)
                if hierarchy_changed(self._statuses, now_status):
                    self.on_hierarchy()
                if sweep_changes(self._statuses, now_status):
                    self.on_change(at)
                self._statuses = now_status
                next_sweep = time.monotonic() + self.sweep_seconds


def _note(resp: Response, seen: list[float], renamed: list[bool]) -> bool:
    """An IDLE callback: remember when the first change was seen (and a folder change); True ends the
    IDLE."""
    if is_hierarchy_change(resp.line):
        renamed.append(True)
    if is_change(resp.line):
        seen.append(time.time())
        return True
    return False
