"""Bounces and acknowledgements of notices, end to end: a real API server, the operator, aiosmtpd
(STARTTLS + AUTH) relaying into a real Dovecot over LMTP, and the replies mailbox on that Dovecot.

- a notice accepted by the submission server is bounced later: the relay delivers a delivery status
  notification (RFC 3464, Postfix's shape) to the notice's envelope sender, the replies mailbox; the
  operator counts it for the recipient's cohort
- recipients reply through the same submission server (In-Reply-To = the notice's Message-ID): counted
  once per recipient per cohort; an out-of-office answer, a stranger's reply, garbage, a fake DSN and an
  oversized message are not
- status per cohort (sent, bounced, acknowledged, percentages), metrics, the kubectl column
- no double counting: the operator killed and its checkpoint set back (a crash after the ledger write,
  before the status write) re-reads every message and counts nobody twice; a later reply counts once
"""

from __future__ import annotations

import json
import smtplib
import ssl
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notices_harness import (
    NoticeOperator,
    drafts,
    get_np,
    patch_plan,
    plan_manifest,
    runs_after,
    setup,
    wait_np,
)

from fixtures.dsn import dsn, reply
from fixtures.kubeapi import KubeAPI
from fixtures.smtp import Submission

PILOT = [f"pilot{i}@acme.test" for i in range(3)]
SALES = [f"sales{i}@acme.test" for i in range(4)]
BOUNCES = SALES[3]  # accepted by the submission server, bounced later by "the remote MTA"
REPLIES = "notice-replies@acme.test"
REPLIES_PASSWORD = "replies-mailbox-secret-pw"
MAX_BYTES = 16384


def _submit(sub: Submission, sender: str, to: str, data: bytes) -> None:
    """Send as a person's mail client does: submission with STARTTLS and AUTH."""
    with smtplib.SMTP(sub.host, sub.port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(sub.ca_cert)))
        client.login(sub.username, sub.password)
        client.sendmail(sender, [to], data)


def _notice_for(sub: Submission, address: str) -> bytes:
    found = [data for rcpts, data in sub.delivered if rcpts == [address]]
    assert len(found) == 1, f"{address}: {len(found)} notices"
    return found[0]


def _cohorts(obj: dict[str, Any]) -> dict[str, tuple[int, int, int, str, str]]:
    return {
        c["cohort"]: (
            c.get("sent", 0),
            c.get("bounced", 0),
            c.get("acknowledged", 0),
            c.get("bouncedPercent", ""),
            c.get("acknowledgedPercent", ""),
        )
        for c in (obj.get("status") or {}).get("cohorts") or []
    }


def _replies(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("replies") or {})


EXPECTED = {
    "pilot": (3, 0, 2, "0.0%", "66.7%"),
    "sales": (3, 1, 0, "25.0%", "0.0%"),
}


def test_bounces_and_acknowledgements_counted_per_cohort_once(
    kube: KubeAPI, namespace: str, smtp_submission: Submission, tmp_path: Path
) -> None:
    sub = smtp_submission
    setup(kube, namespace, sub, {"pilot": PILOT, "sales": SALES})
    sub.dovecot.add_users({REPLIES: REPLIES_PASSWORD})
    sub.bounce_later.add(BOUNCES)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "notice-replies",
                "labels": {"app.kubernetes.io/part-of": "mailferry"},  # no consent label yet
            },
            "stringData": {"password": REPLIES_PASSWORD},
        },
        namespace,
    )
    replies_spec = {
        "address": REPLIES,
        "username": REPLIES,
        "secretKey": "password",
        "maxMessageBytes": MAX_BYTES,
        "interval": "1s",
        "imap": {
            "host": sub.dovecot.host,
            "port": sub.dovecot.port,
            "security": "none",
            "auth": {"method": "password", "secretRef": {"name": "notice-replies"}},
        },
    }
    kube.apply(plan_manifest(sub, ["pilot", "sales"], replies=replies_spec), namespace)
    op = NoticeOperator(kube, namespace, tmp_path, {"MAILFERRY_CA_FILE": str(sub.ca_cert)}, full=True).start()
    try:
        obj = wait_np(
            kube,
            namespace,
            lambda o: len(drafts(o)) == 2 and all(d.get("hash") for d in drafts(o).values()),
            "drafts",
            op,
        )
        patch_plan(kube, namespace, {"spec": {"approvedHashes": [d["hash"] for d in drafts(obj).values()]}})

        # the replies Secret lacks the owner's consent: nothing is read from it, the reason is in status
        obj = wait_np(
            kube,
            namespace,
            lambda o: "mailferry.io/credentials" in _replies(o).get("error", ""),
            "consent refused",
            op,
        )
        assert _replies(obj).get("lastUid", 0) == 0
        assert (
            f'mailferry_notice_replies_failing{{namespace="{namespace}",noticeplan="np"}} 1.0' in op.metrics()
        )
        kube.kubectl("label", "secret", "notice-replies", "-n", namespace, "mailferry.io/credentials=true")

        # the bounce arrives after the submission server accepted the notice: sent first, bounced later
        obj = wait_np(
            kube, namespace, lambda o: _cohorts(o).get("sales", (0, 0))[1] == 1, "the DSN counted", op
        )
        assert {x["state"] for x in drafts(obj).values()} == {"Sent"}
        assert len(sub.delivered) == 7
        notice = _notice_for(sub, PILOT[0])
        assert b"Reply-To: " + REPLIES.encode() in notice
        # (the relay sent the DSN to the envelope sender: counting it proves the Return-Path was REPLIES)

        # replies: two people acknowledge (one of them twice); the rest must not count
        _submit(
            sub,
            PILOT[0],
            REPLIES,
            reply(_notice_for(sub, PILOT[0]), f"Pilot Zero <{PILOT[0].upper()}>", REPLIES),
        )
        _submit(sub, PILOT[0], REPLIES, reply(_notice_for(sub, PILOT[0]), PILOT[0], REPLIES, text="again"))
        _submit(sub, PILOT[1], REPLIES, reply(_notice_for(sub, PILOT[1]), PILOT[1], REPLIES))
        _submit(sub, SALES[0], REPLIES, reply(_notice_for(sub, SALES[0]), SALES[0], REPLIES, auto=True))
        _submit(
            sub, "x@elsewhere.test", REPLIES, reply(_notice_for(sub, SALES[1]), "x@elsewhere.test", REPLIES)
        )
        unknown = _notice_for(sub, SALES[2]).replace(b"<notice.announce.", b"<not-ours.")
        hostile = [
            b"\x00\xff garbage\r\n\r\n\x80",
            dsn(unknown, SALES[2], REPLIES),  # a DSN about a message that is not ours
            # a real bounce of SALES[1]'s notice, but over the size bound: not read, unmatched
            dsn(_notice_for(sub, SALES[1]), SALES[1], REPLIES, headers_only=False) + b"x" * (MAX_BYTES + 1),
        ]
        sub.dovecot.append(REPLIES, "INBOX", hostile)
        obj = wait_np(
            kube,
            namespace,
            lambda o: _replies(o).get("unmatched") == 4 and _replies(o).get("acknowledgements") == 3,
            "every reply read",
            op,
        )
        assert _cohorts(obj) == EXPECTED
        read = _replies(obj)
        assert (read["bounces"], read["acknowledgements"], read["autoReplies"], read["unmatched"]) == (
            1,
            3,
            1,
            4,
        )
        assert not read.get("error")
        assert (obj["status"]["sent"], obj["status"]["bounced"], obj["status"]["acknowledged"]) == (6, 1, 2)
        table = kube.kubectl("get", "noticeplan", "np", "-n", namespace).stdout
        assert "ACKNOWLEDGED" in table, table
        metrics = op.metrics()
        assert 'mailferry_notice_recipients{cohort="pilot",namespace="' in metrics
        assert 'notice="announce",noticeplan="np",state="acknowledged"} 2.0' in metrics
        assert 'notice="announce",noticeplan="np",state="bounced"} 1.0' in metrics
        assert 'noticeplan="np",outcome="bounce"} 1.0' in metrics
        assert 'noticeplan="np",outcome="unmatched"} 4.0' in metrics

        # a crash after the ledger write and before the status write: the checkpoint is back at 0, the
        # ledger holds every effect. Everything is read again; nobody is counted twice.
        op.kill()
        before = {
            "uidValidity": read["uidValidity"],
            "lastUid": 0,
            "bounces": 0,
            "acknowledgements": 0,
            "autoReplies": 0,
            "unmatched": 0,
        }
        kube.kubectl(
            "patch", "noticeplan", "np", "-n", namespace, "--subresource=status", "--type", "merge",
            "-p", json.dumps({"status": {"replies": before}}),
        )  # fmt: skip
        op.start()
        obj = wait_np(kube, namespace, lambda o: _replies(o).get("lastUid") == read["lastUid"], "re-read", op)
        runs_after(kube, namespace, op)
        obj = get_np(kube, namespace)
        assert _cohorts(obj) == EXPECTED
        counts = ("bounces", "acknowledgements", "autoReplies", "unmatched")
        assert [_replies(obj)[k] for k in counts] == [read[k] for k in counts]  # the same messages, once
        assert (obj["status"]["bounced"], obj["status"]["acknowledged"]) == (1, 2)

        # and a new reply after the restart counts once, from the checkpoint on
        _submit(sub, PILOT[2], REPLIES, reply(_notice_for(sub, PILOT[2]), PILOT[2], REPLIES))
        obj = wait_np(
            kube, namespace, lambda o: (o.get("status") or {}).get("acknowledged") == 3, "third ack", op
        )
        assert _cohorts(obj)["pilot"] == (3, 0, 3, "0.0%", "100.0%")
        assert _replies(obj)["lastUid"] == read["lastUid"] + 1

        # no secret in status, Events, the log or the ledger
        events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        ledger = kube.kubectl(
            "get", "configmap", "-n", namespace, "-l", "mailferry.io/noticeplan=np", "-o", "json"
        )
        assert "acked=" in ledger.stdout
        for where, text in {
            "status": json.dumps(obj["status"]),
            "events": events,
            "log": op.log_text(),
            "ledger": ledger.stdout,
        }.items():
            for secret in (sub.password, REPLIES_PASSWORD, sub.dovecot.master_password, "user-pw"):
                assert secret not in text, f"a secret in the {where}"
    finally:
        op.stop()
