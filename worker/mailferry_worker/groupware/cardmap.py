"""Contacts between vCard and the cloud APIs' JSON, pure (no HTTP): vCard 3/4 (read with vobject) ↔ a neutral
`Card` ↔ Google People `Person` / Microsoft Graph `contact`. What a side cannot hold is listed in `lost`
(reported per item by the destination, never dropped silently). Normalisations (docs/groupware.md):
group membership is CATEGORIES on the vCard side, `memberships` (contactGroups by name) on People and
`categories` on Graph; an Apple/vCard-4 group card becomes a People contactGroup and is refused by Graph.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

PeopleFields = (
    "names,emailAddresses,phoneNumbers,addresses,organizations,biographies,birthdays,urls,"
    "memberships,photos,clientData,metadata"
)
NAME_KEY = "mailferryName"  # the source resource name, kept on the destination item (look-up before create)
GRAPH_MAX_EMAILS = 3
PHOTO_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "JPG": "image/jpeg", "GIF": "image/gif"}


class BadCard(ValueError):
    pass


@dataclass
class Address:
    type: str = "other"  # home | work | other
    street: str = ""
    city: str = ""
    region: str = ""
    code: str = ""
    country: str = ""

    def empty(self) -> bool:
        return not any((self.street, self.city, self.region, self.code, self.country))


@dataclass
class Card:
    uid: str
    fn: str = ""
    family: str = ""
    given: str = ""
    additional: str = ""
    prefix: str = ""
    suffix: str = ""
    emails: list[tuple[str, str]] = field(default_factory=list)  # (address, home|work|other)
    phones: list[tuple[str, str]] = field(default_factory=list)  # (number, home|work|mobile|other)
    addresses: list[Address] = field(default_factory=list)
    org: str = ""
    title: str = ""
    note: str = ""
    birthday: str = ""  # YYYY-MM-DD
    urls: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    photo: bytes | None = None
    photo_type: str = "JPEG"
    kind: Literal["individual", "group"] = "individual"
    members: list[str] = field(default_factory=list)  # member UIDs of a group card
    lost: list[str] = field(default_factory=list)


def _type_of(params: dict[str, list[str]], allowed: tuple[str, ...], default: str = "other") -> str:
    types = {t.lower() for v in params.get("TYPE", []) for t in v.split(",")}
    if "cell" in types and "mobile" in allowed:
        return "mobile"
    for t in allowed:
        if t in types:
            return t
    return default


KNOWN = {
    "VERSION",
    "UID",
    "FN",
    "N",
    "EMAIL",
    "TEL",
    "ADR",
    "ORG",
    "TITLE",
    "NOTE",
    "BDAY",
    "URL",
    "CATEGORIES",
    "PHOTO",
    "KIND",
    "MEMBER",
    "X-ADDRESSBOOKSERVER-KIND",
    "X-ADDRESSBOOKSERVER-MEMBER",
    "PRODID",
    "REV",
}


def parse_vcard(text: str) -> Card:
    import vobject

    try:
        vc = vobject.readOne(text)
    except Exception as exc:  # vobject raises ParseError, ValueError, ... on bad input
        raise BadCard(f"not a vCard: {type(exc).__name__}") from None
    c = vc.contents
    uid = str(c["uid"][0].value) if "uid" in c else ""
    if not uid:
        raise BadCard("the vCard has no UID")
    card = Card(uid=uid, fn=str(c["fn"][0].value) if "fn" in c else "")
    if "n" in c:
        n = c["n"][0].value
        card.family, card.given = str(n.family or ""), str(n.given or "")
        card.additional, card.prefix, card.suffix = (
            str(n.additional or ""),
            str(n.prefix or ""),
            str(n.suffix or ""),
        )
    for e in c.get("email", []):
        card.emails.append((str(e.value), _type_of(e.params, ("home", "work"))))
    for t in c.get("tel", []):
        card.phones.append((str(t.value), _type_of(t.params, ("mobile", "home", "work"))))
    for a in c.get("adr", []):
        v = a.value
        card.addresses.append(
            Address(
                _type_of(a.params, ("home", "work")),
                str(v.street or ""),
                str(v.city or ""),
                str(v.region or ""),
                str(v.code or ""),
                str(v.country or ""),
            )
        )
    if "org" in c:
        org = c["org"][0].value
        card.org = ";".join(org) if isinstance(org, list) else str(org)
    card.title = str(c["title"][0].value) if "title" in c else ""
    card.note = str(c["note"][0].value) if "note" in c else ""
    if "bday" in c:
        card.birthday = str(c["bday"][0].value)[:10]
    card.urls = [str(u.value) for u in c.get("url", [])]
    for cat in c.get("categories", []):
        card.categories += [str(v).strip() for v in cat.value if str(v).strip()]
    if "photo" in c:
        p = c["photo"][0]
        if isinstance(p.value, bytes):
            card.photo = p.value
            card.photo_type = (p.params.get("TYPE") or ["JPEG"])[0].upper()
        else:
            card.lost.append("PHOTO by URI")
    kinds = c.get("kind") or c.get("x-addressbookserver-kind") or []
    if kinds and str(kinds[0].value).lower() == "group":
        card.kind = "group"
        for m in c.get("member", []) + c.get("x-addressbookserver-member", []):
            card.members.append(str(m.value).removeprefix("urn:uuid:"))
    card.lost += sorted({k.upper() for k in c if k.upper() not in KNOWN})
    return card


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace(",", "\\,").replace(";", "\\;")


def _fold(line: str) -> str:
    out, cur = [], line
    while len(cur) > 75:
        out.append(cur[:75])
        cur = " " + cur[75:]
    out.append(cur)
    return "\r\n".join(out)


def to_vcard(card: Card) -> str:
    """vCard 3.0 (what CardDAV servers and Apple read), group cards the Apple way."""
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:{card.uid}", f"FN:{_esc(card.fn or card.uid)}"]
    n = (card.family, card.given, card.additional, card.prefix, card.suffix)
    lines.append("N:" + ";".join(_esc(x) for x in n))
    for addr, t in card.emails:
        lines.append(f"EMAIL;TYPE=INTERNET{',' + t.upper() if t != 'other' else ''}:{addr}")
    for num, t in card.phones:
        lines.append(f"TEL;TYPE={'CELL' if t == 'mobile' else t.upper()}:{num}")
    for a in card.addresses:
        parts = ("", "", a.street, a.city, a.region, a.code, a.country)
        lines.append(f"ADR;TYPE={a.type.upper()}:" + ";".join(_esc(x) for x in parts))
    if card.org:
        lines.append("ORG:" + ";".join(_esc(x) for x in card.org.split(";")))
    if card.title:
        lines.append(f"TITLE:{_esc(card.title)}")
    if card.note:
        lines.append(f"NOTE:{_esc(card.note)}")
    if card.birthday:
        lines.append(f"BDAY:{card.birthday}")
    lines += [f"URL:{u}" for u in card.urls]
    if card.categories:
        lines.append("CATEGORIES:" + ",".join(_esc(x) for x in card.categories))
    if card.photo:
        lines.append(f"PHOTO;ENCODING=b;TYPE={card.photo_type}:{base64.b64encode(card.photo).decode()}")
    if card.kind == "group":
        lines.append("X-ADDRESSBOOKSERVER-KIND:group")
        lines += [f"X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:{m}" for m in card.members]
    lines.append("END:VCARD")
    return "\r\n".join(_fold(x) for x in lines) + "\r\n"


# ---------------------------------------------------------------------------------------- Google People

PEOPLE_TYPES = {"home": "home", "work": "work", "mobile": "mobile", "other": "other"}


def client_data(person: dict[str, Any], key: str) -> str | None:
    for d in person.get("clientData") or []:
        if d.get("key") == key:
            return str(d.get("value", ""))
    return None


def card_from_person(
    person: dict[str, Any], groups: dict[str, str], photo: bytes | None, uid: str | None = None
) -> Card:
    """A People `Person` (personFields as PeopleFields) as a Card; `groups`: contactGroup resourceName →
    name (system groups like myContacts are not categories); the UID is the one mailferry stored, else
    the resourceName's id (stable for the contact's life)."""
    names = (person.get("names") or [{}])[0]
    rid = str(person.get("resourceName", "")).removeprefix("people/")
    card = Card(
        uid=uid or client_data(person, "uid") or rid,
        fn=names.get("displayName", ""),
        family=names.get("familyName", ""),
        given=names.get("givenName", ""),
        additional=names.get("middleName", ""),
        prefix=names.get("honorificPrefix", ""),
        suffix=names.get("honorificSuffix", ""),
    )
    card.emails = [
        (e["value"], e.get("type", "other")) for e in person.get("emailAddresses") or [] if e.get("value")
    ]
    card.phones = [
        (p["value"], p.get("type", "other")) for p in person.get("phoneNumbers") or [] if p.get("value")
    ]
    for a in person.get("addresses") or []:
        card.addresses.append(
            Address(
                a.get("type", "other"),
                a.get("streetAddress", ""),
                a.get("city", ""),
                a.get("region", ""),
                a.get("postalCode", ""),
                a.get("country", ""),
            )
        )
    org = (person.get("organizations") or [{}])[0]
    card.org, card.title = org.get("name", ""), org.get("title", "")
    card.note = ((person.get("biographies") or [{}])[0]).get("value", "")
    bday = ((person.get("birthdays") or [{}])[0]).get("date") or {}
    if bday.get("month") and bday.get("day"):
        card.birthday = f"{bday.get('year', 1604):04d}-{bday['month']:02d}-{bday['day']:02d}"
    card.urls = [u["value"] for u in person.get("urls") or [] if u.get("value")]
    for m in person.get("memberships") or []:
        name = groups.get((m.get("contactGroupMembership") or {}).get("contactGroupResourceName", ""))
        if name:
            card.categories.append(name)
    if photo:
        card.photo, card.photo_type = photo, "PNG" if photo.startswith(b"\x89PNG") else "JPEG"
    return card


def person_from_card(card: Card, name: str, group_ids: dict[str, str]) -> dict[str, Any]:
    """The People body for createContact/updateContact (without the photo: updateContactPhoto);
    `group_ids`: category name → contactGroup resourceName."""
    body: dict[str, Any] = {
        "names": [
            {
                k: v
                for k, v in (
                    ("givenName", card.given),
                    ("familyName", card.family),
                    ("middleName", card.additional),
                    ("honorificPrefix", card.prefix),
                    ("honorificSuffix", card.suffix),
                )
                if v
            }
            or {"unstructuredName": card.fn or card.uid}
        ],
        "emailAddresses": [{"value": v, "type": PEOPLE_TYPES.get(t, "other")} for v, t in card.emails],
        "phoneNumbers": [{"value": v, "type": PEOPLE_TYPES.get(t, "other")} for v, t in card.phones],
        "addresses": [
            {
                "type": a.type,
                "streetAddress": a.street,
                "city": a.city,
                "region": a.region,
                "postalCode": a.code,
                "country": a.country,
            }
            for a in card.addresses
            if not a.empty()
        ],
        "urls": [{"value": u} for u in card.urls],
        "clientData": [{"key": "uid", "value": card.uid}, {"key": NAME_KEY, "value": name}],
        "memberships": [
            {"contactGroupMembership": {"contactGroupResourceName": group_ids[c]}}
            for c in card.categories
            if c in group_ids
        ],
    }
    if card.org or card.title:
        body["organizations"] = [{k: v for k, v in (("name", card.org), ("title", card.title)) if v}]
    if card.note:
        body["biographies"] = [{"value": card.note, "contentType": "TEXT_PLAIN"}]
    if card.birthday:
        y, m, d = (int(x) for x in card.birthday.replace("--", "1604-").split("-")[:3])
        body["birthdays"] = [
            {"date": {"year": y, "month": m, "day": d} if y != 1604 else {"month": m, "day": d}}
        ]
    return body


# ---------------------------------------------------------------------------------------- Microsoft Graph

# A named property in PS_PUBLIC_STRINGS: Graph has no UID on a contact, so the source name and UID live in
# single-value extended properties, which $filter can look up (before every create).
PS_PUBLIC_STRINGS = "{00020329-0000-0000-C000-000000000046}"
GRAPH_NAME_PROP = f"String {PS_PUBLIC_STRINGS} Name {NAME_KEY}"
GRAPH_UID_PROP = f"String {PS_PUBLIC_STRINGS} Name mailferryUid"
GRAPH_ADDR = {"home": "homeAddress", "work": "businessAddress", "other": "otherAddress"}


def extended(item: dict[str, Any], prop_id: str) -> str | None:
    for p in item.get("singleValueExtendedProperties") or []:
        if str(p.get("id", "")).lower() == prop_id.lower():
            return str(p.get("value", ""))
    return None


def card_from_graph(contact: dict[str, Any], photo: bytes | None) -> Card:
    card = Card(
        uid=extended(contact, GRAPH_UID_PROP) or str(contact.get("id", "")),
        fn=contact.get("displayName") or "",
        family=contact.get("surname") or "",
        given=contact.get("givenName") or "",
        additional=contact.get("middleName") or "",
        prefix=contact.get("title") or "",
        suffix=contact.get("generation") or "",
    )
    card.emails = [(e["address"], "other") for e in contact.get("emailAddresses") or [] if e.get("address")]
    card.phones = [(p, "work") for p in contact.get("businessPhones") or []]
    card.phones += [(p, "home") for p in contact.get("homePhones") or []]
    if contact.get("mobilePhone"):
        card.phones.append((contact["mobilePhone"], "mobile"))
    for t, key in GRAPH_ADDR.items():
        a = contact.get(key) or {}
        addr = Address(
            t,
            a.get("street") or "",
            a.get("city") or "",
            a.get("state") or "",
            a.get("postalCode") or "",
            a.get("countryOrRegion") or "",
        )
        if not addr.empty():
            card.addresses.append(addr)
    card.org, card.title = contact.get("companyName") or "", contact.get("jobTitle") or ""
    card.note = contact.get("personalNotes") or ""
    if contact.get("birthday"):
        card.birthday = str(contact["birthday"])[:10]
    if contact.get("businessHomePage"):
        card.urls = [contact["businessHomePage"]]
    card.categories = [str(c) for c in contact.get("categories") or []]
    if photo:
        card.photo, card.photo_type = photo, "PNG" if photo.startswith(b"\x89PNG") else "JPEG"
    return card


def graph_from_card(card: Card, name: str) -> tuple[dict[str, Any], list[str]]:
    """The Graph contact body (photo apart: PUT .../photo/$value) and what Graph cannot hold."""
    lost = list(card.lost)
    if card.kind == "group":
        lost.append("group card (Graph contacts have no groups; members keep their categories)")
    body: dict[str, Any] = {
        "givenName": card.given or None,
        "surname": card.family or None,
        "middleName": card.additional or None,
        "title": card.prefix or None,
        "generation": card.suffix or None,
        "displayName": card.fn or None,
        "emailAddresses": [{"address": a, "name": card.fn or a} for a, _ in card.emails[:GRAPH_MAX_EMAILS]],
        "businessPhones": [n for n, t in card.phones if t == "work"],
        "homePhones": [n for n, t in card.phones if t == "home"],
        "mobilePhone": next((n for n, t in card.phones if t == "mobile"), None),
        "companyName": card.org or None,
        "jobTitle": card.title or None,
        "personalNotes": card.note or None,
        "categories": card.categories,
        "singleValueExtendedProperties": [
            {"id": GRAPH_NAME_PROP, "value": name},
            {"id": GRAPH_UID_PROP, "value": card.uid},
        ],
    }
    if len(card.emails) > GRAPH_MAX_EMAILS:
        lost.append(f"EMAIL beyond the first {GRAPH_MAX_EMAILS} ({len(card.emails) - GRAPH_MAX_EMAILS})")
    extra_mobile = [n for n, t in card.phones if t == "mobile"][1:]
    other_phones = [n for n, t in card.phones if t == "other"]
    if extra_mobile or other_phones:
        lost.append(f"TEL without a Graph slot ({len(extra_mobile) + len(other_phones)})")
    seen: set[str] = set()
    for a in card.addresses:
        key = GRAPH_ADDR.get(a.type, "otherAddress")
        if key in seen:
            lost.append(f"a second {a.type} ADR")
            continue
        seen.add(key)
        body[key] = {
            "street": a.street,
            "city": a.city,
            "state": a.region,
            "postalCode": a.code,
            "countryOrRegion": a.country,
        }
    if card.birthday and not card.birthday.startswith("--"):
        body["birthday"] = f"{card.birthday}T00:00:00Z"
    if card.urls:
        body["businessHomePage"] = card.urls[0]
        if len(card.urls) > 1:
            lost.append(f"URL beyond the first ({len(card.urls) - 1})")
    return {k: v for k, v in body.items() if v is not None}, lost
