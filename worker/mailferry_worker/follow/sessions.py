"""The IMAP connections and folder listings one followed mailbox's deltas reuse (issue 20).

A round's run logs in and lists for itself. A follower runs a delta per change, and per change that was
three logins (the STATUS proof, then the source and destination of the sync: on Dovecot a new process
each) plus a LIST and NAMESPACE on both sides: most of a change's cost and of its lag. So while the
follower serves a mailbox (under its Lease), the connections a delta is done with are kept for the next
delta, and both sides' listings are kept until the hierarchy may have changed.

- A connection is kept only while usable: an exchange that broke (connection lost, protocol error,
  cancelled mid-way) closes the client itself (``ImapConnection._holding``), and a closed one is dropped.
  Before reuse it answers a NOOP; one that does not is closed and the delta logs in as before.
- A kept connection idle longer than ``keep_seconds`` is closed instead of reused: a NAT or the server may
  have dropped it without a word, and a dead one would cost a whole read timeout.
- Its write guard is set to the taking run's (the Lease check): every destination write stays fenced.
- Listings are forgotten (``forget_listings``) when the feed saw a folder created, renamed or deleted or
  came back from an outage, before a delta without a live feed, after a failed delta, when the delta
  created a destination folder, and after ``listing_seconds`` in any case.
- Only plain connections are kept: Gmail's source and destination clients carry one run's state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailferry_imap.client import ImapClient
from mailferry_imap.credentials import Connector, Side
from mailferry_imap.errors import ImapError

from ..sync.connections import Listing, listing

KEEP_SECONDS = 120.0  # idle connection kept at most this long (below servers' autologout and NAT timeouts)
LISTING_SECONDS = 600.0  # a kept listing is refreshed at least this often (a change the feed missed)
PER_SIDE = 4  # idle connections kept per side (a delta over several folders opens more than one pair)


@dataclass
class _Kept:
    client: ImapClient
    since: float  # monotonic time it was given back


def keepable(client: ImapClient) -> bool:
    """A usable connection without per-run state (a subclass, e.g. Gmail's, carries a run's state)."""
    return type(client) is ImapClient and not client.closed


def expired(since: float, now: float, limit: float) -> bool:
    return now - since > limit


class KeptSessions:
    """Connections and listings of one followed mailbox, kept between its deltas (module docstring)."""

    def __init__(
        self,
        keep_seconds: float = KEEP_SECONDS,
        listing_seconds: float = LISTING_SECONDS,
        per_side: int = PER_SIDE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep_seconds = keep_seconds
        self.listing_seconds = listing_seconds
        self.per_side = per_side
        self.clock = clock
        self._idle: dict[Side, list[_Kept]] = {"source": [], "destination": []}
        self._listings: dict[Side, tuple[Listing, float]] = {}
        self.reused = 0  # connections handed out again (tests, logs)
        self.closed = False

    async def take(self, c: Connector) -> ImapClient | None:
        if self.closed or type(c) is not Connector:
            return None
        idle = self._idle[c.side]
        while idle:
            kept = idle.pop()
            client = kept.client
            if client.closed or expired(kept.since, self.clock(), self.keep_seconds):
                await _close(client)
                continue
            client.write_guard = c.guard  # this run's Lease check (a lost Lease raises from the NOOP)
            try:
                await client.noop()
            except ImapError:
                await _close(client)
                continue
            except BaseException:  # the Lease lost (the guard refused the NOOP), a cancellation
                await _close(client)
                raise
            self.reused += 1
            return client
        return None

    async def give_back(self, side: Side, client: ImapClient) -> None:
        idle = self._idle[side]
        if self.closed or not keepable(client) or len(idle) >= self.per_side:
            await _close(client)
            return
        client.write_guard = None  # set again by the run that takes it
        idle.append(_Kept(client, self.clock()))

    async def listing(self, side: Side, client: ImapClient) -> Listing:
        kept = self._listings.get(side)
        now = self.clock()
        if kept is not None and not expired(kept[1], now, self.listing_seconds):
            return kept[0]
        got = await listing(client)
        if type(client) is ImapClient:
            self._listings[side] = (got, now)
        return got

    def forget_listings(self) -> None:
        self._listings.clear()

    async def close(self) -> None:
        """The mailbox is no longer served (Lease lost or given back, SIGTERM): log every kept one out."""
        self.closed = True
        self._listings.clear()
        for idle in self._idle.values():
            while idle:
                await _close(idle.pop().client)


async def _close(client: ImapClient) -> None:
    with contextlib.suppress(Exception):
        await client.close()
