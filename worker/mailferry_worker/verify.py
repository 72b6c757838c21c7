"""Compare a source mailbox with its destination per folder: counts, Message-IDs, sizes, flags, dates.

Messages only on the destination are told apart by kind when the MailboxSync's checkpoints are known
(``owned``: the destination UIDs of mailferry's copies): a *copy* whose source message is gone is a
difference (a deletion not carried over); mail that *arrived directly* at the destination is listed but
is no difference; without checkpoints the kind is *unknown* and counts as a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailferry_api.imap import SyncOptions
from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import ImapClient, MessageMeta, parse_internaldate
from mailferry_imap.credentials import Connector
from mailferry_imap.errors import FolderVanished

from .clients import close_all, open_both
from .gmail.regroup import regroup
from .gmail.source import gmail_connector, is_gmail_views
from .mirrorplan import UidRanges
from .plan import FolderPlan, decide, needs_hash, normal_flags, plan_folders, skip_reason
from .sync.meta import content_hashes, fetch_all_meta


@dataclass
class FolderReport:
    source: str
    destination: str
    source_count: int = 0
    dest_count: int = 0
    skipped: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # mailferry's copies, or of unknown kind: differences
    extra_direct: list[str] = field(default_factory=list)  # arrived at the destination by itself
    extra_copies: int = 0  # of ``extra``: known to be mailferry's copies
    placed_elsewhere: list[str] = field(default_factory=list)  # Gmail, relabelled since: gmail/regroup.py
    flags: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def differences(self) -> int:
        return (
            len(self.missing) + len(self.extra) + len(self.flags) + len(self.dates) + (1 if self.error else 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "sourceCount": self.source_count,
            "destinationCount": self.dest_count,
            "skipped": self.skipped,
            "missing": self.missing,
            "extra": self.extra,
            "extraByKind": {
                "copies": self.extra_copies,
                "direct": len(self.extra_direct),
                "unknown": len(self.extra) - self.extra_copies,
            },
            "extraDirect": self.extra_direct,
            "placedElsewhere": self.placed_elsewhere,
            "flags": self.flags,
            "dates": self.dates,
            "error": self.error,
            "differences": self.differences,
        }


def _label(m: MessageMeta) -> str:
    return f"uid={m.uid} size={m.size} message-id={m.message_id or '-'}"


def _same_instant(a: str, b: str) -> bool:
    try:
        return parse_internaldate(a) == parse_internaldate(b)
    except ValueError:
        return a.strip() == b.strip()


async def verify_folder(
    src: ImapClient,
    dst: ImapClient,
    plan: FolderPlan,
    options: SyncOptions,
    ignore_extra: bool = False,
    ckpt: FolderCheckpoint | None = None,
) -> FolderReport:
    rep = FolderReport(plan.source, plan.destination)
    sel = await src.select(plan.source, readonly=True)
    smeta = await fetch_all_meta(src, sel.exists, sel.uidnext)
    owned: set[int] | None = None
    # Keywords the destination refused when copying (status, per folder): reported there, no difference.
    refused = set(ckpt.refused_keywords or ()) if ckpt is not None else set()
    try:
        dsel = await dst.select(plan.destination, readonly=True)
        dmeta = await fetch_all_meta(dst, dsel.exists, dsel.uidnext)
        if ckpt is not None and ckpt.owned_uid_validity == dsel.uidvalidity:
            owned = set(UidRanges(ckpt.owned))
    except FolderVanished:
        dmeta = []
        rep.error = f"destination folder {plan.destination!r} does not exist"
    rep.source_count, rep.dest_count = len(smeta), len(dmeta)
    s_need, d_need = needs_hash(smeta, dmeta)
    s_hash = await content_hashes(src, s_need) if s_need else {}
    d_hash = await content_hashes(dst, d_need) if d_need else {}
    matching = options.model_copy(update={"skip_duplicates": False})
    dec = decide(smeta, dmeta, matching, source_hashes=s_hash, dest_hashes=d_hash)
    matched_dst = {d.uid for _, d in dec.present}
    rep.skipped = len(dec.skipped)
    for m in dec.copy:
        if (
            options.skip_duplicates
            and m.message_id
            and any(d.message_id == m.message_id for _, d in dec.present)
        ):
            rep.skipped += 1
            continue
        rep.missing.append(_label(m))
    for d in dmeta:
        if d.uid in matched_dst:
            continue
        if owned is not None and d.uid not in owned:
            rep.extra_direct.append(_label(d))
        elif not ignore_extra:
            rep.extra.append(("copy " if owned is not None else "") + _label(d))
            rep.extra_copies += owned is not None
    for s, d in dec.present:
        if normal_flags(set(s.flags) - refused) != normal_flags(d.flags):
            rep.flags.append(f"{_label(s)} source={sorted(s.flags)} destination={sorted(d.flags)}")
        if not _same_instant(s.internaldate, d.internaldate):
            rep.dates.append(f"{_label(s)} source={s.internaldate} destination={d.internaldate}")
    return rep


async def verify_mailbox(
    src_c: Connector,
    dst_c: Connector,
    options: SyncOptions,
    ignore_extra: bool = False,
    checkpoints: Sequence[FolderCheckpoint] = (),
) -> list[FolderReport]:
    """``checkpoints``: the MailboxSync's (status.folders), to tell extra messages apart by kind."""
    by_source = {c.name: c for c in checkpoints}
    src_c = gmail_connector(src_c)  # a Gmail source: its views, compared per message (gmail/regroup.py)
    src, dst = await open_both(src_c.open(), dst_c.open())
    try:
        sfolders = await src.list_folders()
        sprefix, _ = await src.namespace()
        dfolders = await dst.list_folders()
        dprefix, ddelim = await dst.namespace()
        plans = plan_folders(
            sfolders,
            dfolders,
            options.folders,
            source_prefix=sprefix,
            dest_prefix=dprefix,
            dest_delimiter=ddelim,
        )
        reports: list[FolderReport] = []
        for p in plans:
            try:
                ck = by_source.get(p.source)
                if ck is not None and ck.destination != p.destination:
                    ck = None
                reports.append(await verify_folder(src, dst, p, options, ignore_extra, ck))
            except FolderVanished as exc:
                reports.append(FolderReport(p.source, p.destination, error=exc.message))
        if is_gmail_views(src):
            regroup(reports)
        return reports
    finally:
        await close_all((src, dst))


__all__ = ["FolderReport", "skip_reason", "verify_folder", "verify_mailbox"]
