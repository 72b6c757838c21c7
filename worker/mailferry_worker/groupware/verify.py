"""`mailferry verify` for contacts and calendars: per collection, every source item by UID on the
destination with the same content (fingerprints from items.py, so a server's re-serialisation is no
difference), nothing twice, and what is only on the destination."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mailferry_api.groupware import CollectionKind
from mailferry_api.mailboxsync import MailboxSyncSpec
from mailferry_imap.credentials import SecretSource

from ..clients import close_all
from . import items as it
from .dav import DavClient, DavError
from .plan import destination_name
from .runner import open_pair, wanted_kinds

MAX_LISTED = 50


@dataclass
class CollectionReport:
    kind: CollectionKind
    source: str
    destination: str
    source_count: int = 0
    dest_count: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unparsable: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def differences(self) -> int:
        return (
            len(self.missing)
            + len(self.changed)
            + len(self.duplicated)
            + len(self.extra)
            + (1 if self.error else 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "destination": self.destination,
            "sourceCount": self.source_count,
            "destinationCount": self.dest_count,
            "missing": self.missing[:MAX_LISTED],
            "changed": self.changed[:MAX_LISTED],
            "duplicated": self.duplicated[:MAX_LISTED],
            "extra": self.extra[:MAX_LISTED],
            "unparsable": self.unparsable[:MAX_LISTED],
            "error": self.error,
            "differences": self.differences,
        }


async def _by_uid(
    client: DavClient, kind: CollectionKind, url: str, rep: CollectionReport
) -> tuple[dict[str, str], list[str], int]:
    names = list(await client.listing(url))
    fetched = await client.fetch(kind, url, names)
    fps: dict[str, str] = {}
    uids: list[str] = []
    for name, item in fetched.items():
        try:
            f = it.facts(kind, item.data)
        except it.BadItem:
            rep.unparsable.append(name)
            continue
        uid = f.uid or f"name:{name}"
        uids.append(uid)
        fps[uid] = f.fingerprint
    return fps, uids, len(names)


async def verify_collections(
    src: DavClient, dst: DavClient, kinds: list[CollectionKind], ignore_extra: bool = False
) -> list[CollectionReport]:
    reports: list[CollectionReport] = []
    for kind in kinds:
        _, sources = await src.discover(kind)
        dest_home, dests = await dst.discover(kind)
        for s in sources:
            d_url = dest_home.rstrip("/") + "/" + destination_name(s.name, "") + "/"
            rep = CollectionReport(kind, s.url, d_url)
            reports.append(rep)
            if not any(d.url.rstrip("/") == d_url.rstrip("/") for d in dests):
                rep.error = "destination collection does not exist"
                continue
            s_fp, _, rep.source_count = await _by_uid(src, kind, s.url, rep)
            d_fp, d_uids, rep.dest_count = await _by_uid(dst, kind, d_url, rep)
            rep.duplicated = sorted(u for u, n in Counter(d_uids).items() if n > 1)
            for uid, fp in sorted(s_fp.items()):
                if uid not in d_fp:
                    rep.missing.append(uid)
                elif d_fp[uid] != fp:
                    rep.changed.append(uid)
            if not ignore_extra:
                rep.extra = sorted(set(d_fp) - set(s_fp))
    return reports


async def verify_mailboxsync_collections(
    spec: MailboxSyncSpec, secrets: SecretSource, ca_file: str | None = None, ignore_extra: bool = False
) -> list[CollectionReport]:
    """The collections of one MailboxSync, with the credentials its worker uses."""
    kinds = wanted_kinds(spec)
    if not kinds:
        return []
    src, dst = await open_pair(spec, secrets, ca_file)
    try:
        if not isinstance(src, DavClient) or not isinstance(dst, DavClient):
            raise DavError("verify compares CalDAV/CardDAV sides only for now", "GroupwareTypeNotSupported")
        return await verify_collections(src, dst, kinds, ignore_extra)
    finally:
        await close_all((src, dst))


def print_collection_reports(reports: list[CollectionReport]) -> int:
    total = 0
    for r in reports:
        total += r.differences
        print(
            f"{'OK' if r.differences == 0 else 'DIFF':4} {r.kind} {r.source} -> {r.destination}: "
            f"source={r.source_count} destination={r.dest_count} missing={len(r.missing)} "
            f"changed={len(r.changed)} duplicated={len(r.duplicated)} extra={len(r.extra)}"
        )
        if r.error:
            print(f"     error: {r.error}")
        for what in ("missing", "changed", "duplicated", "extra", "unparsable"):
            for uid in getattr(r, what)[:20]:
                print(f"     {what}: {uid}")
    print(
        f"collections: {len(reports)} source={sum(r.source_count for r in reports)} "
        f"destination={sum(r.dest_count for r in reports)} differences={total}"
    )
    return total
