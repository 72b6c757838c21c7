"""The Kubernetes client survives cancelled requests: a request cancelled while it waits for a connection,
or while one is being made for it, gives its slot back (httpcore 1.0.9 did not, encode/httpcore#1093:
once every slot was lost, each later request failed against a healthy server). A follower cancels
requests all the time (a Lease renewal at release, a delta at SIGTERM or a lost Lease): it must not lose
its API client to that."""

from __future__ import annotations

import asyncio
import random

from mailferry_kube.client import KubeApi


async def _closing_api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP/1.1 server answering `{}` after a short, random delay, then closing the connection: every
    request needs a new connection, so queued requests are handed connections still to be made."""
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(4096)
            if not chunk:
                return
            head += chunk
        await asyncio.sleep(random.uniform(0.0, 0.005))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                     b"Connection: close\r\n\r\n{}")  # fmt: skip
        await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        return
    finally:
        writer.close()


async def test_cancelled_requests_under_contention_leave_the_client_usable() -> None:
    random.seed(1093)
    server = await asyncio.start_server(_closing_api, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = KubeApi(
        f"http://127.0.0.1:{port}",
        False,
        timeout=2.0,
        connections=1,  # one slot to leak
    )
    try:
        tasks: list[asyncio.Task[dict[str, object]]] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        while loop.time() < end:  # 16 requests queued for the slot, half cancelled at random
            tasks = [asyncio.create_task(api.get_lease("ns", f"l{i}")) for i in range(16)]
            for _ in range(random.randrange(1, 40)):
                await asyncio.sleep(0)
            for t in random.sample(tasks, 8):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        answers = await asyncio.gather(*(api.get_lease("ns", f"after{i}") for i in range(8)))
        assert answers == [{}] * 8  # and no timeout waiting for a connection
    finally:
        await api.close()
        server.close()
        await server.wait_closed()
