from __future__ import annotations

import asyncio

import pytest

from mailferry_imap.client import ImapClient
from mailferry_imap.errors import AuthenticationFailed, ConnectionLost, Throttled, classify_text


def test_throttle_classification() -> None:
    assert isinstance(classify_text("Too many requests", "THROTTLED"), Throttled)
    assert isinstance(classify_text("Service temporarily unavailable", "UNAVAILABLE"), Throttled)
    ms = classify_text("Request is throttled. Suggested Backoff Time: 2344 milliseconds", None)
    assert ms is not None and ms.retry_after == pytest.approx(2.344)
    assert isinstance(classify_text("Server Unavailable. 15", None), Throttled)
    assert classify_text("Mailbox doesn't exist: Foo", "NONEXISTENT") is None


async def _scripted_server(replies: dict[bytes, bytes]) -> tuple[asyncio.Server, int]:
    """A few canned lines standing in for providers that cannot run here (Microsoft 365, Gmail)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] ready\r\n")
        while line := await reader.readline():
            tag, _, rest = line.partition(b" ")
            verb = rest.split(b" ", 1)[0].strip().upper()
            reply = replies.get(verb, b"%s OK done\r\n")
            writer.write(reply % tag if b"%s" in reply else reply)
            await writer.drain()
            if reply.startswith(b"* BYE"):
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_client_maps_provider_throttling_bye_and_auth() -> None:
    async def go() -> None:
        server, port = await _scripted_server(
            {
                b"LOGIN": b"%s NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
                b"SELECT": b"%s NO [THROTTLED] slow down\r\n",
                b"STATUS": b"%s NO Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n",
                b"NOOP": b"* BYE Server Unavailable. 21\r\n",
            }
        )
        async with server:
            c = await ImapClient.connect(
                "127.0.0.1", port, security="none", connect_timeout=5, read_timeout=5
            )
            with pytest.raises(AuthenticationFailed):
                await c.login("u", "p")
            with pytest.raises(Throttled):
                await c.select("INBOX")
            with pytest.raises(Throttled) as exc:
                await c.status("INBOX")
            assert exc.value.retry_after == pytest.approx(1.5)
            with pytest.raises((Throttled, ConnectionLost)):
                await c.noop()

    asyncio.run(go())


def test_destination_full_is_transient_not_a_skip() -> None:
    from mailferry_imap.errors import DestinationFull, classify_full

    full = classify_full("Quota exceeded (mailbox for user is full)", None)
    assert isinstance(full, DestinationFull) and full.transient and full.reason == "DestinationFull"
    assert isinstance(classify_full("over quota", "OVERQUOTA"), DestinationFull)
    assert classify_full("Invalid message", "PARSE") is None
