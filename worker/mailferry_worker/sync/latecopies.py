"""After an interruption, a server may show an APPEND of the lost connection late: check before
copying that nothing like it arrived, and remove this run's twin of one that arrived in between."""

from __future__ import annotations

from collections.abc import Sequence

from mailferry_api.imap import SyncOptions
from mailferry_imap.client import MessageMeta, compress_uids, parse_internaldate
from mailferry_imap.errors import DestinationChanged

from ..plan import decide, needs_hash
from .folderstate import FolderState
from .meta import content_hashes


class LateCopies(FolderState):
    """The checks around a re-match's copy for APPENDs that the destination shows late."""

    async def _check_unchanged(self, copy: Sequence[MessageMeta]) -> None:
        """After an interruption: nothing about to be copied may have reached the destination since this
        match's SELECT.

        A server may commit an APPEND of the lost connection late, after this run looked; copying then
        would duplicate it. Messages that arrived meanwhile and look like one to copy (same Message-ID
        and size, or same size and INTERNALDATE) mean: match again (DestinationChanged). Mail delivered
        to the destination folder meanwhile does not stop the copy.
        """
        now = await self.dst.exists_now()
        if now is None or now == self._dest_exists:
            return
        low = self._dest_uidnext or 1
        arrived = [m for m in await self.dst.fetch_meta(f"{low}:*") if m.uid >= low]
        seen: set[tuple[str, ...]] = set().union(*(_loose_identity(m) for m in arrived))
        if any(_loose_identity(m) & seen for m in copy):
            raise DestinationChanged(
                f"destination folder {self.plan.destination} got {len(arrived)} message(s) during the "
                "re-match, some like those to copy"
            )

    async def _remove_late_twins(self) -> None:
        """Messages that took destination UIDs between this run's look and its APPENDs (an interrupted
        run's APPEND the server showed late): where one is the same message as one this run just
        appended (Message-ID and size, or the same content), remove this run's copy (UID EXPUNGE of
        exactly that UID), so the destination holds it once."""
        gaps, self._gaps = self._gaps, []
        if not self.dst.has("UIDPLUS"):
            self.log("late_twins_unchecked", level="warning", folder=self.plan.source, ranges=len(gaps))
            return
        remove: list[int] = []
        for lo, hi, ours in gaps:
            others = [m for m in await self.dst.fetch_meta(f"{lo}:{hi}") if lo <= m.uid <= hi]
            if not others:
                continue
            mine = await self.dst.fetch_meta(compress_uids(ours))
            o_need, m_need = needs_hash(others, mine)
            hashes = await content_hashes(self.dst, o_need + m_need) if o_need or m_need else {}
            dec = decide(mine, others, SyncOptions(), source_hashes=hashes, dest_hashes=hashes)
            remove += [m.uid for m, _ in dec.present]
        if remove:
            await self.dst.store_flags(remove, ["\\Deleted"], mode="+FLAGS")
            await self.dst.uid_expunge(remove)
            self._owned.remove(remove)
            self._store_owned()
            self.log("late_twins_removed", level="warning", folder=self.plan.source, count=len(remove))


def _loose_identity(m: MessageMeta) -> frozenset[tuple[str, ...]]:
    """What a copy of ``m`` would share with it, as a set to intersect: (Message-ID, size) when known,
    and (size, INTERNALDATE) always (an APPEND keeps both; a source fetched without Message-IDs)."""
    try:
        when = str(parse_internaldate(m.internaldate).timestamp())  # servers may show other zones
    except ValueError:
        when = m.internaldate
    out = {("d", str(m.size), when)}
    if m.message_id:
        out.add(("m", m.message_id.strip(), str(m.size)))
    return frozenset(out)
