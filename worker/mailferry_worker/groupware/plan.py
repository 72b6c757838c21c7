"""Decide what one collection's round does. Pure: what the source said + the checkpoint -> a plan.

Items keep their resource name (the last segment of the source href) on the destination, so a PUT
is idempotent: copying an item twice (a retry after kill -9) overwrites the same resource instead of
adding a second one, and a deletion on the source names exactly the destination resource mailferry
wrote.

A first copy lists every member with an empty sync token (RFC 6578 §3.8) and records that token as
`pendingToken` and the last name it copied as `resumeAfter` after every chunk. A resumed first copy
lists again, copies only the names after `resumeAfter`, and asks for the changes since `pendingToken`
for the names before it, so nothing that changed while the worker was dead is missed and nothing is
copied twice for nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from mailferry_api.groupware import CollectionCheckpoint

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,200}$")


@dataclass
class Changes:
    """A sync-collection answer: members added or changed (name -> etag), names removed, new token."""

    changed: dict[str, str]
    removed: set[str]
    token: str | None


@dataclass
class Plan:
    copy: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    commit_token: str | None = None
    first_copy: bool = False
    over_delete_cap: bool = False


def destination_name(source_name: str, suffix: str) -> str:
    """The destination resource name: the source's when it is plain, else a stable hash of it."""
    if SAFE_NAME.match(source_name):
        return source_name
    return hashlib.sha256(source_name.encode()).hexdigest()[:40] + suffix


def token_unchanged(ckpt: CollectionCheckpoint, source_token: str | None, force_etag: bool) -> bool:
    """A finished collection whose DAV:sync-token (from the home listing) has not moved: nothing to do,
    not even a look at the destination."""
    return (
        not force_etag
        and ckpt.mode == "syncToken"
        and ckpt.sync_token is not None
        and ckpt.resume_after is None
        and source_token == ckpt.sync_token
    )


def home_of(collection_url: str) -> str:
    """The home a collection URL lives in (its parent), where one PROPFIND lists every collection."""
    return collection_url.rstrip("/").rsplit("/", 1)[0] + "/"


def plan_first_copy(members: Changes, ckpt: CollectionCheckpoint, since_pending: Changes | None) -> Plan:
    """`members`: the full listing; `since_pending`: the changes since `ckpt.pendingToken` (a resume)."""
    names = sorted(members.changed)
    if ckpt.resume_after is None or since_pending is None:
        return Plan(copy=names, commit_token=members.token, first_copy=True)
    after = [n for n in names if n > ckpt.resume_after]
    changed_before = [n for n in since_pending.changed if n <= ckpt.resume_after and n in members.changed]
    # A removed name after `resumeAfter` may still have been written by the interrupted chunk.
    gone = sorted(n for n in since_pending.removed if n not in members.changed)
    return Plan(
        copy=sorted(set(after) | set(changed_before)),
        delete=gone,
        commit_token=since_pending.token or members.token,
        first_copy=True,
    )


def plan_delta(changes: Changes, max_deletes: int) -> Plan:
    removed = sorted(n for n in changes.removed if n not in changes.changed)
    return Plan(
        copy=sorted(changes.changed),
        delete=removed,
        commit_token=changes.token,
        over_delete_cap=len(removed) > max_deletes,
    )


def etag_digest(listing: dict[str, str]) -> str:
    """One value for a whole ETag listing: equal digests mean nothing on the source changed."""
    h = hashlib.sha256()
    for name in sorted(listing):
        h.update(f"{name}\0{listing[name]}\n".encode())
    return h.hexdigest()


def plan_by_content(source: dict[str, str], destination: dict[str, str]) -> list[str]:
    """ETag mode after the digest changed: names whose fingerprint differs or is missing on the
    destination."""
    return sorted(n for n, fp in source.items() if destination.get(n) != fp)
