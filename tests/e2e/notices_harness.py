"""Shared helpers for the NoticePlan tests (real API server, real SMTP submission into real Dovecot).

Not a test module: tests/e2e/test_notices_e2e.py and tests/chaos/notices_kill.py import it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from fixtures.smtp import Submission

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import Operator

MASTER_SECRET = "mailhost-imap"
SMTP_SECRET = "notice-smtp"
TEMPLATES = {
    "announce.subject": "Your mailbox moves on {{ window }}",
    "announce.text": (
        "Hello {{ cohort }} team,\n\nyour mailbox moves to {{ new_imap_host }} (port {{ new_imap_port }}, "
        "{{ new_imap_security }}) on {{ window }}.\n"
    ),
}


class NoticeOperator(Operator):
    """The operator as a subprocess: `mailferry-operator` (full) or only the NoticePlan handlers
    (`kopf run -m mailferry_operator.notices.handlers`: no MailMigration controller creating MailboxSyncs
    and Jobs for a 1,000-mailbox inventory). A run every second."""

    handlers_module = "mailferry_operator.notices.handlers"

    def __init__(
        self, kube: KubeAPI, namespace: str, log_dir: Path, env: Mapping[str, str], full: bool = False
    ) -> None:
        super().__init__(kube, namespace, log_dir, not full, {"MAILFERRY_NOTICE_INTERVAL": "1", **env})


def setup(
    kube: KubeAPI,
    namespace: str,
    sub: Submission,
    cohorts: Mapping[str, list[str]],
    *,
    inventory_configmap: bool = False,
    no_mailbox: tuple[str, ...] = (),
    smtp_consent: bool = True,
) -> None:
    """Dovecot users (but `no_mailbox`: in the inventory, unknown to Dovecot), the IMAP and SMTP Secrets
    (the SMTP one without the consent label unless `smtp_consent`), the templates, a suspended
    MailMigration whose inventory has a `cohort` column."""
    dovecot = sub.dovecot
    dovecot.add_users({a: "user-pw" for addrs in cohorts.values() for a in addrs if a not in no_mailbox})
    secret_labels = {"app.kubernetes.io/part-of": "mailferry", "mailferry.io/credentials": "true"}
    smtp_labels = secret_labels if smtp_consent else {"app.kubernetes.io/part-of": "mailferry"}
    endpoint = {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "auth": {"method": "master-user", "secretRef": {"name": MASTER_SECRET}},
    }
    rows = [{"source": a, "cohort": c} for c, addrs in cohorts.items() for a in addrs]
    mm_spec: dict[str, Any] = {"source": endpoint, "destination": endpoint, "suspend": True}
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": MASTER_SECRET, "labels": secret_labels},
            "stringData": {
                "master-username": dovecot.master_user,
                "master-password": dovecot.master_password,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SMTP_SECRET, "labels": smtp_labels},
            "stringData": {"username": sub.username, "password": sub.password},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "notice-templates"},
            "data": TEMPLATES,
        },
    ]
    if inventory_configmap:
        csv = "source,cohort\n" + "".join(f"{r['source']},{r['cohort']}\n" for r in rows)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "inventory"},
                "data": {"mailboxes": csv},
            }
        )
        mm_spec["inventoryRef"] = {"name": "inventory"}
    else:
        mm_spec["mailboxes"] = rows
    objects.append(
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "MailMigration",
            "metadata": {"name": "acme"},
            "spec": mm_spec,
        }
    )
    kube.apply(objects, namespace)


def plan_manifest(sub: Submission, cohorts: list[str], **spec: Any) -> dict[str, Any]:
    """A NoticePlan `np` for MailMigration `acme`: notice `announce` 7 days before each cohort's window,
    the windows 6 days ahead (so the notice is due now)."""
    window = (datetime.now(UTC) + timedelta(days=6)).replace(microsecond=0, second=0)
    body: dict[str, Any] = {
        "migrationRef": {"name": "acme"},
        "from": "IT Service Desk <it@acme.test>",
        "templatesRef": {"name": "notice-templates"},
        "smtp": {
            "host": sub.host,
            "port": sub.port,
            "security": "starttls",
            "secretRef": {"name": SMTP_SECRET},
            "usernameKey": "username",
            "passwordKey": "password",
        },
        "cohorts": [{"name": c, "window": window.isoformat().replace("+00:00", "Z")} for c in cohorts],
        "notices": [
            {"name": "announce", "template": "announce", "at": {"anchor": "window", "offset": "-7d"}}
        ],
        "sending": {"maxPerRun": 100, "inDoubtGrace": "2s"},
    }
    body.update(spec)
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "NoticePlan",
        "metadata": {"name": "np"},
        "spec": body,
    }


def get_np(kube: KubeAPI, namespace: str) -> dict[str, Any]:
    return kube.get("noticeplan", "np", namespace)


def wait_np(
    kube: KubeAPI,
    namespace: str,
    check: Callable[[dict[str, Any]], object],
    what: str,
    operator: NoticeOperator | None = None,
    timeout: float = 90,
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        last = get_np(kube, namespace)
        return last if check(last) else None

    try:
        return wait_until(probe, timeout=timeout, what=what)
    except AssertionError as exc:
        status = dict(last.get("status") or {})
        for d in status.get("drafts") or []:
            d.pop("text", None)
        tail = operator.log_text()[-4000:] if operator else ""
        raise AssertionError(f"{exc}\nstatus: {json.dumps(status)[:3000]}\noperator log:\n{tail}") from None


def drafts(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["cohort"]: d for d in (obj.get("status") or {}).get("drafts") or []}


def runs_after(kube: KubeAPI, namespace: str, operator: NoticeOperator, runs: int = 2) -> dict[str, Any]:
    """Wait until the operator has finished `runs` more runs (status.lastRunTime moved on that often)."""
    seen: list[str] = [str((get_np(kube, namespace).get("status") or {}).get("lastRunTime"))]

    def moved(o: dict[str, Any]) -> bool:
        at = str((o.get("status") or {}).get("lastRunTime"))
        if at != seen[-1]:
            seen.append(at)
        return len(seen) > runs

    return wait_np(kube, namespace, moved, f"{runs} more runs", operator)


def patch_plan(kube: KubeAPI, namespace: str, patch: Mapping[str, Any]) -> None:
    kube.kubectl("patch", "noticeplan", "np", "-n", namespace, "--type", "merge", "-p", json.dumps(patch))


def patch_templates(kube: KubeAPI, namespace: str, data: Mapping[str, str]) -> None:
    patch = json.dumps({"data": dict(data)})
    kube.kubectl("patch", "configmap", "notice-templates", "-n", namespace, "--type", "merge", "-p", patch)


def notice_copies(sub: Submission, addresses: list[str], notice: str = "announce") -> dict[str, int]:
    """How many copies of the notice each address has in its INBOX (by the notice's Message-ID prefix)."""
    prefix = f"<notice.{notice}."
    return {a: sum(1 for m in sub.inbox_message_ids(a) if m.startswith(prefix)) for a in addresses}
