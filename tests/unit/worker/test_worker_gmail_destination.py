"""A Gmail destination looks a message up by its Message-ID before uploading it (the pure part)."""

from __future__ import annotations

from mailferry_imap.parser import Spool
from mailferry_worker.gmail.destination import HEAD_BYTES, message_id_of

HEAD = b"From: a@x\r\nMessage-ID:\r\n <one@x>\r\nSubject: s\r\n\r\n"


def test_message_id_from_the_header_only() -> None:
    assert message_id_of(HEAD + b"body") == "<one@x>"  # folded header
    assert message_id_of(b"From: a@x\r\n\r\nMessage-ID: <in-body@x>\r\n") is None
    assert message_id_of(b"From: a@x\r\n\r\n") is None


def test_message_id_of_a_spooled_body_leaves_it_readable() -> None:
    spool = Spool.from_bytes(HEAD + b"x" * (HEAD_BYTES * 2))
    try:
        assert message_id_of(spool) == "<one@x>"
        assert spool.read_all().startswith(b"From: a@x")
    finally:
        spool.close()
