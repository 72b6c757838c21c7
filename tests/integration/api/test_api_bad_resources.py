"""Bad resources are rejected by the real API server, with a message that names the offending field.

Each case starts from a valid object, breaks one thing, and checks kubectl's error. `update` cases
create the valid object first and then apply the change (immutability, transition rules); `status`
cases write through the /status subresource.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from fixtures.kubeapi import KubeAPI

Obj = dict[str, Any]


def _endpoint(host: str) -> Obj:
    return {"host": host, "auth": {"method": "password", "secretRef": {"name": "creds"}}}


def migration() -> Obj:
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailMigration",
        "metadata": {"name": "bad"},
        "spec": {
            "source": _endpoint("imap.old.example.net"),
            "destination": _endpoint("imap.new.example.org"),
            "mailboxes": [{"source": "alice@example.com"}],
        },
    }


def mailbox_sync() -> Obj:
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailboxSync",
        "metadata": {"name": "bad"},
        "spec": {
            "source": {"username": "alice@example.com", "endpoint": _endpoint("imap.old.example.net")},
            "destination": {"username": "alice@example.com", "endpoint": _endpoint("imap.new.example.org")},
        },
    }


def sparse_mailbox_sync() -> Obj:
    """A MailboxSync as the operator writes it: without the model's defaults (the CRD applies none)."""
    obj = mailbox_sync()
    for side in ("source", "destination"):
        del obj["spec"][side]["endpoint"]["auth"]["method"]
    return obj


def cutover() -> Obj:
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "DnsCutover",
        "metadata": {"name": "bad"},
        "spec": {
            "domain": "example.com",
            "provider": {
                "type": "powerdns",
                "secretRef": {"name": "pdns"},
                "powerdns": {"apiUrl": "http://127.0.0.1:8081"},
            },
            "records": {"mx": [{"host": "mx1.new.example.org", "priority": 10}]},
            "gates": {"enforced": [{"name": "soak", "type": "minDuration", "duration": "1h"}]},
        },
    }


@dataclass(frozen=True)
class Case:
    id: str
    base: Callable[[], Obj]
    change: Callable[[Obj], None]
    expect: tuple[str, ...]  # substrings of kubectl's error, the first naming the field
    mode: str = "create"  # create | update | status


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[int(last) if isinstance(node, list) else last] = value

    return change


def _del(path: str) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[int(last) if isinstance(node, list) else last]

    return change


def _all(*changes: Callable[[Obj], None]) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        for c in changes:
            c(obj)

    return change


CASES = [
    # --- MailMigration ---
    Case("mm-missing-source", migration, _del("spec.source"), ("spec.source: Required value",)),
    Case(
        "mm-missing-secretref",
        migration,
        _del("spec.source.auth.secretRef"),
        ("spec.source.auth.secretRef: Required value",),
    ),
    Case(
        "mm-security-enum",
        migration,
        _set("spec.source.security", "ssl"),
        ('spec.source.security: Unsupported value: "ssl"', '"tls", "starttls", "none"'),
    ),
    Case(
        "mm-auth-method-enum",
        migration,
        _set("spec.destination.auth.method", "plain"),
        ('spec.destination.auth.method: Unsupported value: "plain"',),
    ),
    Case(
        "mm-negative-batch-size",
        migration,
        _set("spec.batchSize", -5),
        ("spec.batchSize: Invalid value: -5", "greater than or equal to 1"),
    ),
    Case(
        "mm-port-zero",
        migration,
        _set("spec.destination.port", 0),
        ("spec.destination.port: Invalid value: 0", "greater than or equal to 1"),
    ),
    Case(
        "mm-port-too-big",
        migration,
        _set("spec.source.port", 70000),
        ("spec.source.port: Invalid value: 70000", "less than or equal to 65535"),
    ),
    Case(
        "mm-connections-zero",
        migration,
        _set("spec.connectionsPerMailbox", 0),
        ("spec.connectionsPerMailbox: Invalid value: 0",),
    ),
    Case(
        "mm-xoauth2-without-oauth2",
        migration,
        _set("spec.destination.auth.method", "xoauth2"),
        ("spec.destination.auth.oauth2", "auth.oauth2 is required when auth.method is xoauth2"),
    ),
    Case(
        "mm-both-mailboxes-and-inventory",
        migration,
        _set("spec.inventoryRef", {"name": "inventory"}),
        ("spec: Invalid value", "set exactly one of mailboxes or inventoryRef"),
    ),
    Case(
        "mm-neither-mailboxes-nor-inventory",
        migration,
        _del("spec.mailboxes"),
        ("spec: Invalid value", "set exactly one of mailboxes or inventoryRef"),
    ),
    Case(
        "mm-bad-duration",
        migration,
        _set("spec.deltaInterval", "15 minutes"),
        ('spec.deltaInterval: Invalid value: "15 minutes"', "should match"),
    ),
    Case(
        "mm-secret-key-with-slash",
        migration,
        _set("spec.mailboxes.0.secretKey", "alice/password"),
        ('spec.mailboxes[0].secretKey: Invalid value: "alice/password"', "should match"),
    ),
    Case(
        "mm-mailbox-not-an-address",
        migration,
        _set("spec.mailboxes.0.source", "alice smith@example.com"),
        ("spec.mailboxes[0].source: Invalid value",),
    ),
    Case(
        "mm-folder-strategy-enum",
        migration,
        _set("spec.folders", {"strategy": "everything"}),
        ('spec.folders.strategy: Unsupported value: "everything"',),
    ),
    Case(
        "mm-inventory-format-enum",
        migration,
        _all(_del("spec.mailboxes"), _set("spec.inventoryRef", {"name": "inv", "format": "yaml"})),
        ('spec.inventoryRef.format: Unsupported value: "yaml"',),
    ),
    Case(
        "mm-import-since-not-a-date",
        migration,
        _set("spec.importSince", "last year"),
        ('spec.importSince: Invalid value: "last year"', "date"),
    ),
    Case(
        "mm-worker-quantity",
        migration,
        _set("spec.worker", {"resources": {"limits": {"memory": "lots"}}}),
        ("spec.worker.resources.limits.memory: Invalid value",),
    ),
    Case(
        "mm-immutable-source-host",
        migration,
        _set("spec.source.host", "imap.other.example.net"),
        ("spec.source.host: Invalid value", "host is immutable"),
        mode="update",
    ),
    Case(
        "mm-immutable-destination-host",
        migration,
        _set("spec.destination.host", "imap.other.example.org"),
        ("spec.destination.host: Invalid value", "host is immutable"),
        mode="update",
    ),
    Case(
        "mm-duplicate-mailbox",
        migration,
        _set("spec.mailboxes", [{"source": "alice@example.com"}, {"source": "alice@example.com"}]),
        ('.spec.mailboxes: duplicate entries for key [source="alice@example.com"]',),
    ),
    Case(
        "mm-contacts-without-groupware",
        migration,
        _set("spec.content", ["mail", "contacts"]),
        ("spec.groupware", "groupware is required when content includes contacts or calendars"),
    ),
    Case(
        "mm-content-unknown-kind",
        migration,
        _set("spec.content", ["mail", "tasks"]),
        ("spec.content[1]: Unsupported value",),
    ),
    Case(
        "mm-groupware-dav-without-url",
        migration,
        _all(
            _set("spec.content", ["calendars"]),
            _set(
                "spec.groupware",
                {"source": {"type": "dav"}, "destination": {"url": "https://dav.example.org/"}},
            ),
        ),
        ("url is required for type dav",),
    ),
    Case(
        "mm-groupware-foreign-secret",
        migration,
        _set(
            "spec.groupware",
            {
                "source": {"url": "https://dav.example.net/", "auth": {"secretRef": {"name": "other"}}},
                "destination": {"url": "https://dav.example.org/"},
            },
        ),
        ("groupware.source.auth.secretRef must name the source's Secret",),
    ),
    Case(
        "mm-complete-cannot-be-unset",
        lambda: {**migration(), "spec": {**migration()["spec"], "complete": True}},
        _set("spec.complete", False),
        ("spec.complete: Invalid value", "complete cannot be unset once set"),
        mode="update",
    ),
    Case(
        "mm-status-unknown-phase",
        migration,
        _set("status.phase", "Done"),
        ('status.phase: Unsupported value: "Done"', '"Validating"'),
        mode="status",
    ),
    Case(
        "mm-status-condition-bad-status",
        migration,
        _set(
            "status.conditions",
            [
                {
                    "type": "Ready",
                    "status": "Yes",
                    "reason": "Ok",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        ),
        ('status.conditions[0].status: Unsupported value: "Yes"',),
        mode="status",
    ),
    # --- MailboxSync ---
    # The CEL rules hold on an object stored without defaults (absent auth.method means password,
    # absent groupware type means dav), and the object without them is itself accepted.
    Case(
        "mbs-xoauth2-without-oauth2",
        sparse_mailbox_sync,
        _set("spec.source.endpoint.auth.method", "xoauth2"),
        ("spec.source.endpoint.auth.oauth2", "auth.oauth2 is required when auth.method is xoauth2"),
    ),
    Case(
        "mbs-groupware-dav-without-url",
        sparse_mailbox_sync,
        _set(
            "spec.groupware",
            {"source": {"url": "https://dav.example.net/"}, "destination": {"tlsVerify": True}},
        ),
        ("url is required for type dav",),
    ),
    Case(
        "mbs-missing-username",
        mailbox_sync,
        _del("spec.source.username"),
        ("spec.source.username: Required value",),
    ),
    Case(
        "mbs-immutable-host",
        mailbox_sync,
        _set("spec.source.endpoint.host", "imap.elsewhere.example.net"),
        ("spec.source.endpoint.host: Invalid value", "host is immutable"),
        mode="update",
    ),
    Case(
        "mbs-status-unknown-phase",
        mailbox_sync,
        _set("status.phase", "Copying"),
        ('status.phase: Unsupported value: "Copying"',),
        mode="status",
    ),
    Case(
        "mbs-status-negative-last-uid",
        mailbox_sync,
        _set("status.folders", [{"name": "INBOX", "lastUid": -1}]),
        ("status.folders[0].lastUid: Invalid value: -1",),
        mode="status",
    ),
    # --- DnsCutover ---
    Case("dnsc-missing-domain", cutover, _del("spec.domain"), ("spec.domain: Required value",)),
    Case(
        "dnsc-malformed-domain",
        cutover,
        _set("spec.domain", "Example..com"),
        ('spec.domain: Invalid value: "Example..com"', "should match"),
    ),
    Case(
        "dnsc-mx-without-priority",
        cutover,
        _del("spec.records.mx.0.priority"),
        ("spec.records.mx[0].priority: Required value",),
    ),
    Case(
        "dnsc-no-mx",
        cutover,
        _set("spec.records.mx", []),
        ("spec.records.mx: Invalid value", "at least 1 items"),
    ),
    Case(
        "dnsc-unknown-target-phase",
        cutover,
        _set("spec.targetPhase", "Done"),
        (
            'spec.targetPhase: Unsupported value: "Done"',
            '"Planned", "TTLLowered", "Staged", "Switched", "Enforced"',
        ),
    ),
    Case(
        "dnsc-duplicate-gate-name",
        cutover,
        _set(
            "spec.gates.enforced",
            [
                {"name": "soak", "type": "minDuration", "duration": "1h"},
                {"name": "soak", "type": "manualApproval"},
            ],
        ),
        ('.spec.gates.enforced: duplicate entries for key [name="soak"]',),
    ),
    Case(
        "dnsc-duplicate-mx",
        cutover,
        _set(
            "spec.records.mx",
            [{"host": "mx.example.org", "priority": 10}, {"host": "mx.example.org", "priority": 20}],
        ),
        ('.spec.records.mx: duplicate entries for key [host="mx.example.org"]',),
    ),
    Case(
        "dnsc-dmarc-stages-reversed",
        cutover,
        _set("spec.records.dmarc", {"stages": [{"policy": "reject"}, {"policy": "none"}]}),
        ("spec.records.dmarc.stages: Invalid value", "DMARC stages must not weaken"),
    ),
    Case(
        "dnsc-dmarc-policy-enum",
        cutover,
        _set("spec.records.dmarc", {"stages": [{"policy": "block"}]}),
        ('spec.records.dmarc.stages[0].policy: Unsupported value: "block"',),
    ),
    Case(
        "dnsc-immutable-domain",
        cutover,
        _set("spec.domain", "example.org"),
        ("spec.domain: Invalid value", "domain is immutable"),
        mode="update",
    ),
    Case(
        "dnsc-provider-type-enum",
        cutover,
        _set("spec.provider.type", "godaddy"),
        ('spec.provider.type: Unsupported value: "godaddy"',),
    ),
    Case(
        "dnsc-provider-block-missing",
        cutover,
        _del("spec.provider.powerdns"),
        ("spec.provider.powerdns: Invalid value", "provider.powerdns is required when type is powerdns"),
    ),
    Case(
        "dnsc-provider-secret-missing",
        cutover,
        _del("spec.provider.secretRef"),
        ("spec.provider.secretRef: Invalid value", "provider.secretRef is required"),
    ),
    Case(
        "dnsc-gate-type-enum",
        cutover,
        _set("spec.gates.enforced.0.type", "coinFlip"),
        ('spec.gates.enforced[0].type: Unsupported value: "coinFlip"',),
    ),
    Case(
        "dnsc-prometheus-gate-without-query",
        cutover,
        _set("spec.gates.enforced.0.type", "prometheus"),
        ("spec.gates.enforced[0].prometheus: Invalid value", "prometheus is required for a prometheus gate"),
    ),
    Case(
        "dnsc-min-duration-gate-without-duration",
        cutover,
        _del("spec.gates.enforced.0.duration"),
        ("spec.gates.enforced[0].duration: Invalid value", "duration is required for a minDuration gate"),
    ),
    Case(
        "dnsc-gate-bad-duration",
        cutover,
        _set("spec.gates.enforced.0.duration", "1 week"),
        ('spec.gates.enforced[0].duration: Invalid value: "1 week"',),
    ),
    Case(
        "dnsc-prometheus-without-threshold",
        cutover,
        _set(
            "spec.gates.enforced.0",
            {
                "name": "bounces",
                "type": "prometheus",
                "prometheus": {"address": "http://127.0.0.1:9090", "query": "up"},
            },
        ),
        ("spec.gates.enforced[0].prometheus.thresholdRange: Required value",),
    ),
    Case(
        "dnsc-ttl-lowered-above-normal",
        cutover,
        _set("spec.ttl", {"lowered": 7200, "normal": 3600}),
        ("spec.ttl.lowered: Invalid value", "ttl.lowered must not exceed ttl.normal"),
    ),
    Case(
        "dnsc-dkim-cname-without-target",
        cutover,
        _set("spec.records.dkim", {"selectors": [{"name": "s1", "source": "cname"}]}),
        ("spec.records.dkim.selectors[0].cnameTarget: Invalid value", "cnameTarget is required"),
    ),
    # --- rules added for issue 7 (bad input): the schema refuses what it can express
    Case(
        "mm-max-concurrent-jobs-zero",
        migration,
        _set("spec.maxConcurrentJobs", 0),
        ("spec.maxConcurrentJobs: Invalid value: 0", "greater than or equal to 1"),
    ),
    Case(
        "dnsc-migrationref-other-namespace",
        cutover,
        _set("spec.migrationRef", {"name": "mail", "namespace": "other"}),
        ("spec.migrationRef.namespace", "field not declared in schema"),
    ),
    Case(
        "dnsc-dmarc-rua-injection",
        cutover,
        _set("spec.records.dmarc", {"rua": ["dmarc@example.com; p=none"]}),
        ("spec.records.dmarc.rua[0]: Invalid value", "should match"),
    ),
    Case(
        "dnsc-tlsrpt-rua-two-in-one",
        cutover,
        _set("spec.records.tlsRpt", {"rua": ["a@example.com,b@example.com"]}),
        ("spec.records.tlsRpt.rua[0]: Invalid value", "should match"),
    ),
    Case(
        "dnsc-spf-include-and-remove",
        cutover,
        _set(
            "spec.records.spf", {"include": ["spf.new.example.org"], "removeInclude": ["spf.new.example.org"]}
        ),
        (
            "spec.records.spf.removeInclude: Invalid value",
            "a host cannot be in both include and removeInclude",
        ),
    ),
    Case(
        "dnsc-gate-nameserver-not-host-port",
        cutover,
        _set(
            "spec.gates.enforced.0",
            {"name": "ns", "type": "dnsRecord", "dnsRecord": {"nameservers": ["127.0.0.1:domain"]}},
        ),
        ("spec.gates.enforced[0].dnsRecord.nameservers[0]: Invalid value", "should match"),
    ),
    Case(
        "dnsc-tsig-key-name",
        cutover,
        _set(
            "spec.provider",
            {"type": "rfc2136", "rfc2136": {"server": "127.0.0.1", "tsigKeyName": "my key"}},
        ),
        ("spec.provider.rfc2136.tsigKeyName: Invalid value", "should match"),
    ),
    Case(
        "dnsc-mtasts-mx-line-break",
        cutover,
        _set("spec.records.mtaSts", {"mx": ["mx.example.org\nmode: none"]}),
        ("spec.records.mtaSts.mx[0]: Invalid value", "should match"),
    ),
    Case(
        "dnsc-powerdns-server-id-path",
        cutover,
        _set("spec.provider.powerdns.serverId", "../../servers/other"),
        ("spec.provider.powerdns.serverId: Invalid value", "should match"),
    ),
    # --- issue 14 (a tenant gets no more than it had): refused at admission, not stuck later
    Case(
        "mm-name-longer-than-a-label-value",
        migration,
        _set("metadata.name", "m" * 100),
        ("metadata.name must be at most 63 characters", "label value"),
    ),
    Case(
        "dnsc-name-longer-than-a-label-value",
        cutover,
        _set("metadata.name", "d" * 64),
        ("metadata.name must be at most 63 characters",),
    ),
    Case(
        "mm-folder-selection-too-large",
        migration,
        _set("spec.folders", {"include": ["x" * 1000] * 9}),  # 0.9 MB were copied into every MailboxSync
        ("spec.folders: Invalid value", "must stay within 8192 characters"),
    ),
    Case(
        "mbs-folder-selection-too-large",
        mailbox_sync,
        _set(
            "spec.folders",
            {"exclude": ["y" * 1000] * 5, "mappings": [{"from": "a" * 1000, "to": "b" * 1000}] * 2},
        ),
        ("spec.folders: Invalid value", "must stay within 8192 characters"),
    ),
    Case(
        "mm-folder-pattern-too-long",
        migration,
        _set("spec.folders", {"include": ["x" * 1025]}),
        ("spec.folders.include[0]: Too long",),
    ),
    Case(
        "dnsc-status-unknown-phase",
        cutover,
        _set("status.phase", "Finished"),
        ('status.phase: Unsupported value: "Finished"',),
        mode="status",
    ),
]


def test_enough_cases() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


def _apply(kube: KubeAPI, namespace: str, obj: Obj) -> Any:
    return kube.kubectl(
        "apply",
        "--server-side",
        "--field-manager=test",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(obj),
        check=False,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_resource_rejected(kube: KubeAPI, namespace: str, case: Case) -> None:
    valid = case.base()
    bad = copy.deepcopy(valid)
    case.change(bad)
    if case.mode in ("update", "status"):
        created = _apply(kube, namespace, valid)
        assert created.returncode == 0, created.stderr
    if case.mode == "status":
        kind = valid["kind"].lower()
        cp = kube.kubectl(
            "patch",
            kind,
            valid["metadata"]["name"],
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": bad["status"]}),
            check=False,
        )
    else:
        cp = _apply(kube, namespace, bad)
    assert cp.returncode != 0, f"accepted: {bad}"
    for expected in case.expect:
        assert expected in cp.stderr, f"{expected!r} not in:\n{cp.stderr}"
    if case.mode == "create":
        # The valid object is accepted, so the case tests exactly the one change.
        ok = _apply(kube, namespace, valid)
        assert ok.returncode == 0, ok.stderr
