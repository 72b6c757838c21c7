"""A follower's kept connections and listings (follow/sessions.py) against a real Dovecot: a connection
given back is handed out again (no new login), one that closed or idled too long is not, the taking
run's write guard is set on it, and listings are kept until forgotten."""

from __future__ import annotations

import asyncio
import secrets

from fixtures.dovecot import Dovecot, DovecotPair
from mailferry_api.imap import ImapEndpoint
from mailferry_imap.credentials import Connector, StaticSecrets
from mailferry_worker.follow.sessions import KeptSessions
from mailferry_worker.lease import LeaseLost


def _connector(server: Dovecot, user: str, password: str) -> Connector:
    endpoint = ImapEndpoint.model_validate(
        {
            "host": server.host,
            "port": server.port,
            "security": "none",
            "readTimeoutSeconds": 10,
            "auth": {"secretRef": {"name": "creds"}},
        }
    )
    return Connector(
        "destination", endpoint, user, StaticSecrets({"destination": {"password": password}}), "password"
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_kept_sessions_reuse_a_usable_connection_only(dovecot_pair: DovecotPair) -> None:
    server = dovecot_pair.destination
    user = f"kept-{secrets.token_hex(3)}@example.test"
    server.add_user(user, "pw")
    clock = _Clock()
    lost = {"yes": False}

    def guard() -> None:
        if lost["yes"]:
            raise LeaseLost("lost")

    async def run() -> None:
        c = _connector(server, user, "pw")
        c.guard = guard
        kept = KeptSessions(keep_seconds=60, listing_seconds=300, clock=clock)
        assert await kept.take(c) is None  # nothing kept yet: the run logs in
        first = await c.open()
        listed = await kept.listing("destination", first)
        assert any(f.name == "INBOX" for f in listed[0])
        await kept.give_back("destination", first)
        assert first.write_guard is None  # no run's guard while idle

        again = await kept.take(c)
        assert again is first and kept.reused == 1 and again.write_guard is guard
        await again.create("Made")  # a folder the kept listing lacks ...
        assert await kept.listing("destination", again) is listed  # ... until forgotten
        kept.forget_listings()
        assert any(f.name == "Made" for f in (await kept.listing("destination", again))[0])

        await kept.give_back("destination", again)
        lost["yes"] = True  # the Lease is lost while the connection is kept: the reuse's NOOP refuses
        try:
            await kept.take(c)
            raise AssertionError("a kept destination connection wrote without the Lease")
        except LeaseLost:
            pass
        lost["yes"] = False
        assert first.closed  # the write guard broke the exchange: never handed out again

        second = await c.open()
        await kept.give_back("destination", second)
        clock.now += 61  # idle too long: logged out, not reused
        assert await kept.take(c) is None and second.closed

        third = await c.open()
        await third.close()
        await kept.give_back("destination", third)  # a closed one is dropped
        assert await kept.take(c) is None

        fourth = await c.open()
        await kept.give_back("destination", fourth)
        await kept.close()
        assert fourth.closed and await kept.take(c) is None

    asyncio.run(run())
