"""NoticePlan end to end: real API server, the operator, a real SMTP submission server (aiosmtpd with
STARTTLS + AUTH) delivering into a real Dovecot over LMTP (dovecot-lmtpd).

- drafts for two cohorts, nothing sent before approval; hash A approved, then an edit: nothing sent
  until hash B is approved; then every recipient has exactly one copy in their INBOX
- template code and header injection refused with a reason; no secret in a draft, the log or an Event
- the operator killed (SIGKILL) in the middle of sending to 100 recipients: none missed, none twice
  (1,000 recipients: `make chaos CHAOS_ARGS="--scenario notices-kill"`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notices_harness import (
    TEMPLATES,
    NoticeOperator,
    drafts,
    get_np,
    notice_copies,
    patch_plan,
    patch_templates,
    plan_manifest,
    runs_after,
    setup,
    wait_np,
)

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from fixtures.smtp import Submission

PILOT = [f"pilot{i}@acme.test" for i in range(3)]
SALES = [f"sales{i}@acme.test" for i in range(4)]
GHOST = "left-the-company@acme.test"  # in the inventory, no mailbox: LMTP answers 550, a bounce


def _condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def test_drafts_approval_by_hash_and_exactly_one_copy(
    kube: KubeAPI, namespace: str, smtp_submission: Submission, tmp_path: Path
) -> None:
    sub = smtp_submission
    setup(
        kube,
        namespace,
        sub,
        {"pilot": PILOT, "sales": [*SALES, GHOST]},
        no_mailbox=(GHOST,),
        smtp_consent=False,
    )
    kube.apply(plan_manifest(sub, ["pilot", "sales"], suspend=True), namespace)
    op = NoticeOperator(kube, namespace, tmp_path, {"MAILFERRY_CA_FILE": str(sub.ca_cert)}, full=True).start()
    try:
        # drafts for both cohorts, awaiting approval; kubectl get shows the pending approvals
        obj = wait_np(
            kube, namespace, lambda o: o.get("status", {}).get("pendingApprovals") == 2, "two drafts", op
        )
        d = drafts(obj)
        assert d["pilot"]["recipients"] == 3 and d["sales"]["recipients"] == 5
        assert d["pilot"]["state"] == "AwaitingApproval"
        assert f"port {sub.dovecot.port}" in d["pilot"]["text"]
        table = kube.kubectl("get", "noticeplan", "np", "-n", namespace).stdout
        assert "PENDING-APPROVALS" in table and " 2 " in table, table
        events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert "DraftAwaitingApproval" in events and d["pilot"]["hash"] in events
        runs_after(kube, namespace, op)
        assert sub.delivered == [], "sent before approval"

        # approve hash A (pilot), then edit the template: the draft gets hash B and waits again
        hash_a = d["pilot"]["hash"]
        patch_plan(kube, namespace, {"spec": {"approvedHashes": [hash_a]}})
        patch_templates(
            kube, namespace, {"announce.text": TEMPLATES["announce.text"] + "\nEdited after approval.\n"}
        )
        obj = wait_np(
            kube, namespace, lambda o: drafts(o)["pilot"]["hash"] != hash_a, "the edit's new hash", op
        )
        hash_b = drafts(obj)["pilot"]["hash"]
        assert drafts(obj)["pilot"]["state"] == "AwaitingApproval"
        patch_plan(kube, namespace, {"spec": {"suspend": False}})
        runs_after(kube, namespace, op)
        assert sub.delivered == [], "sent with a stale approval (hash A) after the edit"

        # approve B and the sales draft: each recipient gets exactly one copy, of version B
        hash_sales = drafts(obj)["sales"]["hash"]
        patch_plan(kube, namespace, {"spec": {"approvedHashes": [hash_a, hash_b, hash_sales]}})
        # the SMTP Secret lacks the owner's consent label: nothing is read from it, nothing sent, a reason
        obj = wait_np(
            kube,
            namespace,
            lambda o: _condition(o, "Stalled").get("reason") == "SecretNotPermitted",
            "consent",
            op,
        )
        assert "mailferry.io/credentials" in _condition(obj, "Stalled")["message"] and sub.delivered == []
        kube.kubectl("label", "secret", "notice-smtp", "-n", namespace, "mailferry.io/credentials=true")
        obj = wait_np(
            kube,
            namespace,
            lambda o: {x["state"] for x in drafts(o).values()} == {"Sent"},
            "both drafts sent",
            op,
        )
        assert obj["status"]["sent"] == 7 and obj["status"]["bounced"] == 1
        delivery = {c["cohort"]: (c["sent"], c["bounced"]) for c in obj["status"]["cohorts"]}
        assert delivery == {"pilot": (3, 0), "sales": (4, 1)}
        assert notice_copies(sub, PILOT + SALES) == dict.fromkeys(PILOT + SALES, 1)
        pilot_mail = [data for rcpts, data in sub.delivered if rcpts == [PILOT[0]]]
        assert len(pilot_mail) == 1 and b"Edited after approval." in pilot_mail[0]
        runs_after(kube, namespace, op)
        assert len(sub.delivered) == 7  # nothing more after Sent
        metrics = op.metrics()
        assert 'mailferry_notice_recipients{cohort="sales",namespace="' in metrics
        assert 'notice="announce",noticeplan="np",state="sent"} 4.0' in metrics
        assert 'notice="announce",noticeplan="np",state="bounced"} 1.0' in metrics

        # template code in the ConfigMap, then a header injected through the subject: refused, with reasons
        bad = {"name": "bad", "template": "bad", "at": {"anchor": "window", "offset": "-7d"}}
        patch_plan(kube, namespace, {"spec": {"notices": [*obj["spec"]["notices"], bad]}})
        attempts = [
            (
                {"bad.subject": "Hi", "bad.text": "{{ cohort.__class__.__mro__ }}"},
                "TemplateRefused",
                "template code",
            ),
            (
                {"bad.subject": "Hi {{ cohort }}\r\nBcc: everyone@acme.test", "bad.text": "x"},
                "HeaderInjection",
                "line break",
            ),
        ]
        for templates, reason, said in attempts:
            patch_templates(kube, namespace, templates)
            obj = wait_np(
                kube, namespace, lambda o, r=reason: _condition(o, "Stalled").get("reason") == r, reason, op
            )
            assert said in _condition(obj, "Stalled")["message"]
            assert _condition(obj, "Ready")["status"] == "False"
        events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert "TemplateRefused" in events and "HeaderInjection" in events
        assert len(sub.delivered) == 7

        # no secret anywhere a person reads: status (drafts), Events, the operator's log, the ledger
        ledger = kube.kubectl(
            "get", "configmap", "-n", namespace, "-l", "mailferry.io/noticeplan=np", "-o", "json"
        )
        for where, text in {
            "status": json.dumps(get_np(kube, namespace)["status"]),
            "events": events,
            "log": op.log_text(),
            "ledger": ledger.stdout,
        }.items():
            for secret in (sub.password, sub.dovecot.master_password, "user-pw"):
                assert secret not in text, f"a secret in the {where}"
    finally:
        op.stop()


def test_operator_killed_mid_send_none_missed_none_twice(
    kube: KubeAPI, namespace: str, smtp_submission: Submission, tmp_path: Path
) -> None:
    sub = smtp_submission
    people = [f"user{i:03d}@acme.test" for i in range(100)]
    setup(kube, namespace, sub, {"everyone": people}, inventory_configmap=True)
    kube.apply(plan_manifest(sub, ["everyone"]), namespace)
    op = NoticeOperator(kube, namespace, tmp_path, {"MAILFERRY_CA_FILE": str(sub.ca_cert)}).start()
    try:
        obj = wait_np(kube, namespace, lambda o: drafts(o).get("everyone", {}).get("hash"), "draft", op)
        patch_plan(kube, namespace, {"spec": {"approvedHashes": [drafts(obj)["everyone"]["hash"]]}})
        wait_until(lambda: len(sub.delivered) >= 30, timeout=90, what="30 delivered")
        op.kill()  # SIGKILL while it sends (chunks of 20: intent written, some of the chunk delivered)
        killed_at = len(sub.delivered)
        op.start()
        obj = wait_np(
            kube,
            namespace,
            lambda o: drafts(o)["everyone"]["state"] == "Sent",
            "all sent after the restart",
            op,
        )
        assert obj["status"]["sent"] == 100
        copies = notice_copies(sub, people)
        assert [a for a, n in copies.items() if n == 0] == [], "missed"
        assert [a for a, n in copies.items() if n > 1] == [], "twice"
        print(f"killed after {killed_at} deliveries; in-doubt lookups: {op.log_text().count('was in doubt')}")
    finally:
        op.stop()
