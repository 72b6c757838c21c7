"""The portable projection `mailferry verify` compares when a side is a cloud API
(worker/mailferry_worker/groupware/portable.py): every field it keeps changes it (a dropped field fails
here), spellings a cloud API re-renders do not, and what a destination's mapping loses is mapped to the
fields it touches."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from fixtures.groupware_data import contact, event, group
from mailferry_worker.groupware import cardmap as cm
from mailferry_worker.groupware import portable as pt
from mailferry_worker.groupware.eventmap import google_series
from mailferry_worker.groupware.google import series_to_ical


def _card() -> cm.Card:
    return cm.parse_vcard(contact(random.Random(3), 4, note="A note")[1])


CARD_CHANGES = {
    "kind": lambda c: replace(c, kind="group"),
    "fn": lambda c: replace(c, fn="Other Name"),
    "names": lambda c: replace(c, given="Other"),
    "emails": lambda c: replace(c, emails=c.emails[:1]),
    "phones": lambda c: replace(c, phones=[("+1 555 0100", "work")]),
    "addresses": lambda c: replace(c, addresses=[cm.Address("home", "Street 1", "Town")]),
    "org": lambda c: replace(c, org="Elsewhere"),
    "title": lambda c: replace(c, title="Chief"),
    "note": lambda c: replace(c, note="Another note"),
    "birthday": lambda c: replace(c, birthday="1990-04-15"),
    "urls": lambda c: replace(c, urls=["https://example.com/"]),
    "categories": lambda c: replace(c, categories=["all"]),
    "photo": lambda c: replace(c, photo=None),
    "members": lambda c: replace(c, members=["m1"]),
}


def test_contact_projection_has_every_field_the_mappings_carry() -> None:
    assert set(pt.contact_projection(_card())) == set(CARD_CHANGES)


@pytest.mark.parametrize("field", sorted(CARD_CHANGES))
def test_each_contact_field_is_compared(field: str) -> None:
    card = _card()
    changed = CARD_CHANGES[field](card)
    assert pt.differences(pt.contact_projection(card), pt.contact_projection(changed)) == [field]


def test_contact_spellings_a_cloud_api_rerenders_are_no_difference() -> None:
    card = _card()
    rerendered = replace(
        card,
        emails=[(e.upper(), "other") for e, _ in reversed(card.emails)],  # Graph: no types, any order
        phones=[(" ".join(n.split()) + " ", t) for n, t in card.phones],
        categories=list(reversed(card.categories)),
        photo=b"other bytes, same photo re-encoded",
        photo_type="JPEG",
    )
    assert pt.differences(pt.contact_projection(card), pt.contact_projection(rerendered)) == []
    for a, b in (("1990-04-15", "19900415"), ("--04-15", "1604-04-15"), ("--04-15", "--0415")):
        assert pt.contact_projection(replace(card, birthday=a)) == pt.contact_projection(
            replace(card, birthday=b)
        )


def _series_text() -> tuple[str, str]:
    name, text = event(random.Random(11), 3, True)
    return name, text.replace("\r\n ", "")  # unfolded: the tests edit whole lines


EVENT_EDITS = {  # (old line start, new line) -> the keys that must differ
    "master/summary": ("SUMMARY:Meeting 3", "SUMMARY:Renamed"),
    "master/description": ("DESCRIPTION:", "DESCRIPTION:Other"),
    "master/organizer": ("ORGANIZER;CN=Boss:mailto:boss@", "ORGANIZER:mailto:chief@example.com"),
    "master/alarms": ("TRIGGER:-PT15M", "TRIGGER:-PT30M"),
}


def _edit(text: str, old: str, new: str) -> str:
    lines = text.split("\r\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(old))
    lines[i] = new
    return "\r\n".join(lines)


@pytest.mark.parametrize("key", sorted(EVENT_EDITS))
def test_each_event_field_is_compared(key: str) -> None:
    _, text = _series_text()
    uid, base = pt.event_projection(text)
    old, new = EVENT_EDITS[key]
    assert pt.differences(base, pt.event_projection(_edit(text, old, new))[1]) == [key]
    assert uid and key in base


def test_event_times_people_recurrence_and_overrides_are_compared() -> None:
    _, text = _series_text()
    _, base = pt.event_projection(text)
    override = next(k.split("/")[0] for k in base if not k.startswith("master/"))

    def diff(old: str, new: str) -> list[str]:
        return pt.differences(base, pt.event_projection(_edit(text, old, new))[1])

    def later(line: str, hour: str) -> str:  # "...T093000" -> "...T<hour>3000"
        return line[:-6] + hour + line[-4:]

    start = next(ln for ln in text.split("\r\n") if ln.startswith("DTSTART;TZID"))
    end = next(ln for ln in text.split("\r\n") if ln.startswith("DTEND"))
    assert diff("DTEND", later(end, "23")) == ["master/end"]
    assert diff("DTSTART;TZID", later(start, "06")) == ["master/occurrences", "master/start"]
    assert diff("ATTENDEE;CN=Person", "ATTENDEE;PARTSTAT=DECLINED:mailto:p3@example.com") == [
        "master/partstats"
    ]
    assert diff("ATTENDEE;CN=Guest", "ATTENDEE:mailto:x@example.org") == [
        "master/attendees",
        "master/partstats",
    ]
    assert diff("RRULE:FREQ=WEEKLY", "RRULE:FREQ=WEEKLY;COUNT=2") == ["master/occurrences"]
    assert diff("EXDATE", "EXDATE;TZID=Europe/Berlin:19990101T090000") == ["master/occurrences"]
    lines = text.split("\r\n")
    second_summary = [i for i, ln in enumerate(lines) if ln.startswith("SUMMARY")][1]
    lines[second_summary] = "SUMMARY:Moved and renamed"
    assert pt.differences(base, pt.event_projection("\r\n".join(lines))[1]) == [f"{override}/summary"]


def _cal(*vevent: str) -> str:
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//t//EN", *vevent, "END:VCALENDAR", ""])


def test_recurrence_set_is_one_value_however_spelled_and_follows_dst() -> None:
    a = _cal(
        "BEGIN:VEVENT",
        "UID:s",
        "DTSTART;TZID=Europe/Berlin:20260316T090000",
        "DTEND;TZID=Europe/Berlin:20260316T093000",
        "RRULE:FREQ=WEEKLY;UNTIL=20260413T070000Z",
        "EXDATE;TZID=Europe/Berlin:20260406T090000",
        "END:VEVENT",
    )
    b = _cal(  # what Graph writes back: days listed, interval 1, UNTIL the end of the day, EXDATE in UTC
        "BEGIN:VEVENT",
        "UID:s",
        "DTSTART;TZID=Europe/Berlin:20260316T090000",
        "DURATION:PT30M",
        "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;UNTIL=20260413T235959Z",
        "EXDATE:20260406T070000Z",
        "END:VEVENT",
    )
    pa, pb = pt.event_projection(a)[1], pt.event_projection(b)[1]
    assert pt.differences(pa, pb) == []
    # 09:00 Berlin is 08:00Z before the last Sunday of March and 07:00Z after it.
    assert pa["master/occurrences"] == (
        "2026-03-16T08:00:00Z",
        "2026-03-23T08:00:00Z",
        "2026-03-30T07:00:00Z",
        "2026-04-13T07:00:00Z",
    )
    all_day = _cal("BEGIN:VEVENT", "UID:d", "DTSTART;VALUE=DATE:20260504", "END:VEVENT")
    proj = pt.event_projection(all_day)[1]
    assert proj["master/start"] == "2026-05-04" and proj["master/end"] == "2026-05-05"


def test_google_round_trip_projects_equal() -> None:
    """What the Calendar API answers for an imported series (master, modified instance) reads back equal."""
    _, text = _series_text()
    series = google_series(text, "x.ics")
    assert series.master is not None
    master = {**series.master, "id": "m", "status": "confirmed"}
    instances = [
        {
            **body,
            "id": f"m_{i}",
            "iCalUID": series.uid,
            "recurringEventId": "m",
            "originalStartTime": {"dateTime": rid.isoformat(), "timeZone": "Europe/Berlin"},
        }
        for i, (rid, body) in enumerate(series.overrides)
    ]
    back = series_to_ical([master, *instances]) or ""
    assert (
        series.lost == [] and pt.differences(pt.event_projection(text)[1], pt.event_projection(back)[1]) == []
    )


def test_losses_map_to_the_fields_they_touch() -> None:
    card = _card()
    many = cm.to_vcard(replace(card, emails=[(f"e{i}@example.com", "work") for i in range(5)]))
    lost = pt.losses("graph", "contacts", many, "x.vcf")
    assert lost and pt.excluded_fields(lost) == {"emails"}
    assert pt.losses("google-people", "contacts", many, "x.vcf") == []
    assert pt.losses("dav", "contacts", many, "x.vcf") == []
    grp = group("Team", ["a", "b"])[1]
    assert pt.ALL in pt.excluded_fields(pt.losses("graph", "contacts", grp, "g.vcf"))
    assert pt.ALL in pt.excluded_fields(pt.losses("google-people", "contacts", grp, "g.vcf"))
    _, text = _series_text()
    lost = pt.losses("graph", "calendars", text, "x.ics")
    assert lost == ["ATTACH by URI (Graph events hold file attachments only)"]
    assert pt.excluded_fields(lost) == frozenset()  # attachments are not projected: nothing excluded
    two = text.replace(
        "END:VALARM", "END:VALARM\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nEND:VALARM", 1
    )
    assert "alarms" in pt.excluded_fields(pt.losses("graph", "calendars", two, "x.ics"))
    assert pt.excluded_fields(["RRULE FREQ=SECONDLY (Graph cannot express it)"]) == {
        "occurrences",
        pt.OVERRIDES,
    }
    assert pt.excluded_fields(["overrides without their master (Graph needs the series)"]) == {
        pt.ALL,
        pt.OVERRIDES,
    }
    assert pt.excluded_fields(["X-MS-EMAIL", "VTODO component"]) == frozenset()


def test_differences_skip_what_is_not_held() -> None:
    _, text = _series_text()
    _, base = pt.event_projection(text)
    other = {k: ("x" if k.endswith("/summary") else v) for k, v in base.items()}
    assert len(pt.differences(base, other)) == 2
    assert pt.differences(base, other, frozenset({pt.OVERRIDES})) == ["master/summary"]
    assert pt.differences(base, other, frozenset({"summary"})) == []
    assert pt.differences(base, {}, frozenset({pt.ALL})) == []
    proj = pt.contact_projection(_card())
    assert pt.without_categories(proj, ["all", "x"])["categories"] == frozenset({"team-4"})
