"""Bounces and replies of notices, parsed and matched without servers (inbound.py), the ledger's `acked`
mark, and what decide makes of them (per-cohort counts and percentages, the approval clock)."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fixtures.dsn import dsn, reply
from mailferry_api.noticeplan import Draft, NoticePlanStatus
from mailferry_operator.metrics import REGISTRY
from mailferry_operator.notices import inbound, ledger, metrics
from mailferry_operator.notices.decide import Snapshot, decide
from mailferry_operator.notices.message import build, envelope_sender, message_id, reply_to
from mailferry_operator.notices.metrics import waited

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_notices_decide import NOW, snap, spec

DOMAIN = "acme.test"
SENDER = "notices-replies@acme.test"


def notice_to(address: str, notice: str = "announce") -> bytes:
    return build(
        from_header="IT Desk <it@acme.test>",
        reply_to=SENDER,
        to=address,
        subject="Your mailbox moves",
        text="Hello\n",
        msgid=message_id("uid-1", notice, address, DOMAIN),
        date=NOW,
        tag=f"{notice}/pilot/0123456789abcdef",
    )


def book_of(*addresses: str) -> ledger.Book:
    return {a: ledger.Entry("sent", 1000.0, "0123456789abcdef") for a in addresses}


def index_of(books: dict[tuple[str, str], ledger.Book]) -> dict[str, inbound.Recipient]:
    return inbound.index(books, lambda n, a: message_id("uid-1", n, a, DOMAIN))


BOOKS = {
    ("announce", "pilot"): book_of("a@acme.test", "b@acme.test"),
    ("announce", "sales"): book_of("c@x.test"),
}
INDEX = index_of(BOOKS)


@pytest.mark.parametrize("headers_only", [True, False])
def test_a_postfix_dsn_is_a_bounce_of_the_notice_it_returns(headers_only: bool) -> None:
    raw = dsn(notice_to("b@acme.test"), "b@acme.test", SENDER, headers_only=headers_only)
    item = inbound.parse(raw)
    assert item.kind == "dsn" and item.failed
    outcome, who = inbound.match(item, INDEX)
    assert outcome == "bounce" and who == inbound.Recipient("announce", "pilot", "b@acme.test")


def test_returned_headers_under_the_other_content_types_real_mtas_use() -> None:
    raw = dsn(notice_to("a@acme.test"), "a@acme.test", SENDER, returned_type="message/rfc822-headers")
    assert inbound.match(inbound.parse(raw), INDEX)[0] == "bounce"


def test_a_delay_notification_is_not_a_bounce() -> None:
    raw = dsn(notice_to("a@acme.test"), "a@acme.test", SENDER, action="delayed", status="4.4.1")
    item = inbound.parse(raw)
    assert item.kind == "dsn" and not item.failed
    assert inbound.match(item, INDEX) == ("unmatched", None)


def test_a_dsn_about_someone_elses_message_is_unmatched() -> None:
    foreign = notice_to("a@acme.test").replace(b"<notice.announce.", b"<other.")
    assert inbound.match(inbound.parse(dsn(foreign, "a@acme.test", SENDER)), INDEX) == ("unmatched", None)


def test_a_reply_from_the_recipient_is_an_acknowledgement_case_insensitively() -> None:
    raw = reply(notice_to("c@x.test"), "Carla <C@X.TEST>", SENDER)
    assert inbound.match(inbound.parse(raw), INDEX) == (
        "acknowledgement",
        inbound.Recipient("announce", "sales", "c@x.test"),
    )


def test_a_reply_from_another_address_is_not_the_recipients_acknowledgement() -> None:
    raw = reply(notice_to("c@x.test"), "forwarded-to@elsewhere.test", SENDER)
    assert inbound.match(inbound.parse(raw), INDEX) == ("unmatched", None)


def test_an_out_of_office_answer_is_an_auto_reply_not_an_acknowledgement() -> None:
    raw = reply(notice_to("c@x.test"), "c@x.test", SENDER, auto=True)
    assert inbound.match(inbound.parse(raw), INDEX)[0] == "auto-reply"
    null_sender = b"Return-Path: <>\r\n" + reply(notice_to("c@x.test"), "c@x.test", SENDER)
    assert inbound.match(inbound.parse(null_sender), INDEX)[0] == "auto-reply"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\x80\x81",
        b"Subject: hello\r\n\r\nno references at all\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        # a report nested 5,000 deep: the walk stops at MAX_PARTS, nothing is raised
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 5000,
        # a delivery-status part with an undecodable body and a Message-ID only in a broken header
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=q\r\n\r\n--q\r\n"
        b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%\r\n--q--\r\n",
    ],
)
def test_hostile_or_garbage_messages_are_unmatched_and_never_raise(raw: bytes) -> None:
    assert inbound.match(inbound.parse(raw), INDEX) == ("unmatched", None)


def test_recording_is_idempotent_so_nobody_is_counted_twice() -> None:
    book = book_of("a@acme.test", "b@acme.test")
    who_a = inbound.Recipient("announce", "pilot", "a@acme.test")
    who_b = inbound.Recipient("announce", "pilot", "b@acme.test")
    assert inbound.record(book, "bounce", who_b, 2000.0)
    assert not inbound.record(book, "bounce", who_b, 2001.0)  # the same DSN read again after a crash
    assert inbound.record(book, "acknowledgement", who_a, 2000.0)
    assert not inbound.record(book, "acknowledgement", who_a, 2002.0)  # a second reply
    assert not inbound.record(book, "bounce", who_a, 2003.0)  # they replied: they got it
    assert not inbound.record(book, "auto-reply", who_a, 2004.0)
    assert book["b@acme.test"].state == "bounced" and book["a@acme.test"] == ledger.Entry(
        "sent", 1000.0, "0123456789abcdef", 2000.0
    )
    # a reply settles a send in doubt as delivered
    doubt = {"d@acme.test": ledger.Entry("intent", 1000.0, "h")}
    assert inbound.record(doubt, "acknowledgement", inbound.Recipient("n", "c", "d@acme.test"), 5.0)
    assert doubt["d@acme.test"].state == "sent"
    # nothing to count against a recipient the ledger does not hold
    assert not inbound.record({}, "bounce", who_a, 1.0)


def test_the_ledger_keeps_the_acknowledgement_and_reads_old_lines() -> None:
    book = {"a@x.test": ledger.Entry("sent", 10.0, "h1", 20.0), "b@x.test": ledger.Entry("bounced", 11.0, "")}
    text = ledger.render(book)
    assert "a@x.test sent 10 h1 acked=20\n" in text
    assert ledger.parse(text) == book
    assert ledger.parse("c@x.test sent 12 h2\nd@x.test intent 13\n") == {
        "c@x.test": ledger.Entry("sent", 12.0, "h2"),
        "d@x.test": ledger.Entry("intent", 13.0, ""),
    }


def test_replies_set_the_return_path_and_reply_to() -> None:
    replies = {
        "address": SENDER,
        "username": SENDER,
        "imap": {"host": "imap.acme.test", "auth": {"secretRef": {"name": "r"}}},
    }
    with_replies = spec(replies=replies)
    assert envelope_sender(with_replies) == SENDER and reply_to(with_replies) == SENDER
    assert envelope_sender(spec()) == "it@acme.test" and reply_to(spec()) is None
    own = spec(replies=replies, replyTo="desk@acme.test")
    assert reply_to(own) == "desk@acme.test" and envelope_sender(own) == SENDER
    # the Reply-To is part of what a recipient sees: the draft's hash changes with it
    assert by_cohort(snap(spec=with_replies))["pilot"].hash != by_cohort(snap())["pilot"].hash


def test_decide_counts_bounced_and_acknowledged_per_cohort_with_percentages() -> None:
    base = snap()
    approved = spec(approvedHashes=[by_cohort(base)["pilot"].hash])
    book = {
        "a@acme.test": ledger.Entry("sent", 1.0, "h", acked=2.0),
        "b@acme.test": ledger.Entry("bounced", 1.0, "h"),
    }
    status = decide_status(replace(base, spec=approved, ledgers={("announce", "pilot"): book}))
    d = {x.cohort: x for x in status.drafts}["pilot"]
    assert (d.state, d.sent, d.bounced, d.acknowledged) == ("Sent", 1, 1, 1)
    cohort = {c.cohort: c for c in status.cohorts}["pilot"]
    assert (cohort.sent, cohort.bounced, cohort.acknowledged) == (1, 1, 1)
    assert (cohort.bounced_percent, cohort.acknowledged_percent) == ("50.0%", "100.0%")
    assert {c.cohort: c for c in status.cohorts}["sales"].bounced_percent == ""  # nothing sent yet
    assert (status.sent, status.bounced, status.acknowledged) == (1, 1, 1)


def decide_status(s: Snapshot) -> NoticePlanStatus:
    return decide(s).status


def by_cohort(s: Snapshot) -> dict[str, Draft]:
    return {d.cohort: d for d in decide_status(s).drafts}


def test_the_approval_clock_starts_with_the_hash_and_counts_once_due() -> None:
    first = decide_status(snap())
    pilot = {d.cohort: d for d in first.drafts}["pilot"]
    assert pilot.state == "AwaitingApproval" and pilot.awaiting_since == NOW
    later = replace(snap(), now=NOW + timedelta(hours=5), previous=first)
    again = {d.cohort: d for d in decide_status(later).drafts}["pilot"]
    assert again.awaiting_since == NOW  # the same hash keeps its clock
    edited = replace(later, templates={**later.templates, "announce.text": "changed {{ cohort }}"})
    assert {d.cohort: d for d in decide_status(edited).drafts}["pilot"].awaiting_since == NOW + timedelta(
        hours=5
    )
    # the metric: from max(due, since); 0 before it is due and once approved
    due = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    draft = Draft(
        notice="n", cohort="c", state="AwaitingApproval", due_at=due, awaiting_since=due - timedelta(days=3)
    )
    assert waited(draft, due + timedelta(hours=4)) == 4 * 3600
    assert waited(draft, due - timedelta(hours=1)) == 0
    assert waited(draft.model_copy(update={"state": "Scheduled"}), due + timedelta(hours=4)) == 0


def test_metrics_follow_status_and_drop_a_removed_notices_series() -> None:
    def value(notice: str, state: str) -> float | None:
        labels = {"namespace": "ns-m", "noticeplan": "np", "notice": notice, "cohort": "c", "state": state}
        return REGISTRY.get_sample_value("mailferry_notice_recipients", labels)

    sent = Draft(notice="a", cohort="c", state="Sent", recipients=4, sent=3, bounced=1, acknowledged=2)
    other = Draft(notice="b", cohort="c", state="AwaitingApproval", recipients=4)
    metrics.update("ns-m", "np", NoticePlanStatus(drafts=[sent, other]))
    assert (value("a", "acknowledged"), value("a", "bounced"), value("b", "recipients")) == (2.0, 1.0, 4.0)
    metrics.update("ns-m", "np", NoticePlanStatus(drafts=[sent]))  # notice b left the plan
    assert value("b", "recipients") is None and value("a", "sent") == 3.0
