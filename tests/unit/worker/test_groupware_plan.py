"""The pure parts of contacts/calendars sync: the round planner, multistatus parsing, item facts."""

from __future__ import annotations

import asyncio
import random

import pytest

from fixtures.groupware_data import contact, event
from mailferry_api.groupware import CollectionCheckpoint
from mailferry_worker.groupware import items, plan, protocol
from mailferry_worker.groupware.collection import CollectionSync
from mailferry_worker.groupware.dav import Collection, DavError


def ckpt(**kw: object) -> CollectionCheckpoint:
    return CollectionCheckpoint(name="calendars/work", kind="calendars", source="s", destination="d", **kw)


def test_first_copy_copies_every_member_in_name_order() -> None:
    p = plan.plan_first_copy(plan.Changes({"b.ics": "1", "a.ics": "2"}, set(), "T0"), ckpt(), None)
    assert p.copy == ["a.ics", "b.ics"] and p.delete == [] and p.commit_token == "T0" and p.first_copy


def test_resumed_first_copy_copies_after_the_resume_point_and_changes_before_it() -> None:
    members = plan.Changes({n: "e" for n in ("a", "b", "c", "d")}, set(), "T1")
    since = plan.Changes({"a": "e2", "d": "e"}, {"x", "c2"}, "T2")  # a changed, x and c2 deleted meanwhile
    p = plan.plan_first_copy(members, ckpt(pending_token="T0", resume_after="b"), since)
    assert p.copy == ["a", "c", "d"]  # b is on the destination unchanged
    assert p.delete == ["c2", "x"]  # removed while dead: c2 may have been written by the killed chunk
    assert p.commit_token == "T2"


def test_delta_deletes_only_what_is_gone_and_respects_the_cap() -> None:
    p = plan.plan_delta(plan.Changes({"a": "1"}, {"a", "b", "c"}, "T2"), max_deletes=1)
    assert p.copy == ["a"] and p.delete == ["b", "c"] and p.over_delete_cap
    assert not plan.plan_delta(plan.Changes({}, {"b"}, "T2"), max_deletes=1).over_delete_cap


def test_token_unchanged_needs_a_finished_token_collection() -> None:
    done = ckpt(sync_token="T")
    assert plan.token_unchanged(done, "T", force_etag=False)
    assert not plan.token_unchanged(done, "T2", force_etag=False)
    assert not plan.token_unchanged(done, "T", force_etag=True)
    assert not plan.token_unchanged(ckpt(sync_token="T", resume_after="a"), "T", force_etag=False)


def test_etag_digest_and_content_plan() -> None:
    assert plan.etag_digest({"a": "1", "b": "2"}) == plan.etag_digest({"b": "2", "a": "1"})
    assert plan.etag_digest({"a": "1"}) != plan.etag_digest({"a": "2"})
    assert plan.plan_by_content({"a": "x", "b": "y", "c": "z"}, {"a": "x", "b": "other"}) == ["b", "c"]


def test_destination_name_keeps_plain_names_and_hashes_odd_ones() -> None:
    assert plan.destination_name("abc-1.ics", ".ics") == "abc-1.ics"
    odd = plan.destination_name("a/b c?.ics", ".ics")
    assert odd.endswith(".ics") and "/" not in odd and odd == plan.destination_name("a/b c?.ics", ".ics")


SYNC_ANSWER = b"""<?xml version="1.0"?>
<multistatus xmlns="DAV:">
  <response><href>/u/cal/a.ics</href><propstat><prop><getetag>"1"</getetag></prop>
    <status>HTTP/1.1 200 OK</status></propstat></response>
  <response><href>/u/cal/gone.ics</href><status>HTTP/1.1 404 Not Found</status></response>
  <sync-token>http://radicale.org/ns/sync/abc</sync-token>
</multistatus>"""


def test_parse_sync_collection_answer() -> None:
    ms = protocol.parse_multistatus(SYNC_ANSWER)
    assert ms.sync_token == "http://radicale.org/ns/sync/abc"
    assert [(r.href, r.status) for r in ms.responses] == [("/u/cal/a.ics", None), ("/u/cal/gone.ics", 404)]
    assert ms.responses[0].text(protocol.tag("d:getetag")) == '"1"'


@pytest.mark.parametrize(
    "body", [b"not xml", b"<html/>", b'<multistatus xmlns="DAV:"><response/></multistatus>']
)
def test_bad_multistatus_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(protocol.DavProtocolError):
        protocol.parse_multistatus(body)


def test_sync_collection_body_escapes_the_token() -> None:
    assert b"<d:sync-token>a&amp;b</d:sync-token>" in protocol.sync_collection("a&b")


def test_item_facts_recurring_event_and_fingerprint_ignores_prodid_and_folding() -> None:
    _, data = event(random.Random(1), 1, recurring=True, uid="u-1")
    f = items.facts("calendars", data)
    assert f.uid == "u-1" and f.recurrence_overrides == 1 and f.components == {"VEVENT"}
    refolded = data.replace("PRODID:-//mailferry tests//groupware data//EN", "PRODID:-//other//EN")
    assert items.facts("calendars", refolded).fingerprint == f.fingerprint
    assert items.facts("calendars", data.replace("Meeting 1", "Meeting 2")).fingerprint != f.fingerprint


def test_item_facts_contact_with_photo() -> None:
    _, data = contact(random.Random(1), 3, uid="c-3")
    f = items.facts("contacts", data)
    assert f.uid == "c-3" and f.has_photo
    assert items.facts("contacts", data.replace("Given3", "Other")).fingerprint != f.fingerprint


@pytest.mark.parametrize("kind", ["calendars", "contacts"])
def test_unparsable_items_are_bad_items(kind: str) -> None:
    with pytest.raises(items.BadItem):
        items.facts(kind, "BEGIN:VCALENDAR\r\nthis is not\r\n" if kind == "calendars" else "garbage")


def test_unsupported_reasons() -> None:
    f = items.ItemFacts("u", "fp", {"VTODO"})
    assert items.unsupported("calendars", f, 10, {"VEVENT"}, 100) == "ComponentNotSupported"
    assert items.unsupported("calendars", f, 1000, set(), 100) == "ItemTooLarge"
    assert (
        items.unsupported("calendars", items.ItemFacts(None, "fp", {"VEVENT"}), 1, set(), 100) == "MissingUid"
    )
    assert items.unsupported("calendars", f, 10, {"VTODO", "VEVENT"}, 100) is None


def test_collection_totals_per_mailbox_and_per_migration() -> None:
    from mailferry_api.groupware import collection_totals
    from mailferry_operator.mailmigration.aggregate import collection_totals as migration_totals
    from mailferry_operator.mailmigration.views import mailbox_view

    mailbox = collection_totals(
        [
            ckpt(items=10, copied=12, pending=1),
            CollectionCheckpoint(
                name="contacts/a", kind="contacts", source="s", destination="d", items=3, failed=1
            ),
        ]
    )
    assert (mailbox.calendars.collections, mailbox.calendars.items, mailbox.calendars.copied) == (1, 10, 12)
    assert (mailbox.contacts.items, mailbox.contacts.failed) == (3, 1)
    body = {"metadata": {"name": "m1"}, "status": {"collectionTotals": mailbox.to_api()}}
    views = [
        mailbox_view(body),
        mailbox_view({**body, "metadata": {"name": "m2"}}),
        mailbox_view({"metadata": {"name": "m3"}}),
    ]
    total = migration_totals(views)
    assert total is not None and total.calendars.items == 20 and total.contacts.failed == 2
    assert migration_totals(views[2:]) is None  # a migration without contacts/calendars shows none


@pytest.mark.parametrize("seed", range(40))
def test_item_shape_agrees_with_the_full_parse_on_generated_items(seed: int) -> None:
    """The copy path's cheap scan sees the UID and components the full parse sees."""
    rng = random.Random(seed)
    for kind, (_, data) in (
        ("calendars", event(rng, seed, recurring=seed % 2 == 0, uid=f"ev-{seed}")),
        ("contacts", contact(rng, seed, uid=f"urn:uuid:c-{seed}")),
    ):
        full, quick = items.facts(kind, data), items.shape(kind, data)  # type: ignore[arg-type]
        assert (quick.uid, quick.components) == (full.uid, full.components)


def test_item_shape_reads_folded_escaped_and_quoted_uids_like_the_full_parse() -> None:
    data = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        "BEGIN:VTIMEZONE\r\nTZID:Z\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        "TZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
        'BEGIN:VTODO\r\nUID;X-NOTE="a:b":long-uid-\r\n with\\,comma\r\nDTSTAMP:20260101T000000Z\r\n'
        "SUMMARY:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
    quick, full = items.shape("calendars", data), items.facts("calendars", data)
    assert quick.uid == full.uid == "long-uid-with,comma"
    assert quick.components == full.components == {"VTODO"}


@pytest.mark.parametrize(
    "kind,data,why",
    [
        ("calendars", "BEGIN:VCALENDAR\r\nthis is not\r\n", "without a value"),
        ("calendars", "BEGIN:VCALENDAR\r\nX-A:b\r\n", "no END"),
        ("contacts", "FN:garbage", "before BEGIN"),
        ("contacts", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "starts with"),
        ("calendars", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", "does not close"),
        ("contacts", "BEGIN:VCARD\r\nUID:a\r\nEND:VCARD\r\nBEGIN:VCARD\r\nEND:VCARD\r\n", "after END"),
        (
            "calendars",
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:b\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n",
            "2 UIDs",
        ),
    ],
)
def test_item_shape_refuses_what_is_not_one_item(kind: str, data: str, why: str) -> None:
    with pytest.raises(items.BadItem, match=why):
        items.shape(kind, data)  # type: ignore[arg-type]


class _FailingDestination:
    """A destination that answers every PUT with a server error (some servers 5xx what they cannot read)."""

    def __init__(self) -> None:
        self.puts = 0

    def member_url(self, collection_url: str, name: str) -> str:
        return collection_url + name

    async def put(self, kind: str, url: str, data: str) -> bool:
        self.puts += 1
        raise DavError("PUT: HTTP 500", "DavUnavailable", transient=True)


def _sync_with(dst: _FailingDestination, kind: str = "calendars") -> CollectionSync:
    from mailferry_api.groupware import Groupware

    async def save() -> None:
        return None

    coll = Collection(kind, "http://d/c/", "C", None, True, {"VEVENT"})  # type: ignore[arg-type]
    side = {"type": "dav", "url": "http://d/"}
    options = Groupware.model_validate({"source": side, "destination": side})
    checkpoint = CollectionCheckpoint(name=f"{kind}/c", kind=kind, source="s", destination="d")
    return CollectionSync(None, dst, coll, coll, checkpoint, options, save)  # type: ignore[arg-type]


def test_a_server_error_on_a_broken_item_is_that_item_s_error_not_a_retry() -> None:
    """The copy path only scans (items.shape); a 5xx makes it parse in full, and a parameter with an
    unterminated quote is the item's fault: reported per item, the round goes on."""
    dst = _FailingDestination()
    sync = _sync_with(dst, "contacts")
    broken = 'BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c1\r\nFN:x\r\nEMAIL;TYPE="a:b\r\nEND:VCARD\r\n'
    asyncio.run(sync._put("c1.vcf", broken))
    assert dst.puts == 1 and [e.reason for e in sync.errors] == ["BadItem"] and sync.ckpt.failed == 1


def test_a_server_error_on_a_sound_item_is_retried() -> None:
    _, data = event(random.Random(2), 2, recurring=False, uid="ok-2")
    with pytest.raises(DavError) as err:
        asyncio.run(_sync_with(_FailingDestination())._put("ok-2.ics", data))
    assert err.value.transient
