"""Microsoft Graph contacts and events as a source and destination (one object for both kinds).

Collections: contacts are the default folder (`/me/contacts`) and each `/me/contactFolders/{id}/contacts`;
calendars are `/me/calendars/{id}/events`. Incremental: a delta round (`.../contacts/delta`; for events the
unbounded `/me/calendars/{id}/events/delta`, published on the beta endpoint — v1.0 has only the date-bounded
calendarView/delta, which returns occurrences, not series) follows `@odata.nextLink` to the
`@odata.deltaLink`, kept as the collection's sync token; removals come as `@removed` rows; an expired
link answers 410 and everything is listed again. 429/503 wait for `Retry-After` (api.py).

A series is read as its seriesMaster plus `/events/{id}/instances` over its span: exceptions become
overrides with RECURRENCE-ID, pattern dates without an instance (cancelled occurrences) become EXDATE.
Written the other way: the master is created (or, found by its source name, updated), then each override
PATCHes the instance with that original start and each EXDATE deletes (cancels) its occurrence.
Graph gives contacts and events its own ids and iCalUId: the source name and UID are single-value
extended properties, looked up with $filter before every create.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx

from mailferry_api.groupware import CollectionKind

from .api import Sleep
from .cardmap import GRAPH_NAME_PROP, GRAPH_UID_PROP, card_from_graph, graph_from_card, parse_vcard, to_vcard
from .cloud import CloudSide, split_member
from .dav import Collection, DavError, Item
from .eventmap import SERIES_HORIZON_DAYS, graph_series, graph_to_ical
from .plan import Changes

GRAPH_API = "https://graph.microsoft.com/v1.0"
GRAPH_BETA = "https://graph.microsoft.com/beta"
MAX_TOKEN = 2048
SUFFIX = {"contacts": ".vcf", "calendars": ".ics"}
EXPAND = f"singleValueExtendedProperties($filter=id eq '{GRAPH_NAME_PROP}' or id eq '{GRAPH_UID_PROP}')"


INSTANCE_FIELDS = (
    "id,type,originalStart,subject,body,start,end,location,attendees,organizer,isAllDay,"
    "isReminderOn,reminderMinutesBeforeStart,isCancelled,lastModifiedDateTime"
)


def _odata(value: str) -> str:
    return value.replace("'", "''")


def _kind_of(url: str) -> CollectionKind:
    return "calendars" if url.rstrip("/").endswith("/events") else "contacts"


def _utc(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return datetime.combine(value, time(), UTC)


class Graph(CloudSide):
    vendor = "Graph"
    default_url = GRAPH_API

    def __init__(
        self,
        auth: httpx.Auth,
        base_url: str | None = None,
        beta_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 4,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(auth, base_url, timeout, transport, retries, sleep)
        self.beta_url = (beta_url or (GRAPH_BETA if base_url is None else self.base_url)).rstrip("/")

    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]:
        me = f"{self.base_url}/me"
        if kind == "contacts":
            folders, _ = await self.api.graph_pages(f"{me}/contactFolders", "contactFolders.list")
            out = [Collection("contacts", f"{me}/contacts", "Contacts", None, True, set(), key="contacts")]
            out += [
                Collection(
                    "contacts",
                    f"{me}/contactFolders/{quote(f['id'], safe='')}/contacts",
                    f.get("displayName"),
                    None,
                    True,
                    set(),
                    key=f["id"],
                )
                for f in folders
                if f.get("id")
            ]
            return out
        cals, _ = await self.api.graph_pages(f"{me}/calendars", "calendars.list")
        return [
            Collection(
                "calendars",
                f"{me}/calendars/{quote(c['id'], safe='')}/events",
                c.get("name"),
                None,
                True,
                {"VEVENT"},
                key=c["id"],
            )
            for c in cals
            if c.get("id")
        ]

    # ------------------------------------------------------------------ as a source

    async def changes(self, collection_url: str, token: str | None) -> Changes:
        kind = _kind_of(collection_url)
        if kind == "calendars":
            start = self.beta_url + collection_url.removeprefix(self.base_url) + "/delta"
        else:
            start = collection_url + "/delta"
        # The whole @odata.deltaLink (it carries the round's query), or its $deltatoken on the function URL.
        url = start
        if token:
            url = token if token.startswith("http") else f"{start}?$deltatoken={quote(token, safe='')}"
        rows, delta_link = await self.api.graph_pages(url, f"{kind} delta")
        if delta_link and len(delta_link) > MAX_TOKEN:  # the checkpoint field holds 2048 characters
            delta_link = (parse_qs(urlsplit(delta_link).query).get("$deltatoken") or [delta_link])[0]
        changed: dict[str, str] = {}
        removed: set[str] = set()
        for row in rows:
            rid = (
                row.get("seriesMasterId") if row.get("type") in ("occurrence", "exception") else row.get("id")
            )
            if not rid:
                continue
            name = str(rid) + SUFFIX[kind]
            if "@removed" in row and not row.get("seriesMasterId"):
                removed.add(name)
                changed.pop(name, None)
            else:
                changed[name] = str(row.get("changeKey", ""))
                removed.discard(name)
        return Changes(changed, removed, delta_link)

    async def _get(self, url: str, what: str) -> dict[str, Any] | None:
        resp = await self.api.call("GET", url, what, params={"$expand": EXPAND}, missing_ok=True)
        return resp.json() if resp.status_code == 200 else None

    async def fetch(self, kind: CollectionKind, collection_url: str, names: Iterable[str]) -> dict[str, Item]:
        out: dict[str, Item] = {}
        for name in names:
            rid = quote(unquote(name.removesuffix(SUFFIX[kind])), safe="")
            if kind == "contacts":
                contact = await self._get(f"{self.base_url}/me/contacts/{rid}", "contacts.get")
                if contact is None:
                    continue  # deleted since the listing: the next delta says so
                photo = await self.api.call(
                    "GET",
                    f"{self.base_url}/me/contacts/{rid}/photo/$value",
                    "photo.get",
                    headers={"Accept": "image/*"},
                    missing_ok=True,
                )
                card = card_from_graph(contact, photo.content if photo.status_code == 200 else None)
                out[name] = Item(name, contact.get("changeKey"), to_vcard(card))
                continue
            event = await self._get(f"{self.base_url}/me/events/{rid}", "events.get")
            if event is None:
                continue
            instances: list[dict[str, Any]] = []
            if event.get("type") == "seriesMaster":
                instances = await self._instances(rid, event)
            out[name] = Item(name, event.get("changeKey"), graph_to_ical(event, instances))
        return out

    async def _instances(self, rid: str, master: dict[str, Any]) -> list[dict[str, Any]]:
        rng = (master.get("recurrence") or {}).get("range") or {}
        start = date.fromisoformat(rng.get("startDate") or str(master["start"]["dateTime"])[:10])
        end = (
            date.fromisoformat(rng["endDate"])
            if rng.get("endDate")
            else start + timedelta(days=SERIES_HORIZON_DAYS)
        )
        if rng.get("type") == "numbered":
            end = start + timedelta(days=SERIES_HORIZON_DAYS)
        params = {
            "startDateTime": f"{start - timedelta(days=1)}T00:00:00Z",
            "endDateTime": f"{end + timedelta(days=2)}T00:00:00Z",
            "$select": INSTANCE_FIELDS,
        }
        items, _ = await self.api.graph_pages(
            f"{self.base_url}/me/events/{rid}/instances", "events.instances", params
        )
        return items

    # ------------------------------------------------------------------ as a destination

    async def create_collection(self, kind: CollectionKind, name: str, source: Collection) -> None:
        if kind == "contacts":
            await self.api.json(
                "POST",
                f"{self.base_url}/me/contactFolders",
                "contactFolders.create",
                json={"displayName": name},
            )
        else:
            await self.api.json(
                "POST", f"{self.base_url}/me/calendars", "calendars.create", json={"name": name}
            )

    async def _find(self, collection_url: str, name: str) -> str | None:
        prop = f"ep/id eq '{GRAPH_NAME_PROP}' and ep/value eq '{_odata(name)}'"
        flt = f"singleValueExtendedProperties/Any(ep: {prop})"
        items, _ = await self.api.graph_pages(
            collection_url, "look-up by name", {"$filter": flt, "$select": "id"}
        )
        return str(items[0]["id"]) if items else None

    async def put(self, kind: CollectionKind, url: str, data: str) -> bool:
        coll, name = split_member(url)
        item_base = f"{self.base_url}/me/{'contacts' if kind == 'contacts' else 'events'}"
        if kind == "contacts":
            card = parse_vcard(data)
            body, lost = graph_from_card(card, name)
            series = None
            if card.kind == "group":  # nothing to hold it: reported, its members keep their categories
                raise DavError("a group card (Graph contacts have no groups)", "ComponentNotSupported")
        else:
            series = graph_series(data, name)
            if series.master is None:
                self.note_lost(url, series.lost)
                raise DavError("no master event: Graph holds series only whole", "ComponentNotSupported")
            body, lost = series.master, series.lost
        existing = await self._find(coll, name)  # look-up before create: a killed run's write is updated
        if existing:
            await self.api.json(
                "PATCH", f"{item_base}/{quote(existing, safe='')}", f"{kind} update", json=body
            )
            rid = existing
        else:
            rid = str((await self.api.json("POST", coll, f"{kind} create", json=body)).get("id", ""))
            if not rid:
                raise DavError(f"{kind} create answered without an id", "GraphProtocolError")
        if kind == "contacts" and card.photo:
            await self.api.call(
                "PUT",
                f"{item_base}/{quote(rid, safe='')}/photo/$value",
                "photo.update",
                content=card.photo,
                headers={"Content-Type": f"image/{card.photo_type.lower()}"},
            )
        if series is not None and (series.overrides or series.cancelled):
            await self._exceptions(rid, series, lost)
        self.note_lost(url, lost)
        return existing is None

    async def _exceptions(self, rid: str, series: Any, lost: list[str]) -> None:
        assert series.master is not None
        instances = await self._instances(quote(rid, safe=""), series.master)
        by_start = {
            datetime.fromisoformat(str(i["originalStart"]).replace("Z", "+00:00")): i
            for i in instances
            if i.get("originalStart")
        }
        for when in series.cancelled:
            inst = by_start.get(_utc(when))
            if inst is not None:  # already cancelled on a re-run: not listed, nothing to do
                await self.api.call(
                    "DELETE",
                    f"{self.base_url}/me/events/{quote(inst['id'], safe='')}",
                    "occurrence.cancel",
                    missing_ok=True,
                )
        for when, body in series.overrides:
            inst = by_start.get(_utc(when))
            if inst is None:
                lost.append(f"override {_utc(when).isoformat()}: the series has no such occurrence")
                continue
            await self.api.json(
                "PATCH",
                f"{self.base_url}/me/events/{quote(inst['id'], safe='')}",
                "occurrence.update",
                json=body,
            )

    async def delete(self, url: str) -> bool:
        coll, name = split_member(url)
        rid = await self._find(coll, name)
        if rid is None:
            return False
        kind = _kind_of(coll)
        item = f"{self.base_url}/me/{'contacts' if kind == 'contacts' else 'events'}/{quote(rid, safe='')}"
        resp = await self.api.call("DELETE", item, f"{kind} delete", missing_ok=True)
        return resp.status_code < 300
