"""Contacts and events between vCard/iCalendar and the Google People, Google Calendar and Microsoft Graph JSON
shapes, without servers (worker/mailferry_worker/groupware/cardmap.py, eventmap.py), and the shared
client's throttling (api.py)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest

from fixtures.groupware_data import contact, event, group
from mailferry_worker.groupware import cardmap as cm
from mailferry_worker.groupware import eventmap as em
from mailferry_worker.groupware.api import ApiClient, retry_after
from mailferry_worker.groupware.dav import DavError, SyncTokenInvalid


def _card() -> tuple[str, str]:
    return contact(random.Random(5), 7, note="Line one\\nline two\\; with\\, punctuation")


def test_vcard_people_round_trip_keeps_uid_names_emails_phones_photo_groups() -> None:
    name, data = _card()
    card = cm.parse_vcard(data)
    assert (
        len(card.emails) == 2
        and len(card.phones) == 2
        and card.photo
        and card.categories == ["team-2", "all"]
    )
    body = cm.person_from_card(card, f"book/{name}", {"team-2": "contactGroups/a", "all": "contactGroups/b"})
    assert cm.client_data(body, "uid") == card.uid and cm.client_data(body, cm.NAME_KEY) == f"book/{name}"
    # What People answers: the body plus its resourceName; the groups by resourceName.
    person = {**body, "resourceName": "people/c9"}
    back = cm.card_from_person(person, {"contactGroups/a": "team-2", "contactGroups/b": "all"}, card.photo)
    assert (back.uid, back.given, back.family, back.org, back.note) == (
        card.uid,
        card.given,
        card.family,
        card.org,
        card.note,
    )
    assert back.emails == card.emails and back.phones == card.phones and back.categories == card.categories
    assert back.photo == card.photo and back.photo_type == "PNG"
    again = cm.parse_vcard(cm.to_vcard(back))
    assert again.note == card.note and again.photo == card.photo and again.uid == card.uid


def test_vcard_graph_reports_what_graph_cannot_hold() -> None:
    _, data = _card()
    card = cm.parse_vcard(data)
    card.emails += [("x@example.com", "other"), ("y@example.com", "other")]  # 4 addresses: Graph holds 3
    card.phones.append(("+1 555", "other"))
    card.urls = ["https://a.example", "https://b.example"]
    body, lost = cm.graph_from_card(card, "n.vcf")
    assert len(body["emailAddresses"]) == 3 and body["mobilePhone"] and body["businessPhones"]
    assert (
        any("EMAIL beyond" in x for x in lost)
        and any("TEL" in x for x in lost)
        and any("URL" in x for x in lost)
    )
    assert (
        cm.extended(body, cm.GRAPH_UID_PROP) == card.uid and cm.extended(body, cm.GRAPH_NAME_PROP) == "n.vcf"
    )
    back = cm.card_from_graph({**body, "id": "AAMk="}, card.photo)
    assert back.uid == card.uid and back.categories == card.categories and back.photo == card.photo
    _, gdata = group("Team 1", ["a", "b"])
    gcard = cm.parse_vcard(gdata)
    assert gcard.kind == "group" and gcard.members == ["a", "b"]
    assert any("group card" in x for x in cm.graph_from_card(gcard, "g.vcf")[1])


def test_bad_vcard_is_refused() -> None:
    with pytest.raises(cm.BadCard):
        cm.parse_vcard("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No uid\r\nEND:VCARD\r\n")


def _series() -> tuple[str, str]:
    rng = random.Random(11)
    while True:  # the first recurring event the generator makes (moved + two cancelled, across DST)
        name, data = event(rng, 1, True)
        if "RECURRENCE-ID" in data:
            return name, data


def test_ical_to_google_series_keeps_uid_zone_exdates_overrides_people_alarms() -> None:
    name, data = _series()
    s = em.google_series(data, name)
    assert s.master is not None and s.master["iCalUID"] == name.removesuffix(".ics")
    assert s.master["start"]["timeZone"] == "Europe/Berlin"
    assert s.master["recurrence"][0].startswith("RRULE:FREQ=WEEKLY;COUNT=")
    assert s.master["recurrence"][1].startswith("EXDATE;TZID=Europe/Berlin:")
    assert s.master["extendedProperties"]["private"][cm.NAME_KEY] == name
    assert [a["optional"] for a in s.master["attendees"]] == [False, True]
    assert s.master["reminders"] == {"useDefault": False, "overrides": [{"method": "popup", "minutes": 15}]}
    assert s.master["attachments"][0]["fileUrl"].startswith("https://files.example.com/")
    [(original, override)] = s.overrides
    assert original.tzinfo is not None and override["summary"].endswith("(moved)") and s.lost == []


def _graph_instances(body: dict[str, Any], series: em.Series) -> list[dict[str, Any]]:
    """What /instances answers for the series after the exceptions were written (independent of eventmap:
    a weekly numbered pattern stepped in local time)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(body["recurrence"]["range"]["recurrenceTimeZone"])
    first = datetime.fromisoformat(body["start"]["dateTime"])
    cancelled = {c.astimezone(UTC) for c in series.cancelled}
    moved = {o.astimezone(UTC): b for o, b in series.overrides}
    out = []
    for k in range(body["recurrence"]["range"]["numberOfOccurrences"]):
        occ = (first + timedelta(weeks=k)).replace(tzinfo=zone).astimezone(UTC)
        if occ in cancelled:
            continue
        inst = {"id": f"i{k}", "type": "occurrence", "originalStart": occ.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if occ in moved:
            inst.update(moved[occ], type="exception")
        out.append(inst)
    return out


def test_ical_graph_round_trip_across_dst() -> None:
    name, data = _series()
    s = em.graph_series(data, name)
    assert s.master is not None
    rec = s.master["recurrence"]
    assert rec["pattern"]["type"] == "weekly" and rec["range"]["type"] == "numbered"
    assert (
        rec["range"]["recurrenceTimeZone"] == "Europe/Berlin"
        and len(s.cancelled) == 2
        and len(s.overrides) == 1
    )
    assert s.lost == ["ATTACH by URI (Graph events hold file attachments only)"]
    # Graph answers in UTC with the zone apart; the series comes back with the same dates.
    master = {
        **s.master,
        "id": "M",
        "type": "seriesMaster",
        "originalStartTimeZone": "W. Europe Standard Time",
    }
    master["start"] = _utc(master["start"])
    master["end"] = _utc(master["end"])
    instances = _graph_instances(s.master, s)
    for i in instances:
        if i["type"] == "exception":
            i["start"], i["end"] = _utc(i["start"]), _utc(i["end"])
    back = icalendar.Calendar.from_ical(em.graph_to_ical(master, instances))
    orig = icalendar.Calendar.from_ical(data)
    m0 = next(e for e in orig.walk("VEVENT") if "RECURRENCE-ID" not in e)
    m1 = next(e for e in back.walk("VEVENT") if "RECURRENCE-ID" not in e)
    assert str(m1["UID"]) == str(m0["UID"]) and m1["DTSTART"].dt == m0["DTSTART"].dt
    assert m1["DTSTART"].dt.tzinfo.key == "Europe/Berlin"
    assert sorted(d.dt for d in m1["EXDATE"].dts) == sorted(d.dt for d in m0["EXDATE"].dts)
    o0 = next(e for e in orig.walk("VEVENT") if "RECURRENCE-ID" in e)
    o1 = next(e for e in back.walk("VEVENT") if "RECURRENCE-ID" in e)
    assert o1["RECURRENCE-ID"].dt == o0["RECURRENCE-ID"].dt and o1["DTSTART"].dt == o0["DTSTART"].dt
    assert o1["DTSTART"].dt.utcoffset() == o0["DTSTART"].dt.utcoffset()  # the hour survives DST
    assert [str(a.params["ROLE"]) for a in m1["ATTENDEE"]] == ["REQ-PARTICIPANT", "OPT-PARTICIPANT"]
    assert [str(x["TRIGGER"].to_ical().decode()) for x in m1.walk("VALARM")] == ["-PT15M"]


def _utc(value: dict[str, str]) -> dict[str, str]:
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(value["dateTime"]).replace(tzinfo=ZoneInfo(value["timeZone"]))
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


@pytest.mark.parametrize(
    ("rrule", "pattern"),
    [
        ("FREQ=DAILY;INTERVAL=2;COUNT=5", {"type": "daily", "interval": 2}),
        (
            "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20261231T235959Z",
            {"type": "weekly", "daysOfWeek": ["monday", "wednesday"]},
        ),
        ("FREQ=MONTHLY;BYMONTHDAY=15", {"type": "absoluteMonthly", "dayOfMonth": 15}),
        ("FREQ=MONTHLY;BYDAY=-1FR", {"type": "relativeMonthly", "index": "last", "daysOfWeek": ["friday"]}),
        ("FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=2", {"type": "absoluteYearly", "month": 3, "dayOfMonth": 2}),
    ],
)
def test_rrule_to_graph_pattern_and_back(rrule: str, pattern: dict[str, Any]) -> None:
    ev = icalendar.Event.from_ical(
        f"BEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260302T090000Z\r\nRRULE:{rrule}\r\nEND:VEVENT"
    )
    lost: list[str] = []
    rec = em.graph_recurrence(ev, ev["DTSTART"].dt, lost)
    assert rec is not None and lost == []
    assert {k: rec["pattern"][k] for k in pattern} == pattern
    back = em.rrule_of(rec)
    assert back is not None and back.split(";")[0] == rrule.split(";")[0]


def test_rrule_graph_cannot_express_is_reported() -> None:
    ev = icalendar.Event.from_ical(
        "BEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260302T090000Z\r\nRRULE:FREQ=HOURLY;COUNT=3\r\nEND:VEVENT"
    )
    lost: list[str] = []
    assert em.graph_recurrence(ev, ev["DTSTART"].dt, lost) is None and "cannot express" in lost[0]


def test_retry_after_and_throttling_then_a_problem_without_the_token() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "7"}), 0) == 7.0
    assert retry_after(httpx.Response(429), 2) == 4.0
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503, headers={"Retry-After": "1"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )

    async def go() -> dict[str, Any]:
        api = ApiClient(
            httpx.BasicAuth("u", "secret-token"),
            "Graph",
            transport=httpx.MockTransport(lambda r: next(answers)),
            sleep=sleep,
        )
        try:
            return await api.json("GET", "https://graph.test/v1.0/me/contacts", "contacts.list")
        finally:
            await api.close()

    assert asyncio.run(go()) == {"ok": True} and waits == [3.0, 1.0]

    async def always(status: int, body: bytes) -> DavError:
        api = ApiClient(
            httpx.BasicAuth("u", "secret-token"),
            "Google",
            transport=httpx.MockTransport(lambda r: httpx.Response(status, content=body)),
            retries=1,
            sleep=sleep,
        )
        try:
            await api.json("GET", "https://google.test/x", "x.list")
        except DavError as exc:
            return exc
        finally:
            await api.close()
        raise AssertionError("no error")

    exc = asyncio.run(always(429, b'{"error": "secret-token"}'))
    assert exc.reason == "GoogleThrottled" and exc.transient and "secret-token" not in exc.message
    assert isinstance(asyncio.run(always(410, b"{}")), SyncTokenInvalid)
    assert isinstance(asyncio.run(always(400, b'{"reason": "EXPIRED_SYNC_TOKEN"}')), SyncTokenInvalid)
    assert asyncio.run(always(401, b"{}")).reason == "AuthenticationFailed"
