from __future__ import annotations

import asyncio

from mailferry_imap import utf7
from mailferry_imap.client import (
    compress_uids,
    format_internaldate,
    parse_internaldate,
    parse_message_id,
)
from mailferry_imap.parser import ResponseReader, Spool, pairs, tokenize


def test_tokenize_fetch_with_literal_and_bracketed_atom() -> None:
    line = (
        b'12 FETCH (UID 5 FLAGS (\\Seen $Work) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 44 '
        b"BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\x00 MODSEQ (7))"
    )
    toks = tokenize(line, [b"abcd"])
    attrs = pairs(toks[2])
    assert attrs["UID"] == b"5"
    assert attrs["FLAGS"] == [b"\\Seen", b"$Work"]
    assert attrs["INTERNALDATE"] == b"17-Jul-1996 02:44:25 -0700"
    assert attrs["BODY[HEADER.FIELDS (MESSAGE-ID)]"] == b"abcd"
    assert attrs["MODSEQ"] == [b"7"]


def test_tokenize_quoted_escapes_and_nil() -> None:
    toks = tokenize(b'(\\HasNoChildren) "/" "a \\"b\\" \\\\c" NIL')
    assert toks == [[b"\\HasNoChildren"], b"/", b'a "b" \\c', b"NIL"]


def test_tokenize_is_iterative_for_huge_and_deep_input() -> None:
    deep = b"(" * 200_000 + b"x" + b")" * 200_000
    toks = tokenize(deep)
    depth = 0
    cur = toks
    while isinstance(cur, list) and cur:
        cur = cur[0]
        depth += 1
    assert depth == 200_001
    wide = b"(" + b" ".join(b"%d" % i for i in range(300_000)) + b")"
    assert len(tokenize(wide)[0]) == 300_000


def test_reader_spools_large_literals_and_keeps_small_ones_in_memory() -> None:
    async def go() -> None:
        r = asyncio.StreamReader(limit=1 << 20)
        big = b"x" * (3 << 20)
        r.feed_data(b"* 1 FETCH (UID 9 BODY[] {%d}\r\n" % len(big) + big + b")\r\n")
        r.feed_data(b"* 2 FETCH (UID 10 BODY[] {3}\r\nabc)\r\n")
        r.feed_eof()
        rd = ResponseReader(r, timeout=5)
        first = await rd.read()
        second = await rd.read()
        attrs = pairs(tokenize(first.rest_after(3), first.literals)[0])
        assert isinstance(attrs["BODY[]"], Spool) and attrs["BODY[]"].size == len(big)
        assert attrs["BODY[]"].read_all() == big
        attrs2 = pairs(tokenize(second.rest_after(3), second.literals)[0])
        assert attrs2["BODY[]"] == b"abc"
        first.close()

    asyncio.run(go())


def test_utf7_vectors_and_roundtrip() -> None:
    assert utf7.encode("Entwürfe") == "Entw&APw-rfe"
    assert utf7.encode("A & B") == "A &- B"
    assert utf7.encode("日本語") == "&ZeVnLIqe-"
    for name in ("Entwürfe", "Ünïcödé/日本語 & Co", "plain", "&&", "😀 emoji"):
        assert utf7.decode(utf7.encode(name)) == name
    assert utf7.decode("Entw&APw-rfe") == "Entwürfe"


def test_uid_sets_dates_and_message_id() -> None:
    assert compress_uids([5, 1, 2, 3, 7, 9, 10]) == "1:3,5,7,9:10"
    d = parse_internaldate("17-Jul-1996 02:44:25 -0700")
    assert format_internaldate(d) == "17-Jul-1996 02:44:25 -0700"
    assert parse_message_id(b"Message-ID:\r\n <a@b>\r\n\r\n") == "<a@b>"
    assert parse_message_id(b"\r\n") is None


def test_reader_gathers_lines_longer_than_its_buffer() -> None:
    async def go() -> None:
        r = asyncio.StreamReader(limit=1024)
        long = b"* SEARCH " + b" ".join(b"%d" % i for i in range(20000))
        r.feed_data(long + b"\r\n* OK short\r\n")
        r.feed_eof()
        rd = ResponseReader(r, timeout=5)
        assert (await rd.read()).line == long
        assert (await rd.read()).line == b"* OK short"

    asyncio.run(go())
