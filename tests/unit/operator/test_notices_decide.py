"""NoticePlan planning without servers: templates, header injection, drafts and hashes, due times, sends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mailferry_api.noticeplan import NoticePlanSpec, NoticePlanStatus
from mailferry_operator.mailmigration.inventory import parse_text
from mailferry_operator.notices import ledger
from mailferry_operator.notices.decide import Member, Snapshot, decide
from mailferry_operator.notices.message import build, message_id
from mailferry_operator.notices.templates import HeaderInjection, TemplateRefused, check_header, render

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TEMPLATES = {
    "announce.subject": "Your mailbox moves on {{ window }}",
    "announce.text": "Hello {{ cohort }},\nnew server {{ new_imap_host }} port {{ new_imap_port }}.\n",
}


def spec(**over: object) -> NoticePlanSpec:
    data: dict[str, object] = {
        "migrationRef": {"name": "acme"},
        "from": "IT Desk <it@acme.test>",
        "templatesRef": {"name": "tpl"},
        "smtp": {"host": "smtp.acme.test", "secretRef": {"name": "smtp"}},
        "cohorts": [{"name": "pilot", "window": "2026-12-09T18:00:00Z"}, {"name": "sales"}],
        "notices": [
            {"name": "announce", "template": "announce", "at": {"anchor": "window", "offset": "-7d"}},
        ],
    }
    data.update(over)
    return NoticePlanSpec.model_validate(data)


def snap(**over: object) -> Snapshot:
    base = Snapshot(
        plan_name="np",
        plan_uid="uid-1",
        generation=1,
        spec=spec(),
        now=NOW,
        previous=NoticePlanStatus(),
        members={
            "pilot": [Member("a@acme.test"), Member("b@acme.test")],
            "sales": [Member("c@acme.test", mailbox_synced=True)],
        },
        facts={"new_imap_host": "imap.new.test", "new_imap_port": "993", "migration": "acme"},
        templates=TEMPLATES,
        ledgers={},
    )
    return replace(base, **over)  # type: ignore[arg-type]


def drafts(plan_status: NoticePlanStatus) -> dict[str, object]:
    return {d.cohort: d for d in plan_status.drafts}


def test_render_fills_facts_and_refuses_template_code() -> None:
    assert render("Hi {{ name }}!", {"name": "Ann"}, "t") == "Hi Ann!"
    for code in (
        "{{ name.__class__ }}",
        "{% for x in y %}",
        "{# c #}",
        "{{ ''.__class__.__mro__ }}",
        "{{ 7*7 }}",
    ):
        with pytest.raises(TemplateRefused) as caught:
            render(f"line one\n{code}", {"name": "Ann"}, "announce.text")
        assert "line 2" in caught.value.message, code
    with pytest.raises(TemplateRefused, match="unknown fact 'password'"):
        render("{{ password }}", {"name": "Ann"}, "t")
    # a fact's value is never read as a template
    assert render("{{ name }}", {"name": "{{ name }}"}, "t") == "{{ name }}"


def test_header_injection_refused() -> None:
    for bad in ("Hi\r\nBcc: all@acme.test", "Hi\nX: y", "Hi\u2028there", "a\x00b"):
        with pytest.raises(HeaderInjection):
            check_header("Subject", bad, "x")
    assert check_header("Subject", "Plain subject", "x") == "Plain subject"


def test_drafts_per_cohort_nothing_sent_before_approval() -> None:
    plan = decide(snap())
    d = drafts(plan.status)
    assert set(d) == {"pilot", "sales"}
    pilot = d["pilot"]
    assert pilot.state == "AwaitingApproval" and pilot.recipients == 2
    assert pilot.subject == "Your mailbox moves on 2026-12-09 18:00 UTC"
    assert "imap.new.test" in pilot.text and len(pilot.hash) == 16
    assert d["sales"].state == "AwaitingApproval" and "no window for sales" in d["sales"].message
    assert plan.sends == []
    assert plan.status.pending_approvals == sum(
        1 for x in plan.status.drafts if x.state == "AwaitingApproval"
    )
    assert any(e.reason == "DraftAwaitingApproval" for e in plan.events)


def test_approval_is_by_exact_hash_and_an_edit_needs_a_new_one() -> None:
    first = drafts(decide(snap()).status)["pilot"]
    approved = snap(spec=spec(approvedHashes=[first.hash]))
    plan = decide(approved)
    assert [s.address for s in plan.sends] == ["a@acme.test", "b@acme.test"]
    assert {s.hash for s in plan.sends} == {first.hash}
    edited = replace(approved, templates={**TEMPLATES, "announce.text": "Changed {{ cohort }}"})
    plan = decide(edited)
    pilot = drafts(plan.status)["pilot"]
    assert pilot.hash != first.hash and pilot.state == "AwaitingApproval"
    assert plan.sends == []


def test_not_due_yet_is_scheduled() -> None:
    early = NOW - timedelta(days=30)
    first = drafts(decide(snap(now=early)).status)["pilot"]
    plan = decide(snap(now=early, spec=spec(approvedHashes=[first.hash])))
    assert drafts(plan.status)["pilot"].state == "Scheduled" and plan.sends == []


def test_ledger_means_exactly_once_and_rate_limit() -> None:
    first = drafts(decide(snap()).status)["pilot"]
    book = {"a@acme.test": ledger.Entry("sent", 1.0, first.hash)}
    s = snap(spec=spec(approvedHashes=[first.hash]), ledgers={("announce", "pilot"): book})
    assert [x.address for x in decide(s).sends] == ["b@acme.test"]
    book["b@acme.test"] = ledger.Entry("intent", 2.0, first.hash)  # in doubt: never resent by decide
    plan = decide(s)
    assert plan.sends == [] and drafts(plan.status)["pilot"].in_doubt == 1
    book["b@acme.test"] = ledger.Entry("bounced", 2.0, first.hash)
    plan = decide(s)
    assert drafts(plan.status)["pilot"].state == "Sent" and plan.status.bounced == 1
    limited = snap(spec=spec(approvedHashes=[first.hash], sending={"maxPerRun": 1}))
    assert len(decide(limited).sends) == 1


def test_mailbox_completed_anchor_waits_per_person() -> None:
    notices = [{"name": "done", "template": "announce", "at": {"anchor": "mailboxCompleted"}}]
    s = snap(spec=spec(notices=notices))
    hashes = [d.hash for d in decide(s).status.drafts]
    plan = decide(snap(spec=spec(notices=notices, approvedHashes=hashes)))
    assert [x.address for x in plan.sends] == ["c@acme.test"]


def test_switch_anchor_needs_the_switch() -> None:
    notices = [{"name": "sw", "template": "announce", "at": {"anchor": "switch", "offset": "1h"}}]
    s = snap(spec=spec(notices=notices, cutoverRef={"name": "dns"}))
    hashes = [d.hash for d in decide(s).status.drafts]
    approved = snap(spec=spec(notices=notices, cutoverRef={"name": "dns"}, approvedHashes=hashes))
    assert decide(approved).sends == []
    assert len(decide(replace(approved, switched_at=NOW - timedelta(hours=2))).sends) == 3


def test_refused_template_and_from_header_stall_with_reason() -> None:
    plan = decide(snap(templates={**TEMPLATES, "announce.text": "{{ self.__init__ }}"}))
    stalled = next(c for c in plan.status.conditions if c.type == "Stalled")
    assert stalled.status == "True" and stalled.reason == "TemplateRefused"
    assert {d.state for d in plan.status.drafts} == {"Refused"}
    plan = decide(snap(spec=spec(**{"from": "IT\r\nBcc: everyone@x.test <it@acme.test>"})))
    stalled = next(c for c in plan.status.conditions if c.type == "Stalled")
    assert stalled.reason == "HeaderInjection" and "line break" in stalled.message
    plan = decide(
        snap(
            facts={"new_imap_host": "x", "new_imap_port": "1", "migration": "m"},
            templates={**TEMPLATES, "announce.subject": "{{ new_imap_host }}\nBcc: x"},
        )
    )
    assert next(c for c in plan.status.conditions if c.type == "Stalled").reason == "HeaderInjection"


def test_message_id_is_stable_and_message_is_well_formed() -> None:
    a = message_id("uid", "announce", "A@acme.test", "acme.test")
    assert a == message_id("uid", "announce", "a@acme.test", "acme.test")
    assert a != message_id("uid", "other", "a@acme.test", "acme.test")
    raw = build(
        from_header="IT <it@acme.test>",
        reply_to=None,
        to="a@acme.test",
        subject="S",
        text="body\n",
        msgid=a,
        date=NOW,
        tag="announce/pilot/h",
    )
    assert f"Message-ID: {a}\r\n".encode() in raw and b"Auto-Submitted: auto-generated" in raw


def test_ledger_round_trip() -> None:
    book = {"b@x.test": ledger.Entry("sent", 5.0, "h"), "a@x.test": ledger.Entry("intent", 6.0, "h")}
    assert ledger.parse(ledger.render(book)) == book


def test_inventory_cohort_column() -> None:
    inv = parse_text("source,destination,cohort\na@x.test,,Sales EMEA\nb@x.test,,\n")
    assert [e.cohort for e in inv.entries] == ["sales-emea", None]
    inv = parse_text('[{"source": "a@x.test", "cohort": "Pilot"}]')
    assert inv.entries[0].cohort == "pilot"


def test_too_many_drafts_for_status_stall_with_reason() -> None:
    members = {f"c{i}": [Member(f"p{i}@acme.test")] for i in range(101)}
    plan = decide(snap(members=members))
    stalled = next(c for c in plan.status.conditions if c.type == "Stalled")
    assert stalled.reason == "TooManyDrafts" and plan.sends == [] and plan.status.phase == "Stalled"
