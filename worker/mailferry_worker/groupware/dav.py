"""A CardDAV/CalDAV client on httpx: discovery, sync-collection, ETag listing, multiget, PUT, DELETE,
MKCALENDAR/MKCOL. Errors become `DavError` (a Problem: reason, message, transient); no response body and
no credential ever goes into one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from mailferry_api.groupware import CollectionKind
from mailferry_api.problems import ProblemError

from . import protocol as p
from .plan import Changes, destination_name

MULTIGET_CHUNK = 200


class DavError(ProblemError):
    reason = "DavError"


class SyncTokenInvalid(DavError):
    """RFC 6578 §3.2: the server no longer knows the token (DAV:valid-sync-token precondition)."""

    reason = "SyncTokenInvalid"


def _raise_for(resp: httpx.Response, what: str) -> None:
    code = resp.status_code
    if code < 300:
        return
    where = f"{what}: HTTP {code}"
    if code in (401, 403):
        raise DavError(f"{where} (check the credentials and the user's rights)", "AuthenticationFailed")
    if code == 404:
        raise DavError(where, "NotFound")
    if code in (409, 412) and b"no-uid-conflict" in resp.content:
        raise DavError(f"{where}: another item on the destination has this UID", "UidConflict")
    if code == 413 or (code == 403 and b"max-resource-size" in resp.content):
        raise DavError(where, "ItemTooLarge")
    if code == 429 or code >= 500:
        raise DavError(where, "DavUnavailable", transient=True)
    raise DavError(where, "DavRequestRejected")


@dataclass
class Collection:
    kind: CollectionKind
    url: str
    displayname: str | None = None
    sync_token: str | None = None
    supports_sync: bool = False
    components: set[str] = field(default_factory=set)
    create_props: dict[str, str] = field(default_factory=dict)
    key: str | None = None  # a cloud API's collection id (its URLs all end in /events or /contacts)

    @property
    def name(self) -> str:
        return self.key or p.basename(self.url)


@dataclass
class Item:
    name: str
    etag: str | None
    data: str


class DavClient:
    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        verify: bool | str = True,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.http = httpx.AsyncClient(auth=auth, verify=verify, timeout=timeout, transport=transport)
        self.requests = 0  # every HTTP exchange, for the no-op figure of `make bench`

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        hdrs = {"Content-Type": "application/xml; charset=utf-8"} if body is not None else {}
        hdrs.update(headers or {})
        self.requests += 1
        try:
            return await self.http.request(method, url, content=body, headers=hdrs)
        except httpx.TimeoutException:
            raise DavError(f"{method} {p.path_of(url)}: timed out", "DavTimeout", transient=True) from None
        except httpx.TransportError as exc:
            msg = f"{method} {p.path_of(url)}: {type(exc).__name__}"
            raise DavError(msg, "DavUnreachable", transient=True) from None

    async def _multistatus(self, method: str, url: str, body: bytes, depth: str, what: str) -> p.Multistatus:
        resp = await self.request(method, url, body, {"Depth": depth})
        if resp.status_code in (403, 409) and b"valid-sync-token" in resp.content:
            raise SyncTokenInvalid(f"{what}: the server no longer knows the sync token")
        _raise_for(resp, what)
        if resp.status_code != 207:
            raise DavError(f"{what}: HTTP {resp.status_code}, expected 207 Multi-Status", "DavProtocolError")
        try:
            return p.parse_multistatus(resp.content)
        except p.DavProtocolError as exc:
            raise DavError(f"{what}: {exc}", "DavProtocolError") from None

    # ------------------------------------------------------------------ discovery

    async def discover(self, kind: CollectionKind) -> tuple[str, list[Collection]]:
        """(home URL, collections of `kind`) via current-user-principal and the home set (RFC 4791 §6.2.1,
        RFC 6352 §7.1.1). A server without a principal is taken to be the home itself."""
        ms = await self._multistatus(
            "PROPFIND", self.base_url, p.propfind("d:current-user-principal"), "0", "principal lookup"
        )
        principal = self.base_url
        for r in ms.responses:
            hrefs = r.hrefs(p.tag("d:current-user-principal"))
            if hrefs:
                principal = p.absolute(self.base_url, hrefs[0])
        home_prop = "c:calendar-home-set" if kind == "calendars" else "cr:addressbook-home-set"
        ms = await self._multistatus("PROPFIND", principal, p.propfind(home_prop), "0", "home-set lookup")
        homes = [h for r in ms.responses for h in r.hrefs(p.tag(home_prop))]
        home = p.absolute(principal, homes[0]) if homes else principal
        return home, await self.list_home(kind, home)

    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]:
        """The collections of `kind` in a home, with their sync tokens: one PROPFIND for all of them."""
        ms = await self._multistatus(
            "PROPFIND", home, p.propfind(*p.COLLECTION_PROPS), "1", "collection listing"
        )
        return [self._collection(kind, home, r) for r in ms.responses if p.is_kind(r, kind)]

    async def collection(
        self, kind: CollectionKind, url: str, props: tuple[str, ...] = p.COLLECTION_PROPS
    ) -> Collection | None:
        """One collection's properties (Depth 0); None when it does not exist."""
        try:
            ms = await self._multistatus("PROPFIND", url, p.propfind(*props), "0", "collection")
        except DavError as exc:
            if exc.reason == "NotFound":
                return None
            raise
        found = [r for r in ms.responses if p.is_kind(r, kind)]
        return self._collection(kind, url, found[0]) if found else None

    def _collection(self, kind: CollectionKind, base: str, r: p.Response) -> Collection:
        extra = {}
        for prop in (
            "c:supported-calendar-component-set",
            "ic:calendar-color",
            "c:calendar-description",
            "cr:addressbook-description",
            "c:calendar-timezone",
        ):
            el = r.props.get(p.tag(prop))
            if el is not None and (len(el) or (el.text or "").strip()):
                extra[prop] = p.inner_xml(el)
        return Collection(
            kind=kind,
            url=p.absolute(base, r.href),
            displayname=r.text(p.tag("d:displayname")) or None,
            sync_token=r.text(p.tag("d:sync-token")) or None,
            supports_sync=p.supports_sync_collection(r) or bool(r.text(p.tag("d:sync-token"))),
            components=p.components(r),
            create_props=extra,
        )

    async def make_collection(self, source: Collection, url: str) -> None:
        method, body = p.mkcol(source.kind, source.displayname, source.create_props)
        resp = await self.request(method, url, body)
        _raise_for(resp, f"create collection {p.path_of(url)}")

    # ------------------------------------------------------------------ members

    def _member_name(self, collection_url: str, href: str) -> str | None:
        return None if p.same_path(collection_url, href) else p.basename(href)

    async def changes(self, collection_url: str, token: str | None) -> Changes:
        """One sync-collection REPORT (more only when the server truncates with 507, RFC 6578 §3.6)."""
        changed: dict[str, str] = {}
        removed: set[str] = set()
        while True:
            ms = await self._multistatus(
                "REPORT", collection_url, p.sync_collection(token), "0", "sync-collection"
            )
            truncated = False
            for r in ms.responses:
                name = self._member_name(collection_url, r.href)
                if name is None:
                    truncated = truncated or r.status == 507
                    continue
                if r.status == 404:
                    removed.add(name)
                    changed.pop(name, None)
                else:
                    changed[name] = r.text(p.tag("d:getetag")) or ""
                    removed.discard(name)
            if not truncated or not ms.sync_token or ms.sync_token == token:
                return Changes(changed, removed, ms.sync_token)
            token = ms.sync_token

    async def listing(self, collection_url: str) -> dict[str, str]:
        ms = await self._multistatus(
            "PROPFIND", collection_url, p.propfind("d:getetag", "d:resourcetype"), "1", "member listing"
        )
        out: dict[str, str] = {}
        for r in ms.responses:
            name = self._member_name(collection_url, r.href)
            if name is not None and p.tag("d:getetag") in r.props:
                out[name] = r.text(p.tag("d:getetag")) or ""
        return out

    async def fetch(self, kind: CollectionKind, collection_url: str, names: Iterable[str]) -> dict[str, Item]:
        wanted = list(names)
        out: dict[str, Item] = {}
        base = collection_url if collection_url.endswith("/") else collection_url + "/"
        data_tag = p.tag(p.DATA_PROP[kind])
        for i in range(0, len(wanted), MULTIGET_CHUNK):
            hrefs = [p.path_of(self.member_url(base, n)) for n in wanted[i : i + MULTIGET_CHUNK]]
            ms = await self._multistatus("REPORT", base, p.multiget(kind, hrefs), "1", "multiget")
            for r in ms.responses:
                data = r.text(data_tag)
                if data is not None:
                    name = p.basename(r.href)
                    out[name] = Item(name, r.text(p.tag("d:getetag")), data)
        return out

    def destination_url(self, kind: CollectionKind, home: str, source: Collection) -> str:
        """A new destination collection: in the destination's home, under the source collection's name."""
        return home.rstrip("/") + "/" + destination_name(source.name, "") + "/"

    @staticmethod
    def member_url(collection_url: str, name: str) -> str:
        from urllib.parse import quote

        base = collection_url if collection_url.endswith("/") else collection_url + "/"
        return base + quote(name, safe="@+=-._~")

    async def put(self, kind: CollectionKind, url: str, data: str) -> bool:
        """True when the PUT created the resource (201), False when it replaced one."""
        resp = await self.request("PUT", url, data.encode(), {"Content-Type": p.CONTENT_TYPE[kind]})
        _raise_for(resp, f"PUT {p.basename(url)}")
        return resp.status_code == 201

    async def delete(self, url: str) -> bool:
        """True when something was deleted; a resource already gone is no error."""
        resp = await self.request("DELETE", url)
        if resp.status_code == 404:
            return False
        _raise_for(resp, f"DELETE {p.basename(url)}")
        return True
