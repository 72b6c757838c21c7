"""Calendar objects between iCalendar and the cloud APIs' JSON, pure (no HTTP). One iCalendar object (one
UID: the master, its overrides with RECURRENCE-ID, its EXDATEs) ↔ a Google Calendar series (events.import
body + instance updates) or a Microsoft Graph series (seriesMaster + exceptions + cancelled occurrences).
Google → iCalendar is google.series_to_ical. What a side cannot hold is listed in `lost`, per item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .cardmap import GRAPH_NAME_PROP, GRAPH_UID_PROP, NAME_KEY, extended

ROLE_OPTIONAL = "OPT-PARTICIPANT"
GOOGLE_STATUS = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentative"}
GRAPH_STATUS_IN = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentativelyAccepted": "TENTATIVE",
    "organizer": "ACCEPTED",
}
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
GRAPH_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
# Graph answers in UTC; `originalStartTimeZone` is an IANA or a Windows zone name. The common Windows names:
WINDOWS_ZONES = {
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "GMT Standard Time": "Europe/London",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "Pacific Standard Time": "America/Los_Angeles",
    "Tokyo Standard Time": "Asia/Tokyo",
    "India Standard Time": "Asia/Kolkata",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "UTC": "UTC",
}
SERIES_HORIZON_DAYS = 5 * 366  # an open-ended Graph series is expanded this far to find cancelled dates


@dataclass
class Series:
    """One UID's events in a cloud API's shape: the master (or single event), overrides keyed by their
    original start, cancelled original starts, and what the API cannot hold."""

    uid: str
    master: dict[str, Any] | None
    master_start: date | datetime | None = None
    overrides: list[tuple[date | datetime, dict[str, Any]]] = field(default_factory=list)
    cancelled: list[date | datetime] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def _parse(text: str) -> tuple[str, Any, list[Any], list[str]]:
    import icalendar

    cal = icalendar.Calendar.from_ical(text)
    events = list(cal.walk("VEVENT"))
    if not events:
        raise ValueError("no VEVENT")
    uid = str(events[0].get("UID", ""))
    master = next((e for e in events if "RECURRENCE-ID" not in e), None)
    overrides = [e for e in events if "RECURRENCE-ID" in e]
    lost = [f"{c.name} component" for c in cal.subcomponents if c.name not in ("VEVENT", "VTIMEZONE")]
    return uid, master, overrides, lost


def _dt(ev: Any, prop: str) -> date | datetime | None:
    value = ev.get(prop)
    return None if value is None else value.dt


def event_end(ev: Any, start: date | datetime) -> date | datetime:
    """DTEND, else DTSTART + DURATION, else RFC 5545 §3.6.1's default: one day for a date, none for a time."""
    end = _dt(ev, "DTEND")
    if end is not None:
        return end
    dur = ev.get("DURATION")
    if dur is not None:
        return start + dur.dt
    return start + (timedelta(0) if isinstance(start, datetime) else timedelta(days=1))


def _tzname(moment: datetime) -> str:
    key = getattr(moment.tzinfo, "key", None)
    if key:
        return str(key)
    return "UTC" if moment.utcoffset() in (None, timedelta(0)) else moment.strftime("%z")


def _exdates(ev: Any) -> list[date | datetime]:
    raw = ev.get("EXDATE")
    if raw is None:
        return []
    return [d.dt for x in (raw if isinstance(raw, list) else [raw]) for d in x.dts]


def _alarm_minutes(ev: Any, lost: list[str]) -> list[tuple[str, int]]:
    out = []
    for alarm in ev.walk("VALARM"):
        trig = alarm.get("TRIGGER")
        delta = getattr(trig, "dt", None)
        if (
            not isinstance(delta, timedelta)
            or delta > timedelta(0)
            or alarm.get("TRIGGER").params.get("RELATED") == "END"
        ):
            lost.append("VALARM not relative to the start")
            continue
        out.append((str(alarm.get("ACTION", "DISPLAY")).upper(), int(-delta.total_seconds() // 60)))
    return out


def _people(ev: Any) -> tuple[tuple[str, str] | None, list[tuple[str, str, str, bool, str]]]:
    org = ev.get("ORGANIZER")
    organizer = (
        (str(org).removeprefix("mailto:").removeprefix("MAILTO:"), str(org.params.get("CN", "")))
        if org
        else None
    )
    raw = ev.get("ATTENDEE") or []
    attendees = []
    for a in raw if isinstance(raw, list) else [raw]:
        email = str(a).removeprefix("mailto:").removeprefix("MAILTO:")
        attendees.append(
            (
                email,
                str(a.params.get("CN", "")),
                str(a.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
                str(a.params.get("ROLE", "")).upper() == ROLE_OPTIONAL,
                str(a.params.get("CUTYPE", "")).upper(),
            )
        )
    return organizer, attendees


def _attach_urls(ev: Any, lost: list[str]) -> list[tuple[str, str]]:
    raw = ev.get("ATTACH") or []
    out = []
    for a in raw if isinstance(raw, list) else [raw]:
        if str(a.params.get("VALUE", "")).upper() == "BINARY" or a.params.get("ENCODING"):
            lost.append("ATTACH inline (binary)")
            continue
        out.append((str(a), str(a.params.get("FMTTYPE", "application/octet-stream"))))
    return out


# ---------------------------------------------------------------------------------------- Google Calendar


def google_time(value: date | datetime) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    if value.tzinfo is None:
        return {"dateTime": value.isoformat(), "timeZone": "UTC"}
    return {"dateTime": value.isoformat(), "timeZone": _tzname(value)}


def _rule_lines(ev: Any) -> list[str]:
    lines = []
    for prop in ("RRULE", "RDATE", "EXDATE"):
        raw = ev.get(prop)
        if raw is None:
            continue
        for value in raw if isinstance(raw, list) else [raw]:
            params = "".join(f";{k}={v}" for k, v in value.params.items()) if hasattr(value, "params") else ""
            lines.append(f"{prop}{params}:{value.to_ical().decode()}")
    return lines


def _google_event(ev: Any, lost: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for prop, key in (("SUMMARY", "summary"), ("DESCRIPTION", "description"), ("LOCATION", "location")):
        if ev.get(prop) is not None:
            body[key] = str(ev.get(prop))
    start = _dt(ev, "DTSTART")
    if start is not None:
        body["start"] = google_time(start)
        body["end"] = google_time(event_end(ev, start))
    organizer, attendees = _people(ev)
    if organizer:
        body["organizer"] = {"email": organizer[0], **({"displayName": organizer[1]} if organizer[1] else {})}
    if attendees:
        body["attendees"] = [
            {
                "email": e,
                **({"displayName": cn} if cn else {}),
                "optional": opt,
                "responseStatus": GOOGLE_STATUS.get(ps, "needsAction"),
                **({"resource": True} if cu in ("RESOURCE", "ROOM") else {}),
            }
            for e, cn, ps, opt, cu in attendees
        ]
    alarms = _alarm_minutes(ev, lost)
    if len(alarms) > 5:
        lost.append(f"VALARM beyond Google's 5 reminders ({len(alarms) - 5})")
    body["reminders"] = {
        "useDefault": False,
        "overrides": [{"method": "email" if a == "EMAIL" else "popup", "minutes": m} for a, m in alarms[:5]],
    }
    urls = _attach_urls(ev, lost)
    if urls:
        body["attachments"] = [{"fileUrl": u, "mimeType": t} for u, t in urls]
    if str(ev.get("STATUS", "")).upper() == "CANCELLED":
        body["status"] = "cancelled"
    return body


def google_series(text: str, name: str) -> Series:
    """events.import body for the master (recurrence lines as RFC 5545 writes them, EXDATE included, so a
    cancelled occurrence never exists on Google) and events.update bodies for the overrides."""
    uid, master, overrides, lost = _parse(text)
    series = Series(uid, None, lost=lost)
    private = {"extendedProperties": {"private": {NAME_KEY: name}}}
    if master is not None:
        series.master = {
            "iCalUID": uid,
            **_google_event(master, series.lost),
            "recurrence": _rule_lines(master),
            **private,
        }
        series.master_start = _dt(master, "DTSTART")
    for ov in overrides:
        rid = _dt(ov, "RECURRENCE-ID")
        if rid is None:
            continue
        body = _google_event(ov, series.lost)
        if (
            master is None
        ):  # overrides without their master (an invitation to one occurrence): events on their own
            series.lost.append("an override without its master, imported as a single event")
            series.overrides.append((rid, {"iCalUID": uid, **body, **private}))
        else:
            series.overrides.append((rid, body))
    return series


# ---------------------------------------------------------------------------------------- Microsoft Graph


def graph_time(value: date | datetime) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"dateTime": f"{value.isoformat()}T00:00:00", "timeZone": "UTC"}
    if value.tzinfo is None:
        return {"dateTime": value.isoformat(), "timeZone": "UTC"}
    return {"dateTime": value.replace(tzinfo=None).isoformat(), "timeZone": _tzname(value)}


def graph_recurrence(ev: Any, start: date | datetime, lost: list[str]) -> dict[str, Any] | None:
    """RRULE → patternedRecurrence (what Graph can express); None and a `lost` line otherwise."""
    rules = ev.get("RRULE")
    if rules is None:
        return None
    if isinstance(rules, list):
        lost.append("more than one RRULE")
        return None
    if ev.get("RDATE") is not None:
        lost.append("RDATE (Graph has no extra dates in a series)")
    r = {k.upper(): v for k, v in rules.items()}
    freq, interval = r["FREQ"][0], int((r.get("INTERVAL") or [1])[0])
    day0 = start.date() if isinstance(start, datetime) else start
    byday = [str(d) for d in r.get("BYDAY") or []]
    unsupported = set(r) - {
        "FREQ",
        "INTERVAL",
        "COUNT",
        "UNTIL",
        "BYDAY",
        "BYMONTHDAY",
        "BYMONTH",
        "WKST",
        "BYSETPOS",
    }
    if unsupported or freq not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        lost.append(
            f"RRULE {rules.to_ical().decode()} (Graph cannot express it; the first occurrence is copied)"
        )
        return None
    pattern: dict[str, Any] = {"interval": interval, "firstDayOfWeek": "monday"}

    def relative(days: list[str]) -> tuple[int, list[str]] | None:
        idx = {int(d[:-2]) if d[:-2] else int((r.get("BYSETPOS") or [0])[0]) for d in days}
        if len(idx) != 1 or next(iter(idx)) not in INDEX:
            return None
        return next(iter(idx)), [GRAPH_DAYS[DAYS.index(d[-2:])] for d in days]

    if freq == "DAILY":
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        pattern["type"] = "weekly"
        pattern["daysOfWeek"] = [GRAPH_DAYS[DAYS.index(d[-2:])] for d in byday] or [
            GRAPH_DAYS[day0.weekday()]
        ]
    elif byday:
        rel = relative(byday)
        if rel is None:
            lost.append(
                f"RRULE {rules.to_ical().decode()} (Graph cannot express it; the first occurrence is copied)"
            )
            return None
        pattern.update(
            type="relativeMonthly" if freq == "MONTHLY" else "relativeYearly",
            index=INDEX[rel[0]],
            daysOfWeek=rel[1],
        )
        if freq == "YEARLY":
            pattern["month"] = int((r.get("BYMONTH") or [day0.month])[0])
    else:
        pattern["type"] = "absoluteMonthly" if freq == "MONTHLY" else "absoluteYearly"
        pattern["dayOfMonth"] = int((r.get("BYMONTHDAY") or [day0.day])[0])
        if freq == "YEARLY":
            pattern["month"] = int((r.get("BYMONTH") or [day0.month])[0])
    rng: dict[str, Any] = {"startDate": day0.isoformat(), "type": "noEnd"}
    if isinstance(start, datetime) and start.tzinfo is not None:
        rng["recurrenceTimeZone"] = _tzname(start)
    if r.get("COUNT"):
        rng.update(type="numbered", numberOfOccurrences=int(r["COUNT"][0]))
    elif r.get("UNTIL"):
        until = r["UNTIL"][0]
        rng.update(
            type="endDate", endDate=(until.date() if isinstance(until, datetime) else until).isoformat()
        )
    return {"pattern": pattern, "range": rng}


def _graph_event(ev: Any, lost: list[str], name: str | None, uid: str) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": str(ev.get("SUMMARY", ""))}
    if ev.get("DESCRIPTION") is not None:
        body["body"] = {"contentType": "text", "content": str(ev.get("DESCRIPTION"))}
    if ev.get("LOCATION") is not None:
        body["location"] = {"displayName": str(ev.get("LOCATION"))}
    start, end = _dt(ev, "DTSTART"), _dt(ev, "DTEND")
    if start is not None:
        all_day = not isinstance(start, datetime)
        if end is None:
            end = start + (timedelta(days=1) if all_day else timedelta(0))
        body.update(start=graph_time(start), end=graph_time(end), isAllDay=all_day)
    organizer, attendees = _people(ev)
    if organizer:  # Graph makes the signed-in mailbox the organizer of what it creates (docs/groupware.md)
        body["organizer"] = {"emailAddress": {"address": organizer[0], "name": organizer[1] or organizer[0]}}
    body["attendees"] = [
        {
            "emailAddress": {"address": e, "name": cn or e},
            "type": "resource" if cu in ("RESOURCE", "ROOM") else "optional" if opt else "required",
        }
        for e, cn, _, opt, cu in attendees
    ]
    alarms = _alarm_minutes(ev, lost)
    body["isReminderOn"] = bool(alarms)
    if alarms:
        body["reminderMinutesBeforeStart"] = alarms[0][1]
        if len(alarms) > 1:
            lost.append(f"VALARM beyond Graph's one reminder ({len(alarms) - 1})")
    if _attach_urls(ev, lost):
        lost.append("ATTACH by URI (Graph events hold file attachments only)")
    if name is not None:
        body["singleValueExtendedProperties"] = [
            {"id": GRAPH_NAME_PROP, "value": name},
            {"id": GRAPH_UID_PROP, "value": uid},
        ]
    return body


def graph_series(text: str, name: str) -> Series:
    uid, master, overrides, lost = _parse(text)
    series = Series(uid, None, lost=lost)
    if master is None:
        series.lost.append("overrides without their master (Graph needs the series)")
        return series
    series.master = _graph_event(master, series.lost, name, uid)
    series.master_start = start = _dt(master, "DTSTART")
    if start is not None:
        rec = graph_recurrence(master, start, series.lost)
        if rec is not None:
            series.master["recurrence"] = rec
            series.cancelled = _exdates(master)
            for ov in overrides:
                rid = _dt(ov, "RECURRENCE-ID")
                if rid is not None:
                    series.overrides.append((rid, _graph_event(ov, series.lost, None, uid)))
        elif overrides:
            series.lost.append(f"{len(overrides)} override(s) of a series Graph cannot hold")
    return series


def _graph_zone(ev: dict[str, Any]) -> ZoneInfo | None:
    name = ev.get("originalStartTimeZone") or (ev.get("start") or {}).get("timeZone") or ""
    try:
        return (
            ZoneInfo(WINDOWS_ZONES.get(name, name)) if name and name != "tzone://Microsoft/Custom" else None
        )
    except (ZoneInfoNotFoundError, ValueError):
        return None


def graph_when(value: dict[str, Any], zone: ZoneInfo | None, all_day: bool = False) -> date | datetime:
    """Graph's dateTimeTimeZone (UTC unless a Prefer: outlook.timezone said otherwise) in the event's zone."""
    raw = str(value.get("dateTime", ""))[:19]
    moment = datetime.fromisoformat(raw)
    if all_day:
        return moment.date()
    src = value.get("timeZone") or "UTC"
    try:
        moment = moment.replace(tzinfo=ZoneInfo(WINDOWS_ZONES.get(src, src)))
    except (ZoneInfoNotFoundError, ValueError):
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone) if zone is not None else moment


def rrule_of(rec: dict[str, Any]) -> str | None:
    p, r = rec.get("pattern") or {}, rec.get("range") or {}
    kind = p.get("type")
    freq = {
        "daily": "DAILY",
        "weekly": "WEEKLY",
        "absoluteMonthly": "MONTHLY",
        "relativeMonthly": "MONTHLY",
        "absoluteYearly": "YEARLY",
        "relativeYearly": "YEARLY",
    }.get(kind or "")
    if freq is None:
        return None
    parts = [f"FREQ={freq}"]
    if int(p.get("interval") or 1) > 1:
        parts.append(f"INTERVAL={int(p['interval'])}")
    days = [DAYS[GRAPH_DAYS.index(d)] for d in p.get("daysOfWeek") or [] if d in GRAPH_DAYS]
    if kind == "weekly" and days:
        parts.append("BYDAY=" + ",".join(days))
    if kind in ("relativeMonthly", "relativeYearly") and days:
        idx = {v: k for k, v in INDEX.items()}.get(p.get("index", "first"), 1)
        parts.append("BYDAY=" + ",".join(f"{idx}{d}" for d in days))
    if kind in ("absoluteMonthly", "absoluteYearly") and p.get("dayOfMonth"):
        parts.append(f"BYMONTHDAY={int(p['dayOfMonth'])}")
    if kind in ("absoluteYearly", "relativeYearly") and p.get("month"):
        parts.append(f"BYMONTH={int(p['month'])}")
    if r.get("type") == "numbered":
        parts.append(f"COUNT={int(r['numberOfOccurrences'])}")
    elif r.get("type") == "endDate" and r.get("endDate"):
        parts.append("UNTIL=" + r["endDate"].replace("-", "") + "T235959Z")
    return ";".join(parts)


def _vevent_from_graph(ev: dict[str, Any], uid: str, zone: ZoneInfo | None) -> Any:
    import icalendar

    out = icalendar.Event()
    out.add("uid", uid)
    if ev.get("lastModifiedDateTime"):
        out.add("dtstamp", datetime.fromisoformat(str(ev["lastModifiedDateTime"]).replace("Z", "+00:00")))
    out.add("summary", ev.get("subject") or "")
    content = (ev.get("body") or {}).get("content")
    if content:
        out.add("description", content)
    if (ev.get("location") or {}).get("displayName"):
        out.add("location", ev["location"]["displayName"])
    all_day = bool(ev.get("isAllDay"))
    if ev.get("start"):
        out.add("dtstart", graph_when(ev["start"], zone, all_day))
    if ev.get("end"):
        out.add("dtend", graph_when(ev["end"], zone, all_day))
    org = (ev.get("organizer") or {}).get("emailAddress") or {}
    if org.get("address"):
        out.add("organizer", f"mailto:{org['address']}", parameters={"CN": org.get("name") or org["address"]})
    for a in ev.get("attendees") or []:
        addr = a.get("emailAddress") or {}
        if not addr.get("address"):
            continue
        params = {
            "PARTSTAT": GRAPH_STATUS_IN.get((a.get("status") or {}).get("response", ""), "NEEDS-ACTION"),
            "ROLE": ROLE_OPTIONAL if a.get("type") == "optional" else "REQ-PARTICIPANT",
        }
        if a.get("type") == "resource":
            params["CUTYPE"] = "RESOURCE"
        if addr.get("name"):
            params["CN"] = addr["name"]
        out.add("attendee", f"mailto:{addr['address']}", parameters=params)
    if ev.get("isReminderOn"):
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", ev.get("subject") or "Reminder")
        alarm.add("trigger", -timedelta(minutes=int(ev.get("reminderMinutesBeforeStart") or 0)))
        out.add_component(alarm)
    if ev.get("isCancelled"):
        out.add("status", "CANCELLED")
    return out


def graph_to_ical(
    master: dict[str, Any], instances: list[dict[str, Any]], horizon: date | None = None
) -> str:
    """One iCalendar object from a Graph singleInstance, or a seriesMaster with the series' instances (from
    /events/{id}/instances over the series' span): exceptions become overrides with RECURRENCE-ID, dates
    the pattern has and the instances do not (cancelled occurrences) become EXDATE."""
    import icalendar
    from dateutil.rrule import rrulestr

    uid = extended(master, GRAPH_UID_PROP) or str(master.get("iCalUId") or master.get("id"))
    zone = _graph_zone(master)
    cal = icalendar.Calendar()
    cal.add("prodid", "-//mailferry//Microsoft Graph import//EN")
    cal.add("version", "2.0")
    vmaster = _vevent_from_graph(master, uid, zone)
    cal.add_component(vmaster)
    rule = rrule_of(master.get("recurrence") or {}) if master.get("type") == "seriesMaster" else None
    if rule:
        vmaster.add("rrule", icalendar.vRecur.from_ical(rule))
        start = vmaster["DTSTART"].dt
        if isinstance(start, datetime):
            expected = rrulestr(rule, dtstart=start)
            limit = datetime.combine(
                horizon or (start.date() + timedelta(days=SERIES_HORIZON_DAYS)),
                datetime.min.time(),
                start.tzinfo,
            )
            seen = set()
            for inst in instances:
                if inst.get("originalStart"):
                    seen.add(datetime.fromisoformat(str(inst["originalStart"]).replace("Z", "+00:00")))
                if inst.get("type") == "exception":
                    vex = _vevent_from_graph(inst, uid, zone)
                    orig = datetime.fromisoformat(str(inst["originalStart"]).replace("Z", "+00:00"))
                    vex.add("recurrence-id", orig.astimezone(zone) if zone else orig)
                    cal.add_component(vex)
            missing = [
                o for o in expected.between(start - timedelta(seconds=1), limit, inc=True) if o not in seen
            ]
            if missing:
                vmaster.add("exdate", missing)
    cal.add_missing_timezones()
    return str(cal.to_ical().decode())
