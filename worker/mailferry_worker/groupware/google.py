"""Google Calendar (API v3) as a calendars source and destination, with the surface CollectionSync uses of a
DavClient (cloud.py), so the same planner, checkpoints and kill -9 guarantees apply. Shapes as documented:
calendarList.list, events.list with syncToken/nextSyncToken/nextPageToken (410 Gone: the token expired,
list everything again), events.list?iCalUID= for one series, events.import/update/instances.

One destination resource per iCalUID: the master event, its modified instances as overrides with
RECURRENCE-ID, its cancelled instances as EXDATE (what a CalDAV server expects, RFC 4791 §4.1).
Normalisation where Google differs: `reminders.useDefault` (the calendar's defaults, which the API does
not return per event) becomes no VALARM; `responseStatus` maps to PARTSTAT; attachments keep their URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailferry_api.groupware import CollectionKind

from .cardmap import NAME_KEY
from .cloud import CloudSide, split_member
from .dav import Collection, DavError, Item
from .eventmap import google_series
from .plan import Changes

GOOGLE_CALENDAR_API = "https://www.googleapis.com/calendar/v3"
PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
}
SUFFIX = ".ics"


def _when(value: dict[str, Any]) -> date | datetime:
    if "date" in value:
        return date.fromisoformat(value["date"])
    moment = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
    try:
        return moment.astimezone(ZoneInfo(value["timeZone"])) if value.get("timeZone") else moment
    except ZoneInfoNotFoundError:
        return moment


def _vevent(ev: dict[str, Any]) -> Any:
    import icalendar

    out = icalendar.Event()
    out.add("uid", ev["iCalUID"])
    if ev.get("updated"):
        out.add("dtstamp", datetime.fromisoformat(ev["updated"].replace("Z", "+00:00")))
    for key, prop in (("summary", "summary"), ("description", "description"), ("location", "location")):
        if ev.get(key):
            out.add(prop, ev[key])
    if "start" in ev:
        out.add("dtstart", _when(ev["start"]))
    if "end" in ev:
        out.add("dtend", _when(ev["end"]))
    if ev.get("recurrence"):  # RRULE/EXDATE/RDATE lines exactly as RFC 5545 writes them
        lines = "\r\n".join(ev["recurrence"])
        parsed = icalendar.Event.from_ical(f"BEGIN:VEVENT\r\n{lines}\r\nEND:VEVENT")
        for name, value in parsed.property_items(recursive=False):
            if name not in ("BEGIN", "END"):
                out.add(name, value, encode=False)
    if ev.get("originalStartTime"):
        out.add("recurrence-id", _when(ev["originalStartTime"]))
    org = ev.get("organizer") or {}
    if org.get("email"):
        out.add(
            "organizer", f"mailto:{org['email']}", parameters={"CN": org.get("displayName") or org["email"]}
        )
    for a in ev.get("attendees") or []:
        if not a.get("email"):
            continue
        params = {"PARTSTAT": PARTSTAT.get(a.get("responseStatus", ""), "NEEDS-ACTION")}
        params["ROLE"] = "OPT-PARTICIPANT" if a.get("optional") else "REQ-PARTICIPANT"
        if a.get("displayName"):
            params["CN"] = a["displayName"]
        out.add("attendee", f"mailto:{a['email']}", parameters=params)
    for r in (ev.get("reminders") or {}).get("overrides") or []:
        alarm = icalendar.Alarm()
        alarm.add("action", "EMAIL" if r.get("method") == "email" else "DISPLAY")
        alarm.add("description", ev.get("summary") or "Reminder")
        alarm.add("trigger", -_minutes(int(r.get("minutes", 0))))
        out.add_component(alarm)
    for att in ev.get("attachments") or []:
        if att.get("fileUrl"):
            out.add(
                "attach",
                att["fileUrl"],
                parameters={"FMTTYPE": att.get("mimeType", "application/octet-stream")},
            )
    return out


def _minutes(n: int) -> Any:
    from datetime import timedelta

    return timedelta(minutes=n)


def series_to_ical(events: Iterable[dict[str, Any]]) -> str | None:
    """One iCalendar object for one iCalUID: the master, its overrides, cancelled instances as EXDATE.
    None when the series is gone (the master cancelled)."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", "-//mailferry//Google Calendar import//EN")
    cal.add("version", "2.0")
    events = list(events)
    master = next((e for e in events if not e.get("recurringEventId")), None)
    if master is not None and master.get("status") == "cancelled":
        return None
    master_event = _vevent(master) if master is not None else None
    if master_event is not None:
        cal.add_component(master_event)
    for ev in events:
        if not ev.get("recurringEventId"):
            continue
        if ev.get("status") == "cancelled":
            if master_event is not None and ev.get("originalStartTime"):
                master_event.add("exdate", _when(ev["originalStartTime"]))
        else:
            cal.add_component(_vevent(ev))
    if not cal.subcomponents:
        return None
    cal.add_missing_timezones()
    return str(cal.to_ical().decode())


class GoogleCalendar(CloudSide):
    """The signed-in user's calendars as collections (`url`: the calendar's events endpoint), as a source
    (events.list with syncToken, one iCalendar object per iCalUID) and as a destination (events.import
    keeps the iCalUID; modified instances via events.instances?originalStart + events.update; cancelled
    ones are EXDATE lines in the master's recurrence, so they never exist on Google)."""

    vendor = "Google"
    default_url = GOOGLE_CALENDAR_API

    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]:
        if kind != "calendars":
            raise DavError("the Calendar API holds calendars only", "GroupwareTypeNotSupported")
        items, _ = await self.api.google_pages(
            f"{self.base_url}/users/me/calendarList", {}, "calendarList.list"
        )
        out = []
        for c in items:
            if not c.get("id") or c.get("deleted"):
                continue
            url = f"{self.base_url}/calendars/{quote(c['id'], safe='')}/events"
            # No collection-wide token in the listing: each round asks events.list once per calendar.
            name = c.get("summaryOverride") or c.get("summary")
            out.append(Collection("calendars", url, name, None, True, {"VEVENT"}, key=c["id"]))
        return out

    async def changes(self, collection_url: str, token: str | None) -> Changes:
        params = {"syncToken": token, "showDeleted": "true"} if token else {"showDeleted": "true"}
        params["maxResults"] = "2500"
        events, next_token = await self.api.google_pages(collection_url, params, "events.list")
        changed: dict[str, str] = {}
        removed: set[str] = set()
        for ev in events:
            if not ev.get("iCalUID"):
                continue
            name = ev["iCalUID"] + SUFFIX
            if ev.get("status") == "cancelled" and not ev.get("recurringEventId"):
                removed.add(name)
                changed.pop(name, None)
            elif name not in removed:
                changed[name] = ev.get("etag", "")  # an instance's change is its series' change
        return Changes(changed, removed, next_token)

    async def _series(self, collection_url: str, uid: str) -> list[dict[str, Any]]:
        events, _ = await self.api.google_pages(
            collection_url, {"iCalUID": uid, "showDeleted": "true"}, "events.list"
        )
        return events

    async def fetch(self, kind: CollectionKind, collection_url: str, names: Iterable[str]) -> dict[str, Item]:
        out: dict[str, Item] = {}
        for name in names:
            data = series_to_ical(await self._series(collection_url, unquote(name.removesuffix(SUFFIX))))
            if data is not None:
                out[name] = Item(name, None, data)
        return out

    # ------------------------------------------------------------------ as a destination

    async def create_collection(self, kind: CollectionKind, name: str, source: Collection) -> None:
        await self.api.json("POST", f"{self.base_url}/calendars", "calendars.insert", json={"summary": name})

    async def put(self, kind: CollectionKind, url: str, data: str) -> bool:
        events_url, name = split_member(url)
        series = google_series(data, name)
        existing = [e for e in await self._series(events_url, series.uid) if not e.get("recurringEventId")]
        created = not existing
        master_id: str | None = None
        if series.master is not None:
            body = {**series.master, "status": "confirmed"}
            if existing:  # look-up before create: a killed worker's earlier write is updated, not doubled
                master_id = existing[0]["id"]
                what = "events.update"
                await self.api.json(
                    "PUT",
                    f"{events_url}/{quote(master_id, safe='')}",
                    what,
                    json=body,
                    params={"supportsAttachments": "true"},
                )
            else:
                master_id = (
                    await self.api.json(
                        "POST",
                        f"{events_url}/import",
                        "events.import",
                        json=body,
                        params={"supportsAttachments": "true"},
                    )
                ).get("id")
        for original, body in series.overrides:
            if master_id is None:
                await self.api.json("POST", f"{events_url}/import", "events.import", json=body)
                continue
            found, _ = await self.api.google_pages(
                f"{events_url}/{quote(master_id, safe='')}/instances",
                {"originalStart": _rfc3339(original), "showDeleted": "true"},
                "events.instances",
            )
            if not found:
                series.lost.append(f"override {_rfc3339(original)}: the series has no such occurrence")
                continue
            await self.api.json(
                "PUT",
                f"{events_url}/{quote(found[0]['id'], safe='')}",
                "events.update",
                json={**found[0], **body, "status": "confirmed"},
            )
        self.note_lost(url, series.lost)
        return created

    async def delete(self, url: str) -> bool:
        events_url, name = split_member(url)
        found, _ = await self.api.google_pages(
            events_url, {"privateExtendedProperty": f"{NAME_KEY}={name}"}, "events.list"
        )
        gone = False
        for ev in found:
            if ev.get("recurringEventId") or not ev.get("id"):
                continue
            resp = await self.api.call(
                "DELETE", f"{events_url}/{quote(ev['id'], safe='')}", "events.delete", missing_ok=True
            )
            gone = gone or resp.status_code < 300
        return gone


def _rfc3339(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo else value.isoformat() + "Z"
    return value.isoformat()
