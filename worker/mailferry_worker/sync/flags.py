"""Flags and keywords of messages already on the destination: set them as the source has them, and
in a delta carry over what changed on the source since the checkpoint's HIGHESTMODSEQ."""

from __future__ import annotations

from collections.abc import Sequence

from mailferry_api.imap import SyncOptions
from mailferry_imap.client import MessageMeta
from mailferry_imap.errors import CommandFailed

from ..plan import decide, flag_updates
from .folderstate import FolderState
from .meta import fetch_all_meta, hashes_for_pairing


class FlagSync(FolderState):
    """Flags and keywords of messages on both sides."""

    async def _apply_flags(
        self, pairs: Sequence[tuple[MessageMeta, MessageMeta]], permanent: set[str]
    ) -> None:
        for flags, uids in flag_updates(pairs, permanent).items():
            for i in range(0, len(uids), 500):
                try:
                    await self.dst.store_flags(uids[i : i + 500], flags)
                    self.stats.flags_updated += len(uids[i : i + 500])
                except CommandFailed:
                    self.stats.flag_errors += len(uids[i : i + 500])
                    self.counters.flag_errors += len(uids[i : i + 500])

    async def _delta_flags(
        self, modseq: int | None, base: int, permanent: set[str], dexists: int, duidnext: int | None
    ) -> None:
        """Propagate flag changes of messages already copied (UID <= base)."""
        ck = self.ckpt
        if base == 0:
            return
        if modseq is not None and ck.highest_mod_seq is not None:
            if modseq == ck.highest_mod_seq:
                return
            changed = [
                m
                for m in await self.src.fetch_meta(f"1:{base}", changedsince=ck.highest_mod_seq)
                if m.uid <= base
            ]
        else:
            changed = [m for m in await self.src.fetch_meta(f"1:{base}") if m.uid <= base]
        if not changed:
            return
        dmeta = await fetch_all_meta(self.dst, dexists, duidnext)
        s_hash, d_hash = await hashes_for_pairing(self.src, self.dst, changed, dmeta)
        dec = decide(changed, dmeta, SyncOptions(), source_hashes=s_hash, dest_hashes=d_hash)
        await self._apply_flags(dec.present, permanent)
