"""What a folder holds, read in bounded pieces: message metadata in UID windows, content hashes of bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mailferry_imap.client import ImapClient, MessageMeta
from mailferry_imap.parser import Literal, Spool

from ..plan import needs_hash

META_RANGE = 20000  # metadata is fetched in UID windows of this many UIDs


def _hash_literal(lit: Literal) -> str:
    h = hashlib.sha256()
    if isinstance(lit, Spool):
        lit.file.seek(0)
        while chunk := lit.file.read(1 << 20):
            h.update(chunk)
    else:
        h.update(lit)
    return h.hexdigest()


async def content_hashes(client: ImapClient, uids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for i in range(0, len(uids), 50):
        bodies = await client.fetch_bodies(uids[i : i + 50])
        for uid, lit in bodies.items():
            out[uid] = _hash_literal(lit)
            if isinstance(lit, Spool):
                lit.close()
    return out


async def hashes_for_pairing(
    src: ImapClient, dst: ImapClient, smeta: Sequence[MessageMeta], dmeta: Sequence[MessageMeta]
) -> tuple[dict[int, str], dict[int, str]]:
    """Content hashes (source, destination) of the messages without Message-ID that identity needs to
    tell apart (a size on both sides); each client has its folder selected."""
    s_need, d_need = needs_hash(smeta, dmeta)
    s_hash = await content_hashes(src, s_need) if s_need else {}
    d_hash = await content_hashes(dst, d_need) if d_need else {}
    return s_hash, d_hash


async def fetch_all_meta(
    client: ImapClient, exists: int, uidnext: int | None, low: int = 1, *, message_id: bool = True
) -> list[MessageMeta]:
    """Metadata of every message with UID >= low, in UID windows (bounded response sizes).

    ``message_id`` False: without the Message-ID header (nothing to match against: cheaper for both)."""
    if exists == 0:
        return []
    top = uidnext - 1 if uidnext else None
    if top is None:
        return [m for m in await client.fetch_meta(f"{low}:*", with_message_id=message_id) if m.uid >= low]
    out: list[MessageMeta] = []
    start = low
    while start <= top:
        end = start + META_RANGE - 1
        rng = f"{start}:{end}" if end < top else f"{start}:*"
        out += [m for m in await client.fetch_meta(rng, with_message_id=message_id) if m.uid >= start]
        if end >= top:
            break
        start = end + 1
    return out
