"""What `mailferry verify` compares when a side is a cloud API: a portable projection of a contact or a
calendar object, pure. A cloud API re-renders every item (its own JSON, read back as vCard/iCalendar by
cardmap/eventmap), so bytes and fingerprints differ by design; the projection keeps what every side carries,
normalised:

* a contact (through cardmap.parse_vcard): kind, FN, the name parts, emails (lowercased, a set), phone
  numbers (whitespace collapsed), addresses (type and parts), ORG, TITLE, NOTE, BDAY (YYYY-MM-DD, or --MM-DD
  without a year), URLs, CATEGORIES (sets), a photo present or not, a group card's members;
* a calendar object, per VEVENT (the master, each override by its RECURRENCE-ID as a UTC instant): start and
  end as UTC instants (dates for all-day; a missing DTEND from DURATION), SUMMARY, LOCATION, DESCRIPTION,
  attendee emails, attendee emails with PARTSTAT, the organizer's email, alarms as minutes before the start;
  and for the master the recurrence set (RRULE, RDATE and EXDATE expanded from DTSTART in its own zone, as
  UTC instants, up to eventmap's series horizon): one value however a side spells the rule.

What a destination type does not keep is not compared: for every item (`NOT_KEPT`, e.g. Graph makes the
signed-in mailbox the organizer), and per item from the destination's own pure mapping (`losses`: what
cardmap.graph_from_card / eventmap.google_series / graph_series report as `lost`), mapped to the projection
fields it touches (`excluded_fields`); such an item is `partial` in the report, never silently `changed`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, Literal

from mailferry_api.groupware import CollectionKind

from .cardmap import Card, graph_from_card, parse_vcard
from .eventmap import SERIES_HORIZON_DAYS, event_end, google_series, graph_series

Projection = dict[str, Hashable]
DestinationType = Literal["dav", "google-people", "google-calendar", "graph"]

MASTER = "master"  # the component key of a series' master (overrides are keyed by their RECURRENCE-ID)
ALL = "*"  # excluded_fields: the destination holds nothing of this item to compare
OVERRIDES = "overrides"  # excluded_fields: the overrides (every component but the master)
MAX_OCCURRENCES = 2000

# Fields a destination type never keeps as the source had them, for any item.
NOT_KEPT: dict[DestinationType, frozenset[str]] = {
    "dav": frozenset(),
    "google-calendar": frozenset(),
    # People derives the display name from the name parts (FN is not written).
    "google-people": frozenset({"fn"}),
    # Graph makes the signed-in mailbox the organizer, takes PARTSTAT from the attendees' replies, and may
    # answer the body as HTML.
    "graph": frozenset({"organizer", "partstats", "description"}),
}

# A `lost` line's words -> the projection fields it touches (cardmap/eventmap write the property first).
LOSS_FIELDS: dict[str, frozenset[str]] = {
    "EMAIL": frozenset({"emails"}),
    "TEL": frozenset({"phones"}),
    "ADR": frozenset({"addresses"}),
    "URL": frozenset({"urls"}),
    "PHOTO": frozenset({"photo"}),
    "VALARM": frozenset({"alarms"}),
    "RRULE": frozenset({"occurrences", OVERRIDES}),
    "RDATE": frozenset({"occurrences"}),
    "override": frozenset({OVERRIDES}),
    "overrides": frozenset({OVERRIDES}),
    "master": frozenset({ALL}),  # overrides without their master: not the same shape on the destination
    "group": frozenset({ALL}),  # a group card: a People contact group, refused by Graph
}


# ------------------------------------------------------------------------------------------------ contacts


def _text(value: object) -> str:
    return str(value or "").replace("\r\n", "\n").strip()


def _birthday(value: str) -> str:
    v = value.strip()
    if re.fullmatch(r"\d{8}", v):
        v = f"{v[:4]}-{v[4:6]}-{v[6:]}"
    elif re.fullmatch(r"--\d{4}", v):
        v = f"--{v[2:4]}-{v[4:]}"
    return "--" + v[5:] if v.startswith("1604-") else v  # 1604: People's "no year"


def contact_projection(card: Card) -> Projection:
    return {
        "kind": card.kind,
        "fn": _text(card.fn),
        "names": tuple(
            _text(x) for x in (card.family, card.given, card.additional, card.prefix, card.suffix)
        ),
        "emails": frozenset(e.strip().lower() for e, _ in card.emails),
        "phones": frozenset(" ".join(n.split()) for n, _ in card.phones),
        "addresses": frozenset(
            (a.type, _text(a.street), _text(a.city), _text(a.region), _text(a.code), _text(a.country))
            for a in card.addresses
            if not a.empty()
        ),
        "org": _text(card.org),
        "title": _text(card.title),
        "note": _text(card.note),
        "birthday": _birthday(card.birthday),
        "urls": frozenset(u.strip() for u in card.urls),
        "categories": frozenset(c.strip() for c in card.categories),
        "photo": card.photo is not None,
        "members": frozenset(card.members),
    }


# ------------------------------------------------------------------------------------------------ events


def _utc(value: date | datetime) -> datetime:
    """An instant: aware times in UTC, floating times read as UTC (what the cloud mappings write for them),
    a date as its midnight UTC."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def moment(value: date | datetime) -> str:
    if not isinstance(value, datetime):
        return value.isoformat()
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _dates(ev: Any, prop: str) -> list[date | datetime]:
    out = []
    for x in _listed(ev.get(prop)):
        for d in x.dts:
            out.append(d.dt[0] if isinstance(d.dt, tuple) else d.dt)  # a PERIOD counts by its start
    return out


def _email(value: object) -> str:
    text = str(value).strip()
    return (text[7:] if text.lower().startswith("mailto:") else text).lower()


def _alarms(ev: Any) -> tuple[str, ...]:
    out = []
    for alarm in ev.walk("VALARM"):
        trig = alarm.get("TRIGGER")
        delta = getattr(trig, "dt", None)
        if isinstance(delta, timedelta) and str(trig.params.get("RELATED", "START")).upper() != "END":
            out.append(f"{int(-delta.total_seconds() // 60)}")
        elif isinstance(delta, timedelta):
            out.append(f"end{int(-delta.total_seconds() // 60)}")
        elif delta is not None:
            out.append("at" + moment(delta))
    return tuple(sorted(out))


def _rule_text(rule: Any) -> str:
    """An RRULE with UNTIL as a UTC instant (a date: the end of that day), what dateutil wants beside an
    aware DTSTART."""
    import icalendar

    parts = dict(rule)
    if parts.get("UNTIL"):
        until = parts["UNTIL"][0]
        if not isinstance(until, datetime):
            until = datetime.combine(until, time(23, 59, 59), UTC)
        parts["UNTIL"] = [_utc(until)]
    return str(icalendar.vRecur(parts).to_ical().decode())


def occurrences(ev: Any) -> tuple[str, ...]:
    """The master's recurrence set (DTSTART, RRULE, RDATE, EXDATE) expanded in the start's own zone (DST
    moves the UTC instant, not the wall clock), up to eventmap's series horizon."""
    from dateutil.rrule import rruleset, rrulestr

    start = ev.get("DTSTART")
    if start is None or (ev.get("RRULE") is None and ev.get("RDATE") is None):
        return ()
    first = start.dt
    all_day = not isinstance(first, datetime)
    anchor = _utc(first) if all_day or first.tzinfo is None else first
    rset = rruleset()
    rset.rdate(anchor)  # RFC 5545 §3.8.5.3: DTSTART is the first instance
    for rule in _listed(ev.get("RRULE")):
        rset.rrule(rrulestr(_rule_text(rule), dtstart=anchor))
    for d in _dates(ev, "RDATE"):
        rset.rdate(_utc(d) if not isinstance(d, datetime) or d.tzinfo is None else d)
    for d in _dates(ev, "EXDATE"):
        rset.exdate(_utc(d) if not isinstance(d, datetime) or d.tzinfo is None else d)
    limit = datetime.combine(anchor.date() + timedelta(days=SERIES_HORIZON_DAYS), time(), anchor.tzinfo)
    out = []
    for occ in islice(rset, MAX_OCCURRENCES):
        if occ > limit:
            break
        out.append(occ.date().isoformat() if all_day else moment(occ))
    return tuple(out)


def _component(ev: Any) -> dict[str, Hashable]:
    start = ev.get("DTSTART")
    first = start.dt if start is not None else None
    end = event_end(ev, first) if first is not None else None
    attendees = [
        (_email(a), str(a.params.get("PARTSTAT", "NEEDS-ACTION")).upper())
        for a in _listed(ev.get("ATTENDEE"))
    ]
    return {
        "start": moment(first) if first is not None else "",
        "end": moment(end) if end is not None else "",
        "summary": _text(ev.get("SUMMARY")),
        "location": _text(ev.get("LOCATION")),
        "description": _text(ev.get("DESCRIPTION")),
        "attendees": frozenset(e for e, _ in attendees),
        "partstats": frozenset(attendees),
        "organizer": _email(ev.get("ORGANIZER")) if ev.get("ORGANIZER") is not None else "",
        "alarms": _alarms(ev),
    }


def event_projection(text: str) -> tuple[str, Projection]:
    """(UID, the projection) of one calendar object: keys `component/field`, the component `master` or the
    override's RECURRENCE-ID instant."""
    import icalendar

    try:
        cal = icalendar.Calendar.from_ical(text)
        events = list(cal.walk("VEVENT"))
    except Exception as exc:  # icalendar raises ValueError, IndexError, KeyError, ... on bad input
        raise ValueError(f"not iCalendar: {type(exc).__name__}") from None
    if not events:
        raise ValueError("no VEVENT")
    out: Projection = {}
    for ev in events:
        rid = ev.get("RECURRENCE-ID")
        key = MASTER if rid is None else moment(rid.dt)
        fields = _component(ev)
        if rid is None:
            fields["occurrences"] = occurrences(ev)
        out.update({f"{key}/{name}": value for name, value in fields.items()})
    return str(events[0].get("UID", "")), out


# ------------------------------------------------------------------------------------------------ comparing


def project(kind: CollectionKind, text: str) -> tuple[str, Projection]:
    """(UID, projection) of one item; ValueError when it does not parse (cardmap.BadCard included)."""
    if kind == "contacts":
        card = parse_vcard(text)
        return card.uid, contact_projection(card)
    return event_projection(text)


def losses(dest: DestinationType, kind: CollectionKind, text: str, name: str) -> list[str]:
    """What the destination type's own mapping says it cannot hold of this item (empty: all of it)."""
    if dest == "dav":
        return []
    try:
        if kind == "contacts":
            card = parse_vcard(text)
            if dest == "graph":
                return graph_from_card(card, name)[1]
            group = ["group card (a People contact group, not a contact)"] if card.kind == "group" else []
            return list(card.lost) + group
        if dest == "graph":
            return graph_series(text, name).lost
        return google_series(text, name).lost
    except ValueError as exc:
        return [f"the destination's mapping cannot read it, so it holds no master ({exc})"]


def excluded_fields(lost: Iterable[str]) -> frozenset[str]:
    """The projection fields the `lost` lines touch (ALL: nothing of the item is compared)."""
    out: set[str] = set()
    for line in lost:
        for word in re.findall(r"[A-Za-z][A-Za-z-]*", line):
            out |= LOSS_FIELDS.get(word, frozenset())
    return frozenset(out)


def differences(source: Projection, dest: Projection, skip: frozenset[str] = frozenset()) -> list[str]:
    """The projection keys whose values differ, but for the skipped fields."""
    if ALL in skip:
        return []
    out = []
    for key in sorted(set(source) | set(dest)):
        component, _, name = key.rpartition("/")
        if name in skip or (component and component != MASTER and OVERRIDES in skip):
            continue
        if source.get(key) != dest.get(key):
            out.append(key)
    return out


def without_categories(proj: Projection, names: Iterable[str]) -> Projection:
    """People: a source address book, and each of its group cards, is a contact group of that name on the
    destination, which its members read back as a category."""
    cats = proj.get("categories")
    if not isinstance(cats, frozenset):
        return proj
    return {**proj, "categories": cats - set(names)}
