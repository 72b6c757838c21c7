"""Contacts and calendars beside the mail: where they come from and go to, and how far each collection is.

Spec: a MailMigration (and so each MailboxSync) names what it moves in `content` (`mail`, `contacts`,
`calendars`) and, for contacts and calendars, a `groupware` source and destination: a CardDAV/CalDAV
server (`type: dav`, discovered from `url` through the user's principal, RFC 6764/4791/6352) or a cloud
API (`google`: People + Calendar API, `microsoft`: Graph). Without `auth` a side logs in as its mail
side does (same Secret, same key, same OAuth settings).

Status: one `CollectionCheckpoint` per address book or calendar, in the MailboxSync's status beside the
folder checkpoints (same lease, same writer, same RBAC; no per-item data: a sync token or an ETag-list
digest per collection).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .common import ApiModel, list_map
from .imap import ImapAuth

ContentKind = Literal["mail", "contacts", "calendars"]
CollectionKind = Literal["contacts", "calendars"]
GroupwareType = Literal["dav", "google", "microsoft"]
SyncMode = Literal["auto", "etag"]
CollectionMode = Literal["syncToken", "etag", "api"]
MAX_COLLECTIONS = 200
MAX_ITEM_ERRORS = 20
KINDS: tuple[CollectionKind, ...] = ("contacts", "calendars")

Content = Annotated[
    list[ContentKind],
    Field(min_length=1, max_length=3, json_schema_extra={"x-kubernetes-list-type": "set"}),
]


class GroupwareEndpoint(ApiModel):
    type: GroupwareType = "dav"
    """dav (CardDAV/CalDAV), google (People and Calendar API) or microsoft (Graph)."""
    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="dav: the server's context path (e.g. https://dav.example.com/); google/microsoft: "
        "the API root (defaults to the public one)",
    )
    tls_verify: bool = True
    """Verify the server certificate."""
    auth: ImapAuth | None = Field(default=None, description="default: the mail side's auth")
    sync: SyncMode = Field(
        default="auto", description="auto: WebDAV sync tokens (RFC 6578) where offered; etag: always compare"
    )
    timeout_seconds: int = Field(default=300, ge=1, le=3600)
    """Seconds per request; generous, as a server may parse a whole collection for the first listing."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                # type defaults to dav; a MailboxSync is stored without the defaults
                {
                    "rule": "(has(self.type) && self.type != 'dav') || has(self.url)",
                    "message": "url is required for type dav",
                },
            ]
        }
    }


class Groupware(ApiModel):
    source: GroupwareEndpoint
    """Where contacts and calendars come from."""
    destination: GroupwareEndpoint
    """Where they go."""
    max_item_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="larger items are reported")
    max_deletes_per_round: int = Field(
        default=1000, ge=0, description="safety cap: more source deletions in one round stop the collection"
    )


class ItemError(ApiModel):
    collection: str = Field(max_length=512)
    """The collection."""
    item: str = Field(max_length=512, description="the item's UID (or resource name)")
    reason: str = Field(max_length=128)
    """The problem, as one word."""
    message: str = Field(default="", max_length=1024)
    """The problem."""


class ItemCounts(ApiModel):
    """How many items of a collection (or summed over collections) went where."""

    items: int = 0
    """Items on the source at the last look."""
    copied: int = 0
    """Items written to the destination (a change copied again counts again)."""
    deleted: int = 0
    """Destination items removed because their source item was deleted."""
    failed: int = 0
    """Items the destination refused (listed in itemErrors)."""
    unsupported: int = 0
    """Items the destination cannot hold (too large, component not supported, no UID)."""
    pending: int = 0
    """Changes seen on the source and not yet on the destination."""


class CollectionCheckpoint(ItemCounts):
    """How far one address book or calendar is. `syncToken` is the source's (RFC 6578) after the last
    finished round; `pendingToken`/`resumeAfter` mark a first copy that was interrupted."""

    name: str = Field(max_length=512, description="kind/collection, e.g. calendars/work")
    kind: CollectionKind
    """contacts or calendars."""
    source: str = Field(max_length=2048)
    """URL or ID of the source collection."""
    destination: str = Field(max_length=2048)
    """URL or ID of the destination collection."""
    mode: CollectionMode = "syncToken"
    """syncToken (RFC 6578), etag (compare ETags) or api."""
    sync_token: str | None = Field(default=None, max_length=2048)
    """The source's sync token after the last finished round."""
    pending_token: str | None = Field(default=None, max_length=2048)
    """Sync token of an interrupted first copy."""
    resume_after: str | None = Field(default=None, max_length=1024)
    """Last item copied by an interrupted first copy."""
    etag_digest: str | None = Field(default=None, max_length=128)
    """Digest of the source ETags (etag mode): unchanged means nothing to do."""
    last_sync_time: datetime | None = None
    """When the collection last finished a sync."""
    last_error: str | None = Field(default=None, max_length=1024)
    """The last error."""


Collections = Annotated[
    list[CollectionCheckpoint], Field(max_length=MAX_COLLECTIONS, json_schema_extra=list_map("name"))
]
ItemErrors = Annotated[list[ItemError], Field(max_length=MAX_ITEM_ERRORS)]


class KindTotals(ItemCounts):
    """Address books or calendars of a mailbox (or a whole migration), summed over their collections."""

    collections: int = 0
    """Address books or calendars."""


class CollectionTotals(ApiModel):
    contacts: KindTotals = KindTotals()
    """Address books."""
    calendars: KindTotals = KindTotals()
    """Calendars."""

    def add(self, kind: CollectionKind, other: KindTotals) -> None:
        mine = getattr(self, kind)
        for field in KindTotals.model_fields:
            setattr(mine, field, getattr(mine, field) + getattr(other, field))


def collection_totals(collections: list[CollectionCheckpoint]) -> CollectionTotals:
    totals = CollectionTotals()
    for c in collections:
        totals.add(c.kind, KindTotals(collections=1, **c.model_dump(include=set(ItemCounts.model_fields))))
    return totals
