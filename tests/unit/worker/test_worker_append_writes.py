"""The IMAP client gathers a MULTIAPPEND's lines and small literals into few transport writes (each write is
a send() and, over TLS, an encryption call and records of its own), and the bytes on the wire stay exact."""

from __future__ import annotations

import asyncio
import re

from mailferry_imap.client import AppendItem, ImapClient
from mailferry_imap.connection import WRITE_CHUNK
from mailferry_imap.parser import Spool

LITERAL_PLUS = re.compile(rb"\{(\d+)\+\}\r\n$")


async def _appending_server(received: list[list[bytes]]) -> tuple[asyncio.Server, int]:
    """Reads (MULTI)APPENDs with LITERAL+ byte for byte and answers each with APPENDUID."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS] ready\r\n")
        uid = 0
        while line := await reader.readline():
            tag = line.split(b" ", 1)[0]
            literals = []
            while m := LITERAL_PLUS.search(line):
                literals.append(await reader.readexactly(int(m.group(1))))
                line = await reader.readline()
            received.append(literals)
            if literals:
                writer.write(b"%s OK [APPENDUID 7 %d:%d] done\r\n" % (tag, uid + 1, uid + len(literals)))
                uid += len(literals)
            else:
                writer.write(tag + b" OK done\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _spool(data: bytes) -> Spool:
    spool = Spool(len(data))
    spool.file.write(data)
    return spool


def test_multiappend_of_small_messages_leaves_in_one_write_and_arrives_exact() -> None:
    async def go() -> None:
        received: list[list[bytes]] = []
        server, port = await _appending_server(received)
        async with server:
            c = await ImapClient.connect(
                "127.0.0.1", port, security="none", connect_timeout=5, read_timeout=5
            )
            writes: list[int] = []
            write = c._writer.write

            def counted(data: bytes | bytearray | memoryview) -> None:
                writes.append(len(data))
                write(data)

            c._writer.write = counted  # type: ignore[method-assign]
            small = [b"Subject: %d\r\n\r\n" % i + bytes([65 + i % 26]) * 2000 for i in range(100)]
            async with c.append_pipeline("INBOX") as pipe:
                tag = await pipe.send([AppendItem(b, ("\\Seen",), None) for b in small])
                assert await pipe.result(tag) == list(range(1, 101))
            assert received[-1] == small
            # 100 headers and 100 literals (~205 KB): one transport write, not 201
            assert len(writes) == 1 and writes[0] < WRITE_CHUNK

            big = b"B" * (WRITE_CHUNK + 1000)
            spooled = b"S" * (2 * WRITE_CHUNK + 17)
            mixed = [b"tiny one", big, b"tiny two", spooled, b"tiny three"]
            items = [AppendItem(_spool(b) if b is spooled else b) for b in mixed]
            writes.clear()
            async with c.append_pipeline("INBOX") as pipe:
                tag = await pipe.send(items)
                assert await pipe.result(tag) == list(range(101, 106))
            assert received[-1] == mixed
            assert max(writes) <= WRITE_CHUNK + 1000  # large literals are streamed, never gathered
            await c.logout()

    asyncio.run(go())
