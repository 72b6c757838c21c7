"""The regular-expression FETCH metadata parser gives what the general tokenizer gives, or steps aside."""

from __future__ import annotations

import pytest

from mailferry_imap.client import _fast_fetch_meta, _slow_fetch_meta
from mailferry_imap.parser import SENTINEL, Response

HDR = b"Message-ID: <abc@example.test>\r\n\r\n"


def resp(text: bytes, *literals: bytes) -> Response:
    """A response as the reader builds it: each literal replaced by {N} + SENTINEL in the line."""
    for lit in literals:
        text = text.replace(b"{LIT}", b"{%d}" % len(lit) + SENTINEL, 1)
    return Response(text, list(literals))


USUAL = [
    resp(
        b'* 3 FETCH (UID 17 MODSEQ (9) FLAGS (\\Seen $Label1) INTERNALDATE "24-Nov-2026 10:00:00 +0000" '
        b"RFC822.SIZE 2500 BODY[HEADER.FIELDS (MESSAGE-ID)] {LIT})",
        HDR,
    ),
    resp(b'* 1 FETCH (UID 5 FLAGS () INTERNALDATE "01-Jan-2024 00:00:00 +0000" RFC822.SIZE 0)'),
    resp(
        b'* 2 FETCH (FLAGS (\\Answered) UID 6 RFC822.SIZE 12 INTERNALDATE "01-Jan-2024 00:00:00 +0000" '
        b'BODY[HEADER.FIELDS ("MESSAGE-ID")] {LIT})',
        b"\r\n",
    ),
]
ODD = [
    resp(
        b'* 1 FETCH (UID 5 FLAGS (\\Seen) INTERNALDATE "x" RFC822.SIZE 3 '
        b"BODY[HEADER.FIELDS (MESSAGE-ID)] NIL)"
    ),
    resp(b"* 1 FETCH (UID 5 FLAGS ([Gmail]x) RFC822.SIZE 3)"),
    resp(b"* 1 FETCH (uid 5 flags (\\Seen))"),
    resp(b"* 1 FETCH (UID 5 X-GM-MSGID 123)"),
    resp(b"* 1 FETCH (FLAGS (\\Seen))"),
    resp(b"* 1 FETCH (UID 5  FLAGS (\\Seen))"),
    resp(b"* 1 FETCH (UID 5 FLAGS (\\Seen) UID)"),
]


@pytest.mark.parametrize("r", USUAL)
def test_usual_shapes_parse_like_the_tokenizer(r: Response) -> None:
    fast = _fast_fetch_meta(r)
    assert fast is not None
    assert fast == _slow_fetch_meta(r)


@pytest.mark.parametrize("r", ODD)
def test_other_shapes_go_to_the_tokenizer(r: Response) -> None:
    assert _fast_fetch_meta(r) is None


def test_usual_shape_values() -> None:
    m = _fast_fetch_meta(USUAL[0])
    assert m is not None
    assert (m.uid, m.flags, m.size, m.message_id, m.modseq) == (
        17,
        ("\\Seen", "$Label1"),
        2500,
        "<abc@example.test>",
        9,
    )
