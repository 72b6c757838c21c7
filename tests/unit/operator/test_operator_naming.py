from __future__ import annotations

import re
from typing import Any

import pytest

from mailferry_operator.mailmigration.batching import plan_batches
from mailferry_operator.mailmigration.durations import parse_duration
from mailferry_operator.mailmigration.naming import job_name, mailbox_sync_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_mailbox_sync_names_are_deterministic_valid_and_distinct() -> None:
    a = mailbox_sync_name("acme", "Alice.Smith@Example.COM")
    assert a == mailbox_sync_name("acme", "alice.smith@example.com")
    assert a.startswith("alice-smith-example-com-") and DNS_LABEL.match(a)
    assert a != mailbox_sync_name("other", "alice.smith@example.com")
    assert mailbox_sync_name("acme", "a_b@x.test") != mailbox_sync_name("acme", "a-b@x.test")
    long = mailbox_sync_name("acme", "x" * 300 + "@example.com")
    assert len(long) <= 63 and DNS_LABEL.match(long)


def test_job_names() -> None:
    assert job_name("acme", 1, 0) == "acme-r1-b0"
    assert job_name("acme", 2, 3, 1) == "acme-r2-b3-a1"
    long = job_name("m" * 80, 12, 345, 2)
    assert len(long) <= 63 and long.endswith("-r12-b345-a2") and DNS_LABEL.match(long)
    assert long == job_name("m" * 80, 12, 345, 2)
    assert job_name("m" * 80, 1, 0) != job_name("m" * 79 + "n", 1, 0)


def test_batches_are_sorted_chunks() -> None:
    assert plan_batches(["c", "a", "b", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert plan_batches([], 3) == []


def test_durations() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2d") == 172800
    for bad in ("", "5", "5x", "m5"):
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_mailbox_sync_body_from_template_equals_the_model_built_one() -> None:
    from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec
    from mailferry_operator.mailmigration.resources import mailbox_sync_body, mailbox_sync_template

    ep = {"host": "imap.test", "port": 143, "security": "none", "auth": {"secretRef": {"name": "s"}}}
    spec = MailMigrationSpec.model_validate(
        {
            "source": ep,
            "destination": dict(ep, port=993),
            "mailboxes": [],
            "skipDuplicates": True,
            "folders": {"strategy": "standard", "exclude": ["Trash"]},
            "importSince": "2024-01-01",
        }
    )
    template = mailbox_sync_template("acme", spec)
    for entry in (
        MailboxEntry(source="a@x.test"),
        MailboxEntry(source="b@x.test", destination="bee@y.test", secret_key="bk"),
    ):
        slow = mailbox_sync_body("acme", "uid-1", "ns", spec, entry)
        fast = mailbox_sync_body("acme", "uid-1", "ns", spec, entry, template)
        assert fast == slow
    assert slow["spec"]["destination"]["username"] == "bee@y.test" and slow["spec"]["secretKey"] == "bk"
    assert slow["metadata"]["ownerReferences"][0]["controller"] is True


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"connectionsPerMailbox": 2, "deletions": "keep", "folders": {"strategy": "all"}},
        {"connectionsPerMailbox": 5, "skipDuplicates": True, "maxMessageBytes": 1000, "content": ["mail"]},
        {
            "content": ["mail", "contacts", "calendars"],
            "groupware": {
                "source": {"url": "https://dav.test/"},
                "destination": {"type": "dav", "url": "https://d/"},
            },
            "deletionSafety": {"maxPercent": 5},
            "folders": {"mappings": [{"from": "Old/(.*)", "to": "New/\\1"}], "specialUseAutomap": False},
        },
    ],
)
def test_a_created_mailbox_sync_omits_defaults_and_reads_back_the_same(extra: dict[str, object]) -> None:
    """The MailboxSync CRD applies no defaults (crd.Resource.api_defaults): what the operator writes at
    creation is read back by the model as the whole spec, and the spec-hash covers the whole spec (an
    object created before, with every field written, keeps its hash: no patch after an upgrade)."""
    from mailferry_api.mailboxsync import MailboxSyncSpec
    from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec
    from mailferry_operator.mailmigration.resources import (
        mailbox_sync_body,
        mailbox_sync_spec,
        mailbox_sync_template,
        spec_hash,
    )

    ep = {"host": "imap.test", "auth": {"secretRef": {"name": "s"}}}
    spec = MailMigrationSpec.model_validate({"source": ep, "destination": ep, "mailboxes": [], **extra})
    entry = MailboxEntry(source="a@x.test", destination="b@y.test")
    body = mailbox_sync_body("acme", "uid-1", "ns", spec, entry, mailbox_sync_template("acme", spec))
    full = mailbox_sync_spec("acme", spec, entry)
    assert MailboxSyncSpec.model_validate(body["spec"]) == MailboxSyncSpec.model_validate(full)
    assert body["metadata"]["annotations"]["mailferry.io/spec-hash"] == spec_hash(full)
    assert "port" not in body["spec"]["source"]["endpoint"] and full["source"]["endpoint"]["port"] == 993
    written_connections = body["spec"].get("connectionsPerMailbox")
    assert written_connections == (
        None if spec.connections_per_mailbox == 2 else spec.connections_per_mailbox
    )


def test_job_body_is_plain_json_with_worker_resources() -> None:
    """The example sets spec.worker.resources; the Job must carry them as plain JSON, not a model."""
    import json
    from pathlib import Path

    import yaml

    from mailferry_api.mailmigration import MailMigrationSpec
    from mailferry_operator.mailmigration.plan import JobPlan
    from mailferry_operator.mailmigration.resources import job_body

    example = Path(__file__).resolve().parents[3] / "deploy/examples/10-mailmigration-inline.yaml"
    spec = MailMigrationSpec.model_validate(yaml.safe_load(example.read_text())["spec"])
    assert spec.worker.resources is not None
    plan = JobPlan(name="m-r1-b0", round=1, batch=0, attempt=0, mailboxes=("a", "b"))
    body = json.loads(json.dumps(job_body("m", "uid-1", "ns", spec, plan)))
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == spec.worker.resources.to_api()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_peering_replicas_do_not_tie_on_priority() -> None:
    """Kopf pauses all operators sharing the top priority: replicas with the same args must differ."""
    from mailferry_operator.main import parse_args, peering_priority

    replica_args = ["--namespace", "mail", "--peering", "mailferry"]
    priorities = {peering_priority(parse_args(replica_args)) for _ in range(20)}
    assert len(priorities) == 20
    assert peering_priority(parse_args([*replica_args, "--priority", "7"])) == 7
    assert peering_priority(parse_args(["--namespace", "mail"])) == 0


def _batch_volumes(over: dict[str, Any], entries: list[Any] | None) -> dict[str, dict[str, Any]]:
    from mailferry_api.mailmigration import MailMigrationSpec
    from mailferry_operator.mailmigration.plan import JobPlan
    from mailferry_operator.mailmigration.resources import job_body

    ep = {"host": "imap.test", "port": 993, "auth": {"secretRef": {"name": "creds"}}}
    spec = MailMigrationSpec.model_validate({"source": ep, "destination": {**ep, "host": "dst.test"}, **over})
    plan = JobPlan(name="m-r1-b0", round=1, batch=0, attempt=0, mailboxes=("a", "b"))
    body = job_body("m", "uid-1", "ns", spec, plan, entries=entries)
    return {v["name"]: v.get("secret", {}) for v in body["spec"]["template"]["spec"]["volumes"]}


def test_a_batch_pod_mounts_only_its_mailboxes_password_keys() -> None:
    from mailferry_api.mailmigration import MailboxEntry

    entries = [
        MailboxEntry(source="ann@old.test", destination="ann@new.test"),
        MailboxEntry(source="bob@old.test", secret_key="bob-key"),
        MailboxEntry(source="c+d@old.test"),  # no Secret can hold "c+d_old.test": not listed
    ]
    volumes = _batch_volumes({}, entries)
    src, dst = volumes["source-secret"], volumes["destination-secret"]
    # each mailbox's secretKey, its source-login fallback, and this side's login (contacts/calendars)
    assert [i["key"] for i in src["items"]] == ["ann_old.test", "bob-key", "bob_old.test"]
    assert [i["key"] for i in dst["items"]] == ["ann_old.test", "ann_new.test", "bob-key", "bob_old.test"]
    assert all(i["path"] == i["key"] for i in src["items"] + dst["items"])
    assert src["optional"] is True and src["defaultMode"] == 0o400  # an unset fallback key is no error


def test_other_auth_methods_and_unknown_batches_mount_the_whole_secret() -> None:
    from mailferry_api.mailmigration import MailboxEntry
    from mailferry_operator.mailmigration.resources import MAX_LISTED_KEYS

    entries = [MailboxEntry(source="ann@old.test")]
    master = {
        "auth": {
            "method": "master-user",
            "secretRef": {"name": "m"},
            "masterUserKey": "u",
            "masterPasswordKey": "p",
        }
    }
    ep = {"host": "imap.test", "port": 993}
    volumes = _batch_volumes({"source": {**ep, **master}}, entries)
    assert "items" not in volumes["source-secret"] and "items" in volumes["destination-secret"]
    # contacts/calendars on the destination with OAuth2 while its mail uses passwords: all its keys
    oauth = {
        "method": "xoauth2",
        "secretRef": {"name": "app"},
        "oauth2": {"provider": "microsoft", "clientId": "c", "tenantId": "t", "clientSecretKey": "secret"},
    }
    dav = {"type": "dav", "url": "https://dav.test/"}
    groupware = {"source": dav, "destination": {**dav, "auth": oauth}}
    volumes = _batch_volumes({"groupware": groupware, "content": ["mail", "contacts"]}, entries)
    assert "items" in volumes["source-secret"] and "items" not in volumes["destination-secret"]
    # a follower's batch of thousands: listing every key would swell the Job towards etcd's size limit
    many = [MailboxEntry(source=f"u{i}@old.test") for i in range(MAX_LISTED_KEYS + 1)]
    assert all("items" not in v for k, v in _batch_volumes({}, many).items() if k.endswith("secret"))
    assert len(_batch_volumes({}, many[:MAX_LISTED_KEYS])["source-secret"]["items"]) == MAX_LISTED_KEYS
    no_entries = _batch_volumes({}, None)
    assert all(
        "items" not in v and "optional" not in v for k, v in no_entries.items() if k.endswith("secret")
    )
