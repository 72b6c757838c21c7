"""What the cloud sides (Google Calendar, Google People, Microsoft Graph) share as a CollectionSync source or
destination, beside the HTTP client (api.py): the DavClient surface they stand in for, destination
collections found by display name (a cloud API chooses its own ids), item names in member URLs, what an
item lost on the way (reported per item by CollectionSync), and one router for a side whose two kinds are
two APIs (Google: People for contacts, Calendar for calendars).

Idempotence on a destination: every item mailferry writes carries the source's resource name (and UID)
in a property the API can search (Calendar: iCalUID and a private extended property; People: clientData;
Graph: single-value extended properties). A write looks the name up first and updates what it finds, so
a worker killed between a create and its checkpoint never creates the item twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import quote, unquote

import httpx

from mailferry_api.groupware import CollectionKind

from .api import ApiClient, Sleep
from .dav import Collection, DavError, Item
from .plan import Changes


class Source(Protocol):
    requests: int

    async def close(self) -> None: ...
    async def discover(self, kind: CollectionKind) -> tuple[str, list[Collection]]: ...
    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]: ...
    async def changes(self, collection_url: str, token: str | None) -> Changes: ...
    async def fetch(
        self, kind: CollectionKind, collection_url: str, names: Iterable[str]
    ) -> dict[str, Item]: ...


class Destination(Protocol):
    requests: int

    async def close(self) -> None: ...
    async def discover(self, kind: CollectionKind) -> tuple[str, list[Collection]]: ...
    def destination_url(self, kind: CollectionKind, home: str, source: Collection) -> str: ...
    async def collection(
        self, kind: CollectionKind, url: str, props: tuple[str, ...] = ...
    ) -> Collection | None: ...
    async def make_collection(self, source: Collection, url: str) -> None: ...
    def member_url(self, collection_url: str, name: str) -> str: ...
    async def put(self, kind: CollectionKind, url: str, data: str) -> bool: ...
    async def delete(self, url: str) -> bool: ...


def split_member(url: str) -> tuple[str, str]:
    """(collection URL, item name) of a member URL made by member_url."""
    base, _, name = url.rstrip("/").rpartition("/")
    return base, unquote(name)


class CloudSide:
    """Base of the API sides: request count, close, member URLs, destination collections by display name,
    and the per-item `lost` notes (what the destination could not hold) CollectionSync reports."""

    vendor: str  # the API's owner, as ApiClient names it in errors and logs
    default_url: str  # the public API root, unless a test or a proxy names another

    def __init__(
        self,
        auth: httpx.Auth,
        base_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 4,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.api = ApiClient(auth, self.vendor, timeout, transport, retries, sleep)
        self.base_url = (base_url or self.default_url).rstrip("/")
        self._lost: dict[str, list[str]] = {}
        self._homes: dict[CollectionKind, list[Collection]] = {}
        self._lock = asyncio.Lock()

    @property
    def requests(self) -> int:
        return self.api.requests

    async def close(self) -> None:
        await self.api.close()

    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]:
        raise NotImplementedError

    async def discover(self, kind: CollectionKind) -> tuple[str, list[Collection]]:
        home = self.base_url + "/"
        return home, await self.list_home(kind, home)

    @staticmethod
    def member_url(collection_url: str, name: str) -> str:
        return collection_url.rstrip("/") + "/" + quote(name, safe="@+=-._~")

    def destination_url(self, kind: CollectionKind, home: str, source: Collection) -> str:
        """A destination collection is known by its display name (the API picks the id)."""
        return f"{self.base_url}/by-name/{kind}/{quote(source.displayname or source.name, safe='')}/"

    async def collection(
        self, kind: CollectionKind, url: str, props: tuple[str, ...] = ()
    ) -> Collection | None:
        _, name = split_member(url)
        async with self._lock:
            if kind not in self._homes:
                self._homes[kind] = await self.list_home(kind, self.base_url + "/")
        return next((c for c in self._homes[kind] if (c.displayname or c.name) == name), None)

    async def make_collection(self, source: Collection, url: str) -> None:
        _, name = split_member(url)
        await self.create_collection(source.kind, name, source)
        self._homes.pop(source.kind, None)

    async def create_collection(self, kind: CollectionKind, name: str, source: Collection) -> None:
        raise DavError(f"cannot create a {kind} collection here", "GroupwareTypeNotSupported")

    def note_lost(self, url: str, lost: list[str]) -> None:
        if lost:
            self._lost[url] = lost

    def take_lost(self, url: str) -> list[str]:
        return self._lost.pop(url, [])


class ByKind:
    """One side whose contacts and calendars are two APIs: each call goes to the one for the kind (or, for
    calls that carry only a URL, to the one whose base the URL starts with)."""

    def __init__(self, contacts: Any, calendars: Any) -> None:
        self.sides: dict[CollectionKind, Any] = {"contacts": contacts, "calendars": calendars}

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.sides.values())

    async def close(self) -> None:
        for s in self.sides.values():
            await s.close()

    def _by_url(self, url: str) -> Any:
        for side in self.sides.values():
            if url.startswith(side.base_url):
                return side
        raise DavError("a URL of neither API", "GroupwareError")

    def __getattr__(self, name: str) -> Any:
        kind_first = {"discover", "list_home", "fetch", "put", "collection", "destination_url"}
        if name in kind_first:
            return lambda kind, *a, **kw: getattr(self.sides[kind], name)(kind, *a, **kw)
        if name == "make_collection":
            return lambda source, url: self.sides[source.kind].make_collection(source, url)
        if name in ("changes", "delete", "member_url", "take_lost"):
            return lambda url, *a, **kw: getattr(self._by_url(url), name)(url, *a, **kw)
        raise AttributeError(name)
