"""Google People/Calendar and Microsoft Graph as groupware sides, through the worker's GroupwareRunner (the
MailboxSync status file, the real open_client wiring, checkpoints), with a real Radicale on the other side
and the cloud API as an HTTP contract fake on its documented shapes (tests/fixtures/groupware_cloud.py):
paging, sync tokens / delta links that expire, 429 + Retry-After, and a create whose answer is lost (the
worker dies knowing nothing of the id): 0 lost, 0 duplicated, changes/additions/deletions carried."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import icalendar
import pytest
import respx

from fixtures.groupware_cloud import GOOGLE_ROOT, GRAPH_ROOT, FakeGoogle, FakeGraph, Throttle
from fixtures.groupware_data import PNG_HEAD, address_book, calendar, contact, event
from fixtures.groupware_setup import GroupwareMailbox, groupware_mailbox
from fixtures.radicale import RadicalePair
from mailferry_api.mailboxsync import MailboxSyncSpec
from mailferry_imap.credentials import DirSecrets
from mailferry_worker import cli
from mailferry_worker.checkpoint import FileStatusStore
from mailferry_worker.groupware.runner import GroupwareResult, GroupwareRunner
from mailferry_worker.groupware.verify import CollectionReport, verify_mailboxsync_collections

pytestmark = pytest.mark.timeout(300)


def _mailbox(
    tmp: Path, pair: RadicalePair, user: str, source: dict[str, Any], dest: dict[str, Any]
) -> GroupwareMailbox:
    mbx = groupware_mailbox(tmp, pair.source, pair.destination, user)
    doc = json.loads(mbx.status_file.read_text())
    doc["spec"]["groupware"]["source"] = source or doc["spec"]["groupware"]["source"]
    doc["spec"]["groupware"]["destination"] = dest or doc["spec"]["groupware"]["destination"]
    mbx.status_file.write_text(json.dumps(doc))
    return mbx


@contextmanager
def _routes(fake: FakeGoogle | FakeGraph, host: str) -> Iterator[None]:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()  # Radicale is real
        router.route(host=host).mock(side_effect=fake.handle)
        router.route(host="photos.test").mock(side_effect=fake.handle)
        yield


def _round(mbx: GroupwareMailbox, fake: FakeGoogle | FakeGraph, host: str) -> GroupwareResult:
    async def go() -> GroupwareResult:
        with _routes(fake, host):
            store = FileStatusStore(mbx.status_dir)
            return await GroupwareRunner(mbx.name, store, DirSecrets(mbx.secrets_dir)).run()

    return asyncio.run(go())


def _names(items: list[dict[str, Any]], key: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for i in items:
        for d in i.get(key) or []:
            if d.get("key") == "mailferryName" or "Name mailferryName" in str(d.get("id", "")):
                out[d["value"]] += 1
    return out


def test_radicale_into_google_people_and_calendar(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    user = "gdest@example.com"
    radicale_pair.source.add_user(user)
    book = radicale_pair.source.seed(
        user, "book", "contacts", address_book(9, seed=4, groups=2), "Address book"
    )
    cal = radicale_pair.source.seed(
        user, "work", "calendars", calendar(14, seed=5, recurring_share=0.5), "Work"
    )
    mbx = _mailbox(tmp_path, radicale_pair, user, {}, {"type": "google", "url": GOOGLE_ROOT})
    fake = FakeGoogle(throttle=Throttle(left=2, retry_after="0"))
    fake.drop_answer_at = 4  # the 4th createContact is stored, its answer lost: the worker stops (transient)

    first = _round(mbx, fake, "google.test")
    assert first.outcome == "transient" and first.reason == "GoogleThrottled", first
    second = _round(mbx, fake, "google.test")
    assert second.outcome == "synced", (second, mbx.status().get("conditions"))

    people = fake.live()
    assert len(people) == 9 and set(_names(people, "clientData").values()) == {1}  # 0 lost, 0 twice
    src_cards = radicale_pair.source.members(user, book)
    by_uid = {next(d["value"] for d in p["clientData"] if d["key"] == "uid"): p for p in people}
    some = next(n for n, d in src_cards.items() if "X-ADDRESSBOOKSERVER-KIND" not in d)
    person = by_uid[some.removesuffix(".vcf")]
    assert len(person["emailAddresses"]) == 2 and len(person["phoneNumbers"]) == 2
    assert fake.photos[person["resourceName"]].startswith(PNG_HEAD)
    groups = {
        fake.groups[m["contactGroupMembership"]["contactGroupResourceName"]] for m in person["memberships"]
    }
    assert "Address book" in groups and "all" in groups  # the address book and the CATEGORIES as groups
    team = {rid for rid, n in fake.groups.items() if n.startswith("Team ")}
    assert len(team) == 2 and all(
        fake.group_data[g] for g in team
    )  # group cards -> groups, found by clientData

    events = fake.events_of("Work")
    src_events = radicale_pair.source.members(user, cal)
    assert len(events) == 14 and Counter(e["iCalUID"] for e in events.values()).most_common(1)[0][1] == 1
    series = [e for e in events.values() if e.get("recurrence")]
    assert series and all(
        any(r.startswith("EXDATE;TZID=Europe/Berlin") for r in e["recurrence"]) for e in series
    )
    assert all(len(e.get("exceptions", {})) == 1 for e in series)  # the moved occurrence, by originalStart
    assert {e["iCalUID"] + ".ics" for e in events.values()} == set(src_events)
    errors = mbx.status().get("itemErrors", [])
    assert all(e["reason"] == "PartiallyCopied" and "member" in e["message"] for e in errors), errors

    # Changes on the source: a contact changed, one added, one deleted; an event changed, one deleted.
    rng = random.Random(3)
    changed = next(n for n in sorted(src_cards) if "X-ADDRESSBOOKSERVER-KIND" not in src_cards[n])
    radicale_pair.source.put(
        user,
        book + changed,
        contact(rng, 77, uid=changed.removesuffix(".vcf"), note="Changed")[1],
        "contacts",
    )
    radicale_pair.source.put(user, book + "new.vcf", contact(rng, 78, uid="new-uid")[1], "contacts")
    gone = next(n for n in sorted(src_cards, reverse=True) if n != changed and "KIND" not in src_cards[n])
    radicale_pair.source.delete(user, book + gone)
    ev_names = sorted(src_events)
    radicale_pair.source.put(
        user,
        cal + ev_names[0],
        event(rng, 5, False, uid=ev_names[0].removesuffix(".ics"), summary="Changed")[1],
        "calendars",
    )
    radicale_pair.source.delete(user, cal + ev_names[1])
    third = _round(mbx, fake, "google.test")
    assert third.outcome == "synced", third
    people = {next(d["value"] for d in p["clientData"] if d["key"] == "uid"): p for p in fake.live()}
    assert len(people) == 9 and "new-uid" in people and gone.removesuffix(".vcf") not in people
    assert people[changed.removesuffix(".vcf")]["biographies"][0]["value"] == "Changed"
    events = fake.events_of("Work")
    assert len(events) == 13 and any(e.get("summary") == "Changed" for e in events.values())
    assert set(_names(fake.live(), "clientData").values()) == {1}


def test_google_people_source_into_radicale(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    user = "psrc@example.com"
    fake = FakeGoogle(max_page=3, throttle=Throttle(left=1, retry_after="0"))
    fake.groups["contactGroups/g1"] = "Friends"
    photo = PNG_HEAD + b"\x01photo"
    rids = [
        fake.add_person(
            {
                "names": [{"displayName": f"P{i} Q", "givenName": f"P{i}", "familyName": "Q"}],
                "emailAddresses": [
                    {"value": f"p{i}@example.com", "type": "work"},
                    {"value": f"p{i}@home.org"},
                ],
                "phoneNumbers": [
                    {"value": f"+49 {i}", "type": "mobile"},
                    {"value": f"+30 {i}", "type": "work"},
                ],
                "memberships": [{"contactGroupMembership": {"contactGroupResourceName": "contactGroups/g1"}}],
            },
            photo=photo if i % 2 else None,
        )
        for i in range(7)
    ]
    mbx = _mailbox(tmp_path, radicale_pair, user, {"type": "google", "url": GOOGLE_ROOT}, {})
    doc = json.loads(mbx.status_file.read_text())
    doc["spec"]["content"] = ["contacts"]
    mbx.status_file.write_text(json.dumps(doc))
    assert _round(mbx, fake, "google.test").outcome == "synced"
    dst = radicale_pair.destination
    cards = dst.members(user, f"/{user}/contacts/")
    assert len(cards) == 7 and mbx.collections()["contacts/contacts"]["syncToken"] == f"s{fake.now}"
    one = cards[rids[1].removeprefix("people/") + ".vcf"].replace("\r\n ", "")
    assert "CATEGORIES:Friends" in one and "PHOTO;ENCODING=b;TYPE=PNG:" in one and one.count("EMAIL") == 2
    assert "TEL;TYPE=CELL:+49 1" in one and f"UID:{rids[1].removeprefix('people/')}" in one

    fake.edit_person(rids[0], names=[{"displayName": "Renamed", "givenName": "Renamed"}])
    fake.remove_person(rids[2])
    new = fake.add_person({"names": [{"displayName": "Newcomer"}]})
    assert _round(mbx, fake, "google.test").outcome == "synced"
    cards = dst.members(user, f"/{user}/contacts/")
    assert len(cards) == 7 and rids[2].removeprefix("people/") + ".vcf" not in cards
    assert "FN:Renamed" in cards[rids[0].removeprefix("people/") + ".vcf"]
    assert new.removeprefix("people/") + ".vcf" in cards

    # The token expired (7 days): 400 FAILED_PRECONDITION / EXPIRED_SYNC_TOKEN -> everything listed again.
    doc = json.loads(mbx.status_file.read_text())
    doc["status"]["collections"][0]["syncToken"] = "s-old"
    mbx.status_file.write_text(json.dumps(doc))
    fake.expired.add("s-old")
    assert _round(mbx, fake, "google.test").outcome == "synced"
    assert len(dst.members(user, f"/{user}/contacts/")) == 7
    assert mbx.collections()["contacts/contacts"]["syncToken"] == f"s{fake.now}"


def _graph_series(fake: FakeGraph) -> str:
    """A weekly series in Europe/Berlin across the March DST change: one moved occurrence, one cancelled."""
    mid = fake.add_event(
        {
            "subject": "Weekly sync",
            "body": {"contentType": "text", "content": "Agenda"},
            "start": {"dateTime": "2026-03-02T09:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-03-02T09:30:00", "timeZone": "Europe/Berlin"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {
                    "type": "numbered",
                    "numberOfOccurrences": 8,
                    "startDate": "2026-03-02",
                    "recurrenceTimeZone": "Europe/Berlin",
                },
            },
            "organizer": {"emailAddress": {"address": "boss@example.com", "name": "Boss"}},
            "attendees": [
                {
                    "emailAddress": {"address": "a@example.com", "name": "A"},
                    "type": "required",
                    "status": {"response": "accepted"},
                },
                {
                    "emailAddress": {"address": "b@example.com", "name": "B"},
                    "type": "optional",
                    "status": {"response": "tentativelyAccepted"},
                },
            ],
            "isReminderOn": True,
            "reminderMinutesBeforeStart": 10,
        }
    )
    occ = {i["originalStart"]: i["id"] for i in fake.instances(mid)}
    fake.exceptions[mid] = {
        occ["2026-03-30T07:00:00Z"]: {
            "subject": "Weekly sync (moved)",
            "start": {"dateTime": "2026-03-31T10:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-03-31T10:30:00", "timeZone": "Europe/Berlin"},
        }
    }
    fake.cancelled[mid] = {occ["2026-04-06T07:00:00Z"]}
    return mid


def test_graph_source_into_radicale(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    user = "gsrc@example.com"
    fake = FakeGraph(throttle=Throttle(left=1, retry_after="0"))
    fake.folders["F1"] = {"displayName": "Family"}
    photo = PNG_HEAD + b"\x00photo"
    cids = [
        fake.add_contact(
            {
                "givenName": f"G{i}",
                "surname": "S",
                "displayName": f"G{i} S",
                "emailAddresses": [{"address": f"g{i}@example.com"}, {"address": f"h{i}@example.org"}],
                "mobilePhone": f"+49 {i}",
                "businessPhones": [f"+30 {i}"],
                "categories": ["Friends"],
            },
            folder="F1" if i % 3 == 0 else "default",
            photo=photo if i % 2 == 0 else None,
        )
        for i in range(8)
    ]
    mid = _graph_series(fake)
    single = fake.add_event(
        {
            "subject": "Offsite",
            "isAllDay": True,
            "start": {"dateTime": "2026-05-04T00:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-05-05T00:00:00", "timeZone": "UTC"},
        }
    )
    mbx = _mailbox(tmp_path, radicale_pair, user, {"type": "microsoft", "url": GRAPH_ROOT}, {})
    first = _round(mbx, fake, "graph.test")
    assert first.outcome == "synced", (first, mbx.status())
    cols = mbx.collections()
    assert set(cols) == {"contacts/contacts", "contacts/F1", "calendars/cal1"}, cols
    assert all(
        c["syncToken"].startswith(f"{GRAPH_ROOT}/") and "$deltatoken=" in c["syncToken"]
        for c in cols.values()
    )
    dst = radicale_pair.destination
    default = dst.members(user, f"/{user}/contacts/")
    family = dst.members(user, f"/{user}/F1/")
    assert len(default) == 5 and len(family) == 3
    card = next(d for d in default.values() if "G2 S" in d)
    assert "PHOTO;ENCODING=b;TYPE=PNG:" + base64.b64encode(photo).decode()[:20] in card.replace("\r\n ", "")
    assert "CATEGORIES:Friends" in card and card.count("EMAIL") == 2 and card.count("TEL") == 2
    events = dst.members(user, f"/{user}/cal1/")
    assert len(events) == 2
    ical = icalendar.Calendar.from_ical(next(d for d in events.values() if "Weekly sync" in d))
    master = next(e for e in ical.walk("VEVENT") if "RECURRENCE-ID" not in e)
    moved = next(e for e in ical.walk("VEVENT") if "RECURRENCE-ID" in e)
    assert str(master["RRULE"].to_ical().decode()) == "FREQ=WEEKLY;COUNT=8;BYDAY=MO"
    assert master["DTSTART"].dt.tzinfo.key == "Europe/Berlin" and master["DTSTART"].dt.hour == 9
    assert [d.dt.isoformat() for d in master["EXDATE"].dts] == [
        "2026-04-06T09:00:00+02:00"
    ]  # after DST: 09:00 local
    assert (
        moved["RECURRENCE-ID"].dt.isoformat() == "2026-03-30T09:00:00+02:00"
        and moved["DTSTART"].dt.hour == 10
    )
    assert [a.params["PARTSTAT"] for a in master["ATTENDEE"]] == ["ACCEPTED", "TENTATIVE"]
    assert str(master["ORGANIZER"]) == "mailto:boss@example.com" and len(master.walk("VALARM")) == 1

    # A no-op round: one delta request per collection (plus the two listings of the homes).
    before = len(fake.requests)
    assert _round(mbx, fake, "graph.test").outcome == "synced"
    assert len(fake.requests) - before == 2 + 3

    # Changes: a contact deleted, one added, the series' other occurrence cancelled, the single deleted.
    fake.remove_contact(cids[1])
    fake.add_contact({"givenName": "New", "displayName": "New One"})
    fake.cancelled[mid].add(
        next(i["id"] for i in fake.instances(mid) if i["originalStart"] == "2026-04-13T07:00:00Z")
    )
    fake._changed("cal1", mid)
    fake.remove_event(single)
    assert _round(mbx, fake, "graph.test").outcome == "synced"
    default = dst.members(user, f"/{user}/contacts/")
    assert len(default) == 5 and any("New One" in d for d in default.values())
    events = dst.members(user, f"/{user}/cal1/")
    assert len(events) == 1 and next(iter(events.values())).count("20260413T090000") == 1

    # An expired delta link (410): everything is listed again; nothing is doubled.
    doc = json.loads(mbx.status_file.read_text())
    for c in doc["status"]["collections"]:
        c["syncToken"] = "old"  # a bare $deltatoken (what a link over 2048 characters is kept as)
    mbx.status_file.write_text(json.dumps(doc))
    fake.expired.add("old")
    assert _round(mbx, fake, "graph.test").outcome == "synced"
    assert len(dst.members(user, f"/{user}/contacts/")) == 5 and len(dst.members(user, f"/{user}/cal1/")) == 1


def test_radicale_into_graph(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    user = "gmdest@example.com"
    radicale_pair.source.add_user(user)
    book = radicale_pair.source.seed(user, "book", "contacts", address_book(6, seed=8, groups=1), "Contacts")
    cal = radicale_pair.source.seed(
        user, "work", "calendars", calendar(10, seed=9, recurring_share=0.6), "Work"
    )
    mbx = _mailbox(tmp_path, radicale_pair, user, {}, {"type": "microsoft", "url": GRAPH_ROOT})
    fake = FakeGraph(throttle=Throttle(left=3, retry_after="0"))
    fake.drop_answer_at = 9  # an event create stored whose answer is lost
    assert _round(mbx, fake, "graph.test").outcome == "transient"
    result = _round(mbx, fake, "graph.test")
    assert result.outcome == "synced", (result, mbx.status())
    contacts = fake.in_folder("default")  # the source book "Contacts" is Graph's default folder
    assert len(contacts) == 6 and set(_names(contacts, "singleValueExtendedProperties").values()) == {1}
    assert all(cid in fake.photos for cid in (c["id"] for c in contacts))
    [work] = [cid for cid, c in fake.calendars.items() if c["name"] == "Work"]
    events = fake.in_calendar(work)
    src_events = radicale_pair.source.members(user, cal)
    assert len(events) == 10 and set(_names(events, "singleValueExtendedProperties").values()) == {1}
    for ev in (e for e in events if e.get("recurrence")):
        assert len(fake.cancelled.get(ev["id"], ())) == 2 and len(fake.exceptions.get(ev["id"], {})) == 1
        moved = next(iter(fake.exceptions[ev["id"]].values()))
        assert moved["subject"].endswith("(moved)") and moved["start"]["timeZone"] == "Europe/Berlin"
    errors = mbx.status()["itemErrors"]
    reasons = Counter(e["reason"] for e in errors)
    assert reasons["ComponentNotSupported"] == 1 and "group card" in str(errors)  # reported, not dropped
    assert all("ATTACH by URI" in e["message"] for e in errors if e["reason"] == "PartiallyCopied"), errors
    assert mbx.collections()["contacts/book"]["unsupported"] == 1
    # Deleted on the source: deleted on Graph (found by the name kept in the extended property).
    gone = sorted(src_events)[0]
    radicale_pair.source.delete(user, cal + gone)
    assert _round(mbx, fake, "graph.test").outcome == "synced"
    assert len(fake.in_calendar(work)) == 9
    assert gone not in _names(fake.in_calendar(work), "singleValueExtendedProperties")
    assert book


# ------------------------------------------------------------------------------------------------ verify


def _cli_verify(
    mbx: GroupwareMailbox, fake: FakeGoogle | FakeGraph, host: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    """`mailferry verify --json` of this mailbox, in-process (so the cloud API is the contract fake)."""
    argv = ["verify", "--mailboxsync", mbx.name, "--json", "--status-dir", str(mbx.status_dir)]
    with _routes(fake, host):
        code = cli.main([*argv, "--secrets-dir", str(mbx.secrets_dir)])
    captured = capsys.readouterr()
    assert "GroupwareTypeNotSupported" not in captured.out + captured.err
    return code, json.loads(captured.out)


def _verify(mbx: GroupwareMailbox, fake: FakeGoogle | FakeGraph, host: str) -> list[CollectionReport]:
    spec = MailboxSyncSpec.model_validate(json.loads(mbx.status_file.read_text())["spec"])

    async def go() -> list[CollectionReport]:
        with _routes(fake, host):
            return await verify_mailboxsync_collections(spec, DirSecrets(mbx.secrets_dir))

    return asyncio.run(go())


def _uid(name: str) -> str:
    return name.rsplit(".", 1)[0]


def test_verify_radicale_into_google(
    radicale_pair: RadicalePair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "vgoogle@example.com"
    radicale_pair.source.add_user(user)
    book = radicale_pair.source.seed(
        user, "book", "contacts", address_book(6, seed=12, groups=2), "Address book"
    )
    radicale_pair.source.seed(user, "work", "calendars", calendar(8, seed=13, recurring_share=0.5), "Work")
    mbx = _mailbox(tmp_path, radicale_pair, user, {}, {"type": "google", "url": GOOGLE_ROOT})
    fake = FakeGoogle()
    assert _round(mbx, fake, "google.test").outcome == "synced"

    code, report = _cli_verify(mbx, fake, "google.test", capsys)
    assert code == 0 and report["differences"] == 0, report
    contacts, events = report["collections"]
    assert (contacts["sourceCount"], contacts["destinationCount"]) == (8, 6)
    groups = {_uid(n) for n, d in radicale_pair.source.members(user, book).items() if "KIND:group" in d}
    assert {p["uid"] for p in contacts["partial"]} == groups and contacts["partialCount"] == 2
    assert all("group card" in p["reason"] for p in contacts["partial"])
    assert (events["sourceCount"], events["destinationCount"], events["partial"]) == (8, 8, [])

    # Behind mailferry's back: an event renamed, a contact's email dropped, one deleted, one doubled.
    uids = {
        next(d["value"] for d in p["clientData"] if d["key"] == "uid"): rid for rid, p in fake.people.items()
    }
    first, second, third = (uids[u] for u in sorted(uids)[:3])
    fake.people[first]["emailAddresses"] = fake.people[first]["emailAddresses"][:1]
    fake.remove_person(second)
    copy = {k: v for k, v in fake.people[third].items() if k not in ("resourceName", "etag", "metadata")}
    fake.add_person(copy, photo=fake.photos[third])
    renamed = sorted(fake.events_of("Work").values(), key=lambda e: e["iCalUID"])[0]
    renamed["summary"] = "Renamed behind mailferry's back"

    code, report = _cli_verify(mbx, fake, "google.test", capsys)
    contacts, events = report["collections"]
    assert code == 1 and report["differences"] == 4, report
    assert contacts["changed"] == [sorted(uids)[0]] and contacts["changedFields"] == {
        sorted(uids)[0]: ["emails"]
    }
    assert contacts["missing"] == [sorted(uids)[1]] and contacts["duplicated"] == [sorted(uids)[2]]
    assert contacts["extra"] == [] and contacts["partialCount"] == 2
    assert events["changed"] == [renamed["iCalUID"]] and events["changedFields"] == {
        renamed["iCalUID"]: ["master/summary"]
    }
    assert events["missing"] == events["duplicated"] == events["extra"] == []


def test_verify_radicale_into_graph(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    user = "vgraph@example.com"
    radicale_pair.source.add_user(user)
    book = radicale_pair.source.seed(user, "book", "contacts", address_book(5, seed=14, groups=1), "Contacts")
    cal = radicale_pair.source.seed(
        user, "work", "calendars", calendar(8, seed=15, recurring_share=0.5), "Work"
    )
    mbx = _mailbox(tmp_path, radicale_pair, user, {}, {"type": "microsoft", "url": GRAPH_ROOT})
    fake = FakeGraph()
    assert _round(mbx, fake, "graph.test").outcome == "synced"

    contacts, events = _verify(mbx, fake, "graph.test")
    assert [contacts.differences, events.differences] == [0, 0], (contacts.to_dict(), events.to_dict())
    assert (contacts.source_count, contacts.dest_count, events.source_count, events.dest_count) == (
        6,
        5,
        8,
        8,
    )
    [(group_uid, why)] = contacts.partial.items()  # Graph has no groups: the group card, reported apart
    assert (
        "KIND:group" in radicale_pair.source.members(user, book)[group_uid + ".vcf"] and "group card" in why
    )
    src_events = radicale_pair.source.members(user, cal)
    assert set(events.partial) == {_uid(n) for n in src_events}  # ATTACH by URI: compared on what is held
    assert all("ATTACH by URI" in r for r in events.partial.values())

    by_uid = {
        next(p["value"] for p in c["singleValueExtendedProperties"] if "mailferryUid" in p["id"]): c
        for c in list(fake.contacts.values()) + list(fake.events.values())
    }
    card_uids = sorted(u for u in by_uid if u + ".vcf" in radicale_pair.source.members(user, book))
    event_uids = sorted(u for u in by_uid if u + ".ics" in src_events)
    by_uid[card_uids[0]]["emailAddresses"] = by_uid[card_uids[0]]["emailAddresses"][1:]
    fake.remove_contact(by_uid[card_uids[1]]["id"])
    doubled = by_uid[card_uids[2]]
    fake.add_contact(
        {k: v for k, v in doubled.items() if k not in ("id", "_folder", "changeKey")},
        photo=fake.photos[doubled["id"]],
    )
    by_uid[event_uids[0]]["subject"] = "Renamed behind mailferry's back"
    fake.remove_event(by_uid[event_uids[1]]["id"])

    contacts, events = _verify(mbx, fake, "graph.test")
    assert (contacts.changed, contacts.changed_fields) == ([card_uids[0]], {card_uids[0]: ["emails"]})
    assert (contacts.missing, contacts.duplicated, contacts.extra) == ([card_uids[1]], [card_uids[2]], [])
    assert (events.changed, events.changed_fields) == ([event_uids[0]], {event_uids[0]: ["master/summary"]})
    assert (events.missing, events.duplicated, events.extra) == ([event_uids[1]], [], [])
    assert contacts.differences + events.differences == 5 and len(events.partial) == 8


def test_verify_google_people_into_radicale(radicale_pair: RadicalePair, tmp_path: Path) -> None:
    user = "vpeople@example.com"
    fake = FakeGoogle()
    fake.groups["contactGroups/g1"] = "Friends"
    for i in range(5):
        fake.add_person(
            {
                "names": [{"displayName": f"P{i} Q", "givenName": f"P{i}", "familyName": "Q"}],
                "emailAddresses": [{"value": f"p{i}@example.com", "type": "work"}],
                "phoneNumbers": [{"value": f"+49 {i}", "type": "mobile"}],
                "birthdays": [{"date": {"month": 4, "day": 1 + i}}],
                "memberships": [{"contactGroupMembership": {"contactGroupResourceName": "contactGroups/g1"}}],
            },
            photo=PNG_HEAD + b"\x02" if i % 2 else None,
        )
    mbx = _mailbox(tmp_path, radicale_pair, user, {"type": "google", "url": GOOGLE_ROOT}, {})
    doc = json.loads(mbx.status_file.read_text())
    doc["spec"]["content"] = ["contacts"]
    mbx.status_file.write_text(json.dumps(doc))
    assert _round(mbx, fake, "google.test").outcome == "synced"
    [clean] = _verify(mbx, fake, "google.test")
    assert (clean.differences, clean.source_count, clean.dest_count, clean.partial) == (0, 5, 5, {})

    dst, path = radicale_pair.destination, f"/{user}/contacts/"
    cards = dst.members(user, path)
    first, second = sorted(cards)[:2]
    dst.put(user, path + first, cards[first].replace("FN:", "FN:Not "), "contacts")
    dst.delete(user, path + second)
    dst.put(user, path + "extra.vcf", contact(random.Random(1), 50, uid="only-here")[1], "contacts")
    [report] = _verify(mbx, fake, "google.test")
    assert (report.changed, report.changed_fields) == ([_uid(first)], {_uid(first): ["fn"]})
    assert (report.missing, report.extra, report.duplicated) == ([_uid(second)], ["only-here"], [])
