"""Which folders one pipelined STATUS round trip proves unchanged since their checkpoints: those cost
no SELECT and no destination connection."""

from __future__ import annotations

from collections.abc import Callable

from mailferry_api.mailboxsync import FolderCheckpoint, MailboxSyncSpec
from mailferry_imap.client import ImapClient
from mailferry_imap.errors import ImapError

from ..plan import FolderPlan, folder_unchanged, plan_folders
from .connections import Listing, listing


async def all_unchanged(
    src: ImapClient,
    spec: MailboxSyncSpec,
    ckpts: dict[str, FolderCheckpoint],
    listed: Listing | None = None,
) -> bool:
    """True when the source proves every selected folder unchanged since its checkpoint (``listed``: the
    source's folders and namespace when known already, else listed here).

    Any doubt (an error, a new folder, a folder without a finished checkpoint) means False: the
    normal path then runs and reports errors properly.
    """
    try:
        folders, (prefix, _) = listed or await listing(src)
        plans = plan_folders(folders, [], spec.folders, source_prefix=prefix)
        if not plans or any((ck := ckpts.get(p.source)) is None or ck.last_sync_time is None for p in plans):
            return False
        statuses = await src.status_many([p.source for p in plans])
        for p in plans:
            st = statuses.get(p.source)
            if not isinstance(st, dict) or not folder_unchanged(
                ckpts[p.source], st, mirror=spec.deletions == "mirror"
            ):
                return False
        for p in plans:
            ck = ckpts[p.source]
            ck.pending = 0
            ck.messages = statuses[p.source].get("MESSAGES", ck.messages)  # type: ignore[union-attr]
        return True
    except ImapError:
        return False


async def changed_only(
    src: ImapClient,
    plans: list[FolderPlan],
    ckpts: dict[str, FolderCheckpoint],
    *,
    mirror: bool,
    log: Callable[..., None],
) -> list[FolderPlan]:
    """One pipelined STATUS round trip for every folder; drop those the checkpoint proves unchanged."""
    known = [p for p in plans if p.source in ckpts]
    if not known:
        return plans
    statuses = await src.status_many([p.source for p in known])
    out: list[FolderPlan] = []
    for p in plans:
        st = statuses.get(p.source)
        ck = ckpts.get(p.source)
        if isinstance(st, dict) and ck is not None and folder_unchanged(ck, st, mirror=mirror):
            ck.pending = 0
            ck.messages = st.get("MESSAGES", ck.messages)
            continue
        if isinstance(st, ImapError) and st.transient:
            raise st
        out.append(p)  # changed, new, or an error the folder sync reports properly
    log("folders_changed", count=len(out), unchanged=len(plans) - len(out))
    return out
