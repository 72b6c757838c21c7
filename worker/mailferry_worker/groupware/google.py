"""Google Calendar (API v3) as a contacts/calendars source, with the surface CollectionSync uses of a
DavClient (list_home/discover, changes, fetch), so the same planner, checkpoints and kill -9 guarantees
apply. Shapes as documented: calendarList.list, events.list with syncToken/nextSyncToken/nextPageToken
(410 Gone: the token expired, list everything again), events.list?iCalUID= for one series.

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

import httpx

from mailferry_api.groupware import CollectionKind

from .dav import Collection, DavError, Item, SyncTokenInvalid
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


class GoogleCalendar:
    """The signed-in user's calendars as collections; `url` is the calendar's events endpoint."""

    def __init__(
        self,
        auth: httpx.Auth,
        base_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or GOOGLE_CALENDAR_API).rstrip("/")
        self.http = httpx.AsyncClient(auth=auth, timeout=timeout, transport=transport)
        self.requests = 0

    async def close(self) -> None:
        await self.http.aclose()

    async def _get(self, url: str, params: dict[str, str], what: str) -> dict[str, Any]:
        self.requests += 1
        try:
            resp = await self.http.get(url, params=params, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise DavError(f"{what}: {type(exc).__name__}", "GoogleUnreachable", transient=True) from None
        if resp.status_code == 410:
            raise SyncTokenInvalid(f"{what}: the sync token expired (410 Gone)")
        if resp.status_code in (401, 403) and b"rateLimitExceeded" not in resp.content:
            raise DavError(
                f"{what}: HTTP {resp.status_code} (check the OAuth2 grant)", "AuthenticationFailed"
            )
        if resp.status_code in (403, 429) or resp.status_code >= 500:
            raise DavError(f"{what}: HTTP {resp.status_code}", "GoogleThrottled", transient=True)
        if resp.status_code != 200:
            raise DavError(f"{what}: HTTP {resp.status_code}", "GoogleRequestRejected")
        try:
            body = resp.json()
        except ValueError:
            raise DavError(f"{what}: the answer is not JSON", "GoogleProtocolError") from None
        if not isinstance(body, dict):
            raise DavError(f"{what}: the answer is not a JSON object", "GoogleProtocolError")
        return body

    async def _pages(
        self, url: str, params: dict[str, str], what: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            body = await self._get(url, {**params, **({"pageToken": page} if page else {})}, what)
            items.extend(i for i in body.get("items") or [] if isinstance(i, dict))
            page = body.get("nextPageToken")
            if not page:
                return items, body.get("nextSyncToken")

    async def discover(self, kind: CollectionKind) -> tuple[str, list[Collection]]:
        return self.base_url + "/", await self.list_home(kind, self.base_url + "/")

    async def list_home(self, kind: CollectionKind, home: str) -> list[Collection]:
        if kind != "calendars":
            raise DavError(
                "Google contacts (People API) are not wired to the worker yet", "GroupwareTypeNotSupported"
            )
        items, _ = await self._pages(f"{self.base_url}/users/me/calendarList", {}, "calendarList.list")
        out = []
        for c in items:
            if not c.get("id"):
                continue
            url = f"{self.base_url}/calendars/{quote(c['id'], safe='')}/events"
            # No collection-wide token in the listing: each round asks events.list once per calendar.
            out.append(Collection("calendars", url, c.get("summary"), None, True, {"VEVENT"}))
        return out

    async def changes(self, collection_url: str, token: str | None) -> Changes:
        params = {"syncToken": token, "showDeleted": "true"} if token else {"showDeleted": "true"}
        params["maxResults"] = "2500"
        events, next_token = await self._pages(collection_url, params, "events.list")
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

    async def fetch(self, kind: CollectionKind, collection_url: str, names: Iterable[str]) -> dict[str, Item]:
        out: dict[str, Item] = {}
        for name in names:
            uid = unquote(name.removesuffix(SUFFIX))
            events, _ = await self._pages(
                collection_url, {"iCalUID": uid, "showDeleted": "true"}, "events.list"
            )
            data = series_to_ical(events)
            if data is not None:
                out[name] = Item(name, None, data)
        return out
