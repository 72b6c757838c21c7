"""Google contacts (People API v1) as a contacts source and destination.

Source: one collection, the user's contacts. people.connections.list with `requestSyncToken` lists every
contact (pages by `nextPageToken`) and ends with `nextSyncToken`; the next round sends it as `syncToken`
and gets the changed contacts, deleted ones with `metadata.deleted`. An expired token (7 days, ErrorInfo
reason EXPIRED_SYNC_TOKEN) lists everything again. Contacts are read 200 at a time with
people:batchGet; photos from their URL; memberships of user contact groups become CATEGORIES.

Destination: every source address book lands in the user's contacts, and each card also joins a contact
group named after its address book (the one place People keeps such a split). createContact /
updateContact (with the person's etag) and updateContactPhoto; CATEGORIES become contact groups
(contactGroups.create once per name); an Apple/vCard-4 group card becomes a contact group with the
members already copied (members:modify). The source name and UID live in `clientData`: one listing of
the destination's clientData per run finds what an earlier, killed run already created.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import httpx

from mailferry_api.groupware import CollectionKind

from .api import Sleep
from .cardmap import (
    NAME_KEY,
    Card,
    PeopleFields,
    card_from_person,
    client_data,
    parse_vcard,
    person_from_card,
    to_vcard,
)
from .cloud import CloudSide, split_member
from .dav import Collection, DavError, Item
from .plan import Changes

PEOPLE_API = "https://people.googleapis.com/v1"
SUFFIX = ".vcf"
BATCH = 200  # people:batchGet takes at most 200 resourceNames
UPDATE_FIELDS = (
    "names,emailAddresses,phoneNumbers,addresses,organizations,biographies,birthdays,urls,memberships,"
    "clientData"
)


class GooglePeople(CloudSide):
    vendor = "Google"
    default_url = PEOPLE_API

    def __init__(
        self,
        auth: httpx.Auth,
        base_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 4,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(auth, base_url, timeout, transport, retries, sleep)
        self._groups: dict[str, str] | None = None  # resourceName -> name (user groups)
        self._index: dict[str, tuple[str, str]] | None = None  # "book/name" -> (resourceName, etag)
        self._uids: dict[str, str] = {}  # vCard UID -> resourceName
        self._pending: dict[str, set[str]] = {}  # member UID -> groups of group cards copied before it
        self._group_cards: dict[str, str] = {}  # "book/name" of a group card -> contactGroup resourceName

    @property
    def connections(self) -> str:
        return f"{self.base_url}/people/me/connections"

    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]:
        if kind != "contacts":
            raise DavError("the People API holds contacts only", "GroupwareTypeNotSupported")
        return [Collection("contacts", self.connections, "Contacts", None, True, set(), key="contacts")]

    async def collection(
        self, kind: CollectionKind, url: str, props: tuple[str, ...] = ()
    ) -> Collection | None:
        # Every address book goes into the user's contacts; the book's name is a contact group (put).
        return Collection("contacts", url, split_member(url)[1], None, True, set())

    async def create_collection(self, kind: CollectionKind, name: str, source: Collection) -> None:
        await self._group_ids([name])

    # ------------------------------------------------------------------ as a source

    async def changes(self, collection_url: str, token: str | None) -> Changes:
        params = {"personFields": "metadata", "requestSyncToken": "true", "pageSize": "1000"}
        if token:
            params["syncToken"] = token
        people, next_token = await self.api.google_pages(
            self.connections, params, "people.connections.list", key="connections"
        )
        changed: dict[str, str] = {}
        removed: set[str] = set()
        for p in people:
            rid = str(p.get("resourceName", ""))
            if not rid.startswith("people/"):
                continue
            name = rid.removeprefix("people/") + SUFFIX
            if (p.get("metadata") or {}).get("deleted"):
                removed.add(name)
                changed.pop(name, None)
            else:
                changed[name] = str(p.get("etag", ""))
                removed.discard(name)
        return Changes(changed, removed, next_token)

    async def _group_names(self) -> dict[str, str]:
        if self._groups is None:
            groups, _ = await self.api.google_pages(
                f"{self.base_url}/contactGroups",
                {"pageSize": "1000", "groupFields": "name,groupType,clientData"},
                "contactGroups.list",
                key="contactGroups",
            )
            self._groups = {}
            for g in groups:
                if g.get("resourceName") and g.get("groupType", "USER_CONTACT_GROUP") == "USER_CONTACT_GROUP":
                    self._groups[g["resourceName"]] = g.get("name") or g.get("formattedName") or ""
                    key = client_data(g, NAME_KEY)
                    if key:
                        self._group_cards[key] = g["resourceName"]
        return self._groups

    async def _photo(self, person: dict[str, Any]) -> bytes | None:
        photo = next((p for p in person.get("photos") or [] if p.get("url") and not p.get("default")), None)
        if photo is None:
            return None
        resp = await self.api.call(
            "GET", photo["url"], "photo", headers={"Accept": "image/*"}, missing_ok=True
        )
        return resp.content if resp.status_code == 200 and resp.content else None

    async def fetch(self, kind: CollectionKind, collection_url: str, names: Iterable[str]) -> dict[str, Item]:
        groups = await self._group_names()
        wanted = ["people/" + unquote(n.removesuffix(SUFFIX)) for n in names]
        out: dict[str, Item] = {}
        for i in range(0, len(wanted), BATCH):
            params = {"personFields": PeopleFields, "resourceNames": wanted[i : i + BATCH]}
            body = await self.api.json(
                "GET", f"{self.base_url}/people:batchGet", "people.getBatchGet", params=params
            )
            for r in body.get("responses") or []:
                person = r.get("person")
                if not person or (person.get("metadata") or {}).get("deleted"):
                    continue  # deleted since the listing: the next round's token says so
                name = str(person["resourceName"]).removeprefix("people/") + SUFFIX
                card = card_from_person(person, groups, await self._photo(person))
                out[name] = Item(name, person.get("etag"), to_vcard(card))
        return out

    # ------------------------------------------------------------------ as a destination

    async def _load_index(self) -> dict[str, tuple[str, str]]:
        async with self._lock:
            if self._index is None:
                people, _ = await self.api.google_pages(
                    self.connections,
                    {"personFields": "clientData,metadata", "pageSize": "1000"},
                    "people.connections.list",
                    key="connections",
                )
                self._index = {}
                for p in people:
                    key = client_data(p, NAME_KEY)
                    if key:
                        self._index[key] = (p["resourceName"], p.get("etag", ""))
                    uid = client_data(p, "uid")
                    if uid:
                        self._uids[uid] = p["resourceName"]
        return self._index

    async def _group_ids(self, names: list[str], card_key: str | None = None) -> dict[str, str]:
        """contactGroup resourceName per name, created where missing (a group card's with its key)."""
        known = {v: k for k, v in (await self._group_names()).items()}
        for n in names:
            if n and n not in known:
                group: dict[str, Any] = {"name": n}
                if card_key and n == names[-1]:
                    group["clientData"] = [{"key": NAME_KEY, "value": card_key}]
                body = await self.api.json(
                    "POST",
                    f"{self.base_url}/contactGroups",
                    "contactGroups.create",
                    json={"contactGroup": group},
                )
                if body.get("resourceName"):
                    known[n] = body["resourceName"]
                    assert self._groups is not None
                    self._groups[body["resourceName"]] = n
        return known

    async def put(self, kind: CollectionKind, url: str, data: str) -> bool:
        book_url, name = split_member(url)
        book = split_member(book_url)[1]
        key = f"{book}/{name}"
        card = parse_vcard(data)
        index = await self._load_index()
        if card.kind == "group":
            return await self._put_group(url, key, card)
        async with self._lock:  # group creation once per name, however many PUTs run at once
            group_ids = await self._group_ids([book, *card.categories])
        body = person_from_card(card, key, group_ids)
        for gid in [group_ids[book], *self._pending.get(card.uid, ())]:
            body["memberships"].append({"contactGroupMembership": {"contactGroupResourceName": gid}})
        found = index.get(key)  # look-up before create: a killed run's createContact is updated, not doubled
        if found is None:
            person = await self.api.json(
                "POST",
                f"{self.base_url}/people:createContact",
                "people.createContact",
                json=body,
                params={"personFields": "metadata"},
            )
        else:
            person = await self.api.json(
                "PATCH",
                f"{self.base_url}/{found[0]}:updateContact",
                "people.updateContact",
                json={**body, "etag": found[1], "resourceName": found[0]},
                params={"updatePersonFields": UPDATE_FIELDS, "personFields": "metadata"},
            )
        rid = str(person.get("resourceName") or (found[0] if found else ""))
        if not rid:
            raise DavError("createContact answered without a resourceName", "GoogleProtocolError")
        index[key] = (rid, str(person.get("etag", "")))
        self._uids[card.uid] = rid
        if card.photo:
            photo = await self.api.json(
                "PATCH",
                f"{self.base_url}/{rid}:updateContactPhoto",
                "people.updateContactPhoto",
                json={"photoBytes": base64.b64encode(card.photo).decode(), "personFields": "metadata"},
            )
            index[key] = (rid, str((photo.get("person") or {}).get("etag") or index[key][1]))
        self.note_lost(url, card.lost)
        return found is None

    async def _put_group(self, url: str, key: str, card: Card) -> bool:
        """A group card: a contact group of that name (found again by its clientData), with the members
        already on the destination; the others are reported (they join through their CATEGORIES)."""
        async with self._lock:
            created = key not in self._group_cards
            gid = self._group_cards.get(key) or (await self._group_ids([card.fn], key))[card.fn]
            self._group_cards[key] = gid
        members = [self._uids[m] for m in card.members if m in self._uids]
        later = [m for m in card.members if m not in self._uids]
        for m in later:  # a member copied later in this run joins through its own createContact
            self._pending.setdefault(m, set()).add(gid)
        lost = list(card.lost)
        if later:
            lost.append(f"{len(later)} member(s) not on the destination yet: they join if copied in this run")
        if members:
            await self.api.json(
                "POST",
                f"{self.base_url}/{gid}/members:modify",
                "contactGroups.members.modify",
                json={"resourceNamesToAdd": members},
            )
        self.note_lost(url, lost)
        return created

    async def delete(self, url: str) -> bool:
        book_url, name = split_member(url)
        key = f"{split_member(book_url)[1]}/{name}"
        await self._group_names()
        gid = self._group_cards.pop(key, None)
        if gid is not None:
            resp = await self.api.call(
                "DELETE", f"{self.base_url}/{gid}", "contactGroups.delete", missing_ok=True
            )
            return resp.status_code < 300
        found = (await self._load_index()).pop(key, None)
        if found is None:
            return False
        resp = await self.api.call(
            "DELETE", f"{self.base_url}/{found[0]}:deleteContact", "people.deleteContact", missing_ok=True
        )
        return resp.status_code < 300
