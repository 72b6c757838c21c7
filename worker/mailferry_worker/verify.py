"""Compare a source mailbox with its destination per folder: counts, Message-IDs, sizes, flags, dates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailferry_api.imap import SyncOptions
from mailferry_imap.client import ImapClient, MessageMeta, parse_internaldate
from mailferry_imap.credentials import Connector
from mailferry_imap.errors import FolderVanished

from .plan import FolderPlan, decide, needs_hash, normal_flags, plan_folders, skip_reason
from .sync.folder import content_hashes, fetch_all_meta


@dataclass
class FolderReport:
    source: str
    destination: str
    source_count: int = 0
    dest_count: int = 0
    skipped: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
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
    src: ImapClient, dst: ImapClient, plan: FolderPlan, options: SyncOptions, ignore_extra: bool = False
) -> FolderReport:
    rep = FolderReport(plan.source, plan.destination)
    sel = await src.select(plan.source, readonly=True)
    smeta = await fetch_all_meta(src, sel.exists, sel.uidnext)
    try:
        dsel = await dst.select(plan.destination, readonly=True)
        dmeta = await fetch_all_meta(dst, dsel.exists, dsel.uidnext)
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
    if not ignore_extra:
        rep.extra = [_label(d) for d in dmeta if d.uid not in matched_dst]
    for s, d in dec.present:
        if normal_flags(s.flags) != normal_flags(d.flags):
            rep.flags.append(f"{_label(s)} source={sorted(s.flags)} destination={sorted(d.flags)}")
        if not _same_instant(s.internaldate, d.internaldate):
            rep.dates.append(f"{_label(s)} source={s.internaldate} destination={d.internaldate}")
    return rep


async def verify_mailbox(
    src_c: Connector, dst_c: Connector, options: SyncOptions, ignore_extra: bool = False
) -> list[FolderReport]:
    src = await src_c.open()
    dst = await dst_c.open()
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
                reports.append(await verify_folder(src, dst, p, options, ignore_extra))
            except FolderVanished as exc:
                reports.append(FolderReport(p.source, p.destination, error=exc.message))
        return reports
    finally:
        await src.close()
        await dst.close()


__all__ = ["FolderReport", "skip_reason", "verify_folder", "verify_mailbox"]
