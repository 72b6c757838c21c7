"""Google Calendar as a source: an HTTP contract test (respx) on the documented shapes of calendarList.list
and events.list (nextPageToken/nextSyncToken pages, syncToken deltas, 410 Gone, iCalUID look-ups), copied
into a real Radicale destination by the same CollectionSync the CalDAV path uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import icalendar
import pytest
import respx

from fixtures.radicale import RadicalePair
from mailferry_api.groupware import CollectionCheckpoint, Groupware, GroupwareEndpoint
from mailferry_worker.groupware.collection import CollectionSync
from mailferry_worker.groupware.dav import Collection, DavClient, DavError, SyncTokenInvalid
from mailferry_worker.groupware.google import GOOGLE_CALENDAR_API, GoogleCalendar, series_to_ical

API = GOOGLE_CALENDAR_API
EVENTS = f"{API}/calendars/work%40example.com/events"
TOKEN = "ya29.secret-access-token"

MASTER: dict[str, Any] = {
    "kind": "calendar#event",
    "id": "series1",
    "etag": '"3"',
    "status": "confirmed",
    "iCalUID": "series1@google.com",
    "updated": "2026-03-01T10:00:00.000Z",
    "summary": "Weekly sync",
    "description": "Agenda, notes",
    "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-02T09:30:00+01:00", "timeZone": "Europe/Berlin"},
    "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=10"],
    "organizer": {"email": "boss@example.com", "displayName": "Boss"},
    "attendees": [
        {"email": "a@example.com", "responseStatus": "accepted"},
        {"email": "b@example.com", "responseStatus": "tentative", "optional": True, "displayName": "B"},
    ],
    "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 15}]},
    "attachments": [{"fileUrl": "https://drive.google.com/file/d/1", "mimeType": "application/pdf"}],
}
# The week after the DST change moved by an hour; the one after that cancelled.
MOVED = {
    "id": "series1_20260330T070000Z",
    "status": "confirmed",
    "iCalUID": "series1@google.com",
    "recurringEventId": "series1",
    "originalStartTime": {"dateTime": "2026-03-30T09:00:00+02:00", "timeZone": "Europe/Berlin"},
    "summary": "Weekly sync (moved)",
    "start": {"dateTime": "2026-03-30T10:00:00+02:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-30T10:30:00+02:00", "timeZone": "Europe/Berlin"},
}
CANCELLED = {
    "id": "series1_20260406T070000Z",
    "status": "cancelled",
    "iCalUID": "series1@google.com",
    "recurringEventId": "series1",
    "originalStartTime": {"dateTime": "2026-04-06T09:00:00+02:00", "timeZone": "Europe/Berlin"},
}
SINGLE = {
    "id": "one",
    "etag": '"1"',
    "status": "confirmed",
    "iCalUID": "one@google.com",
    "summary": "Offsite",
    "start": {"date": "2026-05-04"},
    "end": {"date": "2026-05-05"},
}


def test_series_to_ical_keeps_overrides_cancellations_people_alarms_and_zones() -> None:
    cal = icalendar.Calendar.from_ical(series_to_ical([MASTER, MOVED, CANCELLED]) or "")
    events = [c for c in cal.walk("VEVENT")]
    master = next(e for e in events if "RECURRENCE-ID" not in e)
    override = next(e for e in events if "RECURRENCE-ID" in e)
    assert str(master["UID"]) == str(override["UID"]) == "series1@google.com"
    assert master["RRULE"]["FREQ"] == ["WEEKLY"] and master["EXDATE"].dts[0].dt.hour == 9
    assert override["RECURRENCE-ID"].dt.utcoffset().total_seconds() == 7200  # after the DST change
    assert {str(a) for a in master["ATTENDEE"]} == {"mailto:a@example.com", "mailto:b@example.com"}
    assert [a.params["PARTSTAT"] for a in master["ATTENDEE"]] == ["ACCEPTED", "TENTATIVE"]
    assert str(master["ORGANIZER"]) == "mailto:boss@example.com"
    assert [str(x["ACTION"]) for x in master.walk("VALARM")] == ["DISPLAY"]
    assert str(master["ATTACH"]) == "https://drive.google.com/file/d/1"
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    assert series_to_ical([{**MASTER, "status": "cancelled"}]) is None


def _mock(router: respx.MockRouter) -> None:
    router.get(f"{API}/users/me/calendarList").respond(
        json={"items": [{"id": "work@example.com", "summary": "Work"}], "nextSyncToken": "c1"}
    )

    def events(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        q = request.url.params
        if "iCalUID" in q:
            series = [e for e in (MASTER, MOVED, CANCELLED, SINGLE) if e["iCalUID"] == q["iCalUID"]]
            return httpx.Response(200, json={"items": series})
        if q.get("syncToken") == "expired":
            return httpx.Response(
                410, json={"error": {"code": 410, "message": "Sync token is no longer valid"}}
            )
        if q.get("syncToken") == "s1":  # the series' master deleted since s1
            return httpx.Response(
                200, json={"items": [{**MASTER, "status": "cancelled"}], "nextSyncToken": "s2"}
            )
        if q.get("syncToken") == "s2":
            return httpx.Response(200, json={"items": [], "nextSyncToken": "s2"})
        if q.get("pageToken") == "p2":
            return httpx.Response(200, json={"items": [SINGLE], "nextSyncToken": "s1"})
        return httpx.Response(200, json={"items": [MASTER, MOVED, CANCELLED], "nextPageToken": "p2"})

    router.get(EVENTS).mock(side_effect=events)


class _Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        yield request


def test_google_calendar_into_radicale(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    dest_server = radicale_pair.destination
    user = "google@example.com"
    dest_server.add_user(user)

    async def go() -> None:
        with respx.mock(assert_all_mocked=True) as router:
            router.route(host="127.0.0.1").pass_through()  # the destination is a real server
            _mock(router)
            src = GoogleCalendar(_Bearer())
            dst = DavClient(dest_server.url, httpx.BasicAuth(user, dest_server.users[user]))
            try:
                [cal] = await src.list_home("calendars", "")
                home, _ = await dst.discover("calendars")
                dest_url = home + "work/"
                await dst.make_collection(cal, dest_url)
                dest = await dst.collection("calendars", dest_url) or Collection("calendars", dest_url)
                ckpt = CollectionCheckpoint(
                    name="calendars/work", kind="calendars", source=cal.url, destination=dest_url
                )
                options = Groupware(
                    source=GroupwareEndpoint(type="google"), destination=GroupwareEndpoint(url="http://x/")
                )

                async def save() -> None:
                    pass

                run = CollectionSync(src, dst, cal, dest, ckpt, options, save)
                await run.run()  # first copy: two pages, then the series fetched by iCalUID
                assert ckpt.sync_token == "s1" and ckpt.items == 2 and ckpt.copied == 2
                members = dest_server.members(user, f"/{user}/work/")
                assert set(members) == {"series1@google.com.ics", "one@google.com.ics"}
                assert (
                    "RECURRENCE-ID" in members["series1@google.com.ics"]
                    and "EXDATE" in members["series1@google.com.ics"]
                )
                requests_before = src.requests
                await run.run()  # the master was deleted on Google: the series goes on the destination
                assert ckpt.sync_token == "s2" and ckpt.deleted == 1
                assert set(dest_server.members(user, f"/{user}/work/")) == {"one@google.com.ics"}
                await run.run()  # nothing changed: one events.list with the token for this calendar
                assert src.requests - requests_before == 2 and ckpt.copied == 2
                ckpt.sync_token = "expired"
                await run.run()  # 410 Gone: everything is listed again; PUTs by name add nothing twice
                assert ckpt.sync_token == "s1"
                assert set(dest_server.members(user, f"/{user}/work/")) == {
                    "series1@google.com.ics",
                    "one@google.com.ics",
                }
            finally:
                await src.close()
                await dst.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "AuthenticationFailed"), (429, "GoogleThrottled"), (503, "GoogleThrottled")]
)
def test_google_errors_are_problems_without_the_token(status: int, reason: str) -> None:
    async def go() -> DavError:
        with respx.mock() as router:
            router.get(f"{API}/users/me/calendarList").respond(status, json={"error": {"message": TOKEN}})
            src = GoogleCalendar(_Bearer(), retries=0)  # 429/503 are retried after Retry-After otherwise
            try:
                await src.list_home("calendars", "")
            except DavError as exc:
                return exc
            finally:
                await src.close()
        raise AssertionError("no error")

    exc = asyncio.run(go())
    assert exc.reason == reason and TOKEN not in exc.message and exc.transient == (status != 401)


def test_expired_token_is_sync_token_invalid() -> None:
    async def go() -> None:
        with respx.mock(assert_all_called=False) as router:
            _mock(router)
            src = GoogleCalendar(_Bearer())
            try:
                with pytest.raises(SyncTokenInvalid):
                    await src.changes(EVENTS, "expired")
            finally:
                await src.close()

    asyncio.run(go())
