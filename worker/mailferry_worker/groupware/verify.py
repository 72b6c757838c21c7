"""`mailferry verify` for contacts and calendars: per collection, every source item by UID on the
destination with the same content, nothing twice, and what is only on the destination. Between two
CalDAV/CardDAV servers the content is the fingerprint from items.py (a server's re-serialisation is no
difference); when a side is a cloud API (which re-renders every item by design) it is the portable
projection of portable.py, and an item the destination type cannot hold whole is `partial` (with what it
lost), compared on what it holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mailferry_api.groupware import CollectionKind
from mailferry_api.mailboxsync import MailboxSyncSpec
from mailferry_imap.credentials import SecretSource

from ..clients import close_all
from . import items as it
from . import portable as pt
from .cloud import ByKind, split_member
from .dav import Collection, DavClient
from .google import GoogleCalendar
from .graph import Graph
from .people import GooglePeople
from .plan import destination_name
from .runner import Side_, open_pair

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
    partial: dict[str, str] = field(default_factory=dict)  # UID -> what the destination type cannot hold
    changed_fields: dict[str, list[str]] = field(default_factory=dict)  # UID -> projection keys (cloud sides)
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
            "partialCount": len(self.partial),
            "partial": [{"uid": u, "reason": r} for u, r in list(self.partial.items())[:MAX_LISTED]],
            "changedFields": {u: f for u, f in list(self.changed_fields.items())[:MAX_LISTED]},
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


async def _dav_collection(
    src: DavClient,
    dst: DavClient,
    kind: CollectionKind,
    s: Collection,
    dest_home: str,
    dests: list[Collection],
    ignore_extra: bool,
) -> CollectionReport:
    d_url = dest_home.rstrip("/") + "/" + destination_name(s.name, "") + "/"
    rep = CollectionReport(kind, s.url, d_url)
    if not any(d.url.rstrip("/") == d_url.rstrip("/") for d in dests):
        rep.error = "destination collection does not exist"
        return rep
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
    return rep


def destination_type(side: Side_, kind: CollectionKind) -> pt.DestinationType:
    """Which mapping writes `kind` on this side (what it keeps and loses: portable.py)."""
    if isinstance(side, ByKind):
        side = side.sides[kind]
    if isinstance(side, GooglePeople):
        return "google-people"
    if isinstance(side, GoogleCalendar):
        return "google-calendar"
    if isinstance(side, Graph):
        return "graph"
    return "dav"


async def _texts(side: Side_, kind: CollectionKind, url: str) -> tuple[int, dict[str, str]]:
    """(members listed, name -> iCalendar/vCard text) of one collection, through every side's surface."""
    if isinstance(side, DavClient):
        names = list(await side.listing(url))
    else:
        names = sorted((await side.changes(url, None)).changed)  # no token: the full listing
    fetched = await side.fetch(kind, url, names)
    return len(names), {name: item.data for name, item in fetched.items()}


def _projected(
    kind: CollectionKind, texts: dict[str, str], rep: CollectionReport
) -> list[tuple[str, str, str, pt.Projection]]:
    """(UID, name, text, projection) per item, by name; what does not parse is listed as unparsable."""
    out = []
    for name, text in sorted(texts.items()):
        try:
            uid, proj = pt.project(kind, text)
        except ValueError:
            rep.unparsable.append(name)
            continue
        out.append((uid or f"name:{name}", name, text, proj))
    return out


async def _portable_collection(
    src: Side_, dst: Side_, kind: CollectionKind, s: Collection, dest_home: str, ignore_extra: bool
) -> CollectionReport:
    d_url = dst.destination_url(kind, dest_home, s)
    rep = CollectionReport(kind, s.url, d_url)
    dest = await dst.collection(kind, d_url)
    if dest is None:
        rep.error = "destination collection does not exist"
        return rep
    d_type = destination_type(dst, kind)
    # People: every address book lands in the one contact list, its cards in a group of the book's name.
    book = split_member(d_url)[1] if d_type == "google-people" else None
    rep.source_count, src_texts = await _texts(src, kind, s.url)
    d_listed, dst_texts = await _texts(dst, kind, dest.url)
    projected = _projected(kind, src_texts, rep)
    source = {uid: (name, text, proj) for uid, name, text, proj in projected}
    # People: the book's contact group, and each group card's, read back as categories of their members.
    groups = {book} | {str(p["fn"]) for *_, p in projected if p["kind"] == "group"} if book else set()
    if groups:
        source = {u: (n, t, pt.without_categories(p, groups)) for u, (n, t, p) in source.items()}
    held: dict[str, pt.Projection] = {}
    uids: list[str] = []
    for uid, _, _, proj in _projected(kind, dst_texts, rep):
        if book is not None:
            if book not in proj.get("categories", frozenset()):  # type: ignore[operator]
                continue  # another address book's card, or one not from mailferry
            proj = pt.without_categories(proj, groups)
        uids.append(uid)
        held[uid] = proj
    rep.dest_count = len(uids) if book is not None else d_listed
    rep.duplicated = sorted(u for u, n in Counter(uids).items() if n > 1)
    for uid, (name, text, proj) in source.items():
        lost = pt.losses(d_type, kind, text, name)
        skip = pt.NOT_KEPT[d_type] | pt.excluded_fields(lost)
        if lost:
            rep.partial[uid] = "; ".join(lost)
        if pt.ALL in skip:
            continue  # nothing of it is held as such: reported partial, not missing
        if uid not in held:
            rep.missing.append(uid)
            continue
        diff = pt.differences(proj, held[uid], skip)
        if diff:
            rep.changed.append(uid)
            rep.changed_fields[uid] = diff
    if not ignore_extra:
        rep.extra = sorted(set(held) - set(source))
    return rep


async def verify_collections(
    src: Side_, dst: Side_, kinds: list[CollectionKind], ignore_extra: bool = False
) -> list[CollectionReport]:
    """Every source collection of each kind against its destination collection (found the way the worker
    finds it): fingerprints between two DAV servers, the portable projection when a side is a cloud API."""
    reports: list[CollectionReport] = []
    for kind in kinds:
        _, sources = await src.discover(kind)
        dest_home, dests = await dst.discover(kind)
        for s in sources:
            if isinstance(src, DavClient) and isinstance(dst, DavClient):
                rep = await _dav_collection(src, dst, kind, s, dest_home, dests, ignore_extra)
            else:
                rep = await _portable_collection(src, dst, kind, s, dest_home, ignore_extra)
            reports.append(rep)
    return reports


async def verify_mailboxsync_collections(
    spec: MailboxSyncSpec, secrets: SecretSource, ca_file: str | None = None, ignore_extra: bool = False
) -> list[CollectionReport]:
    """The collections of one MailboxSync, with the credentials its worker uses."""
    kinds = spec.groupware_kinds()
    if not kinds:
        return []
    src, dst = await open_pair(spec, secrets, ca_file)
    try:
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
            f"changed={len(r.changed)} duplicated={len(r.duplicated)} extra={len(r.extra)} "
            f"partial={len(r.partial)}"
        )
        if r.error:
            print(f"     error: {r.error}")
        for what in ("missing", "changed", "duplicated", "extra", "unparsable"):
            for uid in getattr(r, what)[:20]:
                fields = r.changed_fields.get(uid) if what == "changed" else None
                print(f"     {what}: {uid}" + (f" ({', '.join(fields[:8])})" if fields else ""))
        for uid, reason in list(r.partial.items())[:20]:
            print(f"     partial: {uid}: {reason[:300]}")
    print(
        f"collections: {len(reports)} source={sum(r.source_count for r in reports)} "
        f"destination={sum(r.dest_count for r in reports)} differences={total}"
    )
    return total
