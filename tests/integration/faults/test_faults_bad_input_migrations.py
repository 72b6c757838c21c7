"""30 semantically wrong MailMigrations (the schema accepts every one) against the running operator
(`mailferry-operator` as a process, real API server, real Dovecots): each ends with a Validated condition
whose reason is asserted and whose message names the field or object to fix; nothing is copied for the
refused ones; the operator stays up (liveness answers), its RSS stays bounded, and a good migration
created after all of them validates. The table of results is printed (`-s`) for docs/reliability.md."""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fixtures._proc import free_port
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demolib as d

pytestmark = pytest.mark.timeout(600)

Obj = dict[str, Any]
RSS_GROWTH_LIMIT_MB = 150  # peak RSS during the run minus RSS before the bad input


@dataclass
class Case:
    name: str  # the MailMigration's name
    input: str  # what is wrong, for the table
    status: str  # Validated status expected
    reasons: set[str]
    words: tuple[str, ...]  # substrings of the condition message
    spec: dict[str, Any] = field(default_factory=dict)
    extra: list[Obj] = field(default_factory=list)  # objects created before the migration
    user: str | None = None  # its own mailbox: a migration that validates starts copying, and two
    # migrations copying into one mailbox conflict (MailboxConflict, tested below)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _secret(name: str, ns: str, data: dict[str, bytes], type_: str = "Opaque", consent: bool = True) -> Obj:
    labels = {"mailferry.io/credentials": "true"} if consent else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "type": type_,
        "data": {k: _b64(v) for k, v in data.items()},
    }


def _configmap(
    name: str, ns: str, text: str | None = None, binary: bytes | None = None, key: str = "mailboxes"
) -> Obj:
    cm: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}}
    if text is not None:
        cm["data"] = {key: text}
    if binary is not None:
        cm["binaryData"] = {key: _b64(binary)}
    return cm


def _cases(ns: str, pair: DovecotPair, user: str, pw: str, spare: list[str]) -> list[Case]:
    src, dst = pair.source, pair.destination
    key = user.replace("@", "_")
    latin1 = "source,destination\n" + "".join(
        f"m\xfcller{i}@old.test,m\xfcller{i}@new.test\n" for i in range(10_000)
    )
    big_object = json.dumps({f"user{i}@old.test": f"user{i}@new.test" for i in range(20_000)})
    same = {
        "host": "127.0.0.1",
        "port": src.port,
        "security": "none",
        "auth": {"method": "password", "secretRef": {"name": "good"}},
    }
    return [
        # --- copying onto itself
        Case(
            "self-copy",
            "source == destination (same host:port, same login)",
            "False",
            {"SourceIsDestination"},
            ("copied onto itself", f"127.0.0.1:{src.port}", user),
            {"destination": same},
        ),
        Case(
            "self-copy-alias",
            "destination `localhost`, source `127.0.0.1`, same port and login",
            "False",
            {"SourceIsDestination"},
            ("copied onto itself", "localhost"),
            {"destination": {**same, "host": "localhost"}},
        ),
        # --- spec fields the schema cannot judge
        Case(
            "mapping-regex",
            "folder mapping `from` that does not compile",
            "False",
            {"InvalidFolderMapping"},
            ("spec.folders.mappings[0].from", "not a valid RE2 regular expression"),
            {"folders": {"mappings": [{"from": "Archive/([0-9", "to": "Old"}]}},
        ),
        Case(
            "mapping-group",
            "mapping `to` refers to a group `from` lacks",
            "False",
            {"InvalidFolderMapping"},
            ("spec.folders.mappings[0].to", "has 2 group"),
            {"folders": {"mappings": [{"from": "^(A)/(.*)$", "to": "B/\\3"}]}},
        ),
        Case(
            "mapping-two-into-one",
            "two mappings into one destination folder",
            "False",
            {"FolderMappingConflict"},
            ("mappings[0] and spec.folders.mappings[1]", "'Archive'"),
            {
                "folders": {
                    "mappings": [{"from": "^Old$", "to": "Archive"}, {"from": "^Older$", "to": "Archive"}]
                }
            },
        ),
        Case(
            "delta-zero",
            "deltaInterval 0s",
            "False",
            {"InvalidSpec"},
            ("spec.deltaInterval 0s", "minimum"),
            {"deltaInterval": "0s"},
        ),
        Case(
            "import-future",
            "importSince in the future",
            "False",
            {"InvalidSpec"},
            ("spec.importSince 2099-01-01 is in the future",),
            {"importSince": "2099-01-01"},
        ),
        # --- inline mailboxes
        Case(
            "case-duplicate",
            "inline mailbox twice, different case",
            "True",
            {"InventoryRowsSkipped"},
            ("1 inventory row(s) skipped", "spec.mailboxes[1]", "duplicate source"),
            {"mailboxes": [{"source": spare[0]}, {"source": spare[0].upper()}]},
            user=spare[0],
        ),
        Case(
            "two-into-one-mailbox",
            "two sources into one destination mailbox",
            "True",
            {"InventoryRowsSkipped"},
            ("spec.mailboxes[1]", "duplicate destination"),
            {"mailboxes": [{"source": spare[1]}, {"source": f"other@{ns}.test", "destination": spare[1]}]},
            user=spare[1],
        ),
        Case(
            "login-not-email",
            "login `alice@localhost` (no domain dot)",
            "False",
            {"NoMailboxes"},
            ("spec.mailboxes[0]", "'alice@localhost' is not a mailbox address"),
            {"mailboxes": [{"source": "alice@localhost"}]},
        ),
        Case(
            "non-ascii-login",
            "non-ASCII login without secretKey",
            "False",
            {"NoMailboxes"},
            ("spec.mailboxes[0]", "is not a valid Secret key"),
            {"mailboxes": [{"source": "m\xfcller@example.test"}]},
        ),
        # --- inventories
        Case(
            "csv-password-column",
            "CSV with a password column",
            "False",
            {"InventoryInvalid"},
            ("ConfigMap inv-pw key mailboxes", "column 2 'password'", "passwords do not belong"),
            {"inventoryRef": {"name": "inv-pw"}},
            [_configmap("inv-pw", ns, f"email,password\n{user},hunter2\n")],
        ),
        Case(
            "csv-headerless-password",
            "CSV without header, passwords in column 2",
            "False",
            {"NoMailboxes"},
            ("line 1", "give the CSV a header"),
            {"inventoryRef": {"name": "inv-pw2"}},
            [_configmap("inv-pw2", ns, f"{user},hunter2\n")],
        ),
        Case(
            "csv-unknown-header",
            "CSV with unknown header columns",
            "False",
            {"InventoryInvalid"},
            ("column 1 'Name' is not one of source, destination, secretKey",),
            {"inventoryRef": {"name": "inv-hdr"}},
            [_configmap("inv-hdr", ns, f"Name,Email\nGood,{user}\n")],
        ),
        Case(
            "csv-bom",
            "CSV with a UTF-8 BOM and a header (works)",
            "True",
            {"AllMailboxesReachable"},
            ("1 mailboxes",),
            {"inventoryRef": {"name": "inv-bom"}},
            [_configmap("inv-bom", ns, f"\ufeffsource,destination\n{spare[2]},{spare[2]}\n")],
            user=spare[2],
        ),
        Case(
            "csv-latin1",
            "10,000-row CSV in Latin-1 (kubectl puts it in binaryData)",
            "False",
            {"InventoryInvalid"},
            ("not UTF-8", "Latin-1"),
            {"inventoryRef": {"name": "inv-latin1"}},
            [_configmap("inv-latin1", ns, binary=latin1.encode("latin-1"))],
        ),
        Case(
            "binary",
            "binary data (PNG header) as the inventory",
            "False",
            {"InventoryInvalid"},
            ("binary data",),
            {"inventoryRef": {"name": "inv-png"}},
            [_configmap("inv-png", ns, binary=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")],
        ),
        Case(
            "nul-bytes",
            "UTF-8 text with NUL bytes",
            "False",
            {"InventoryInvalid"},
            ("NUL bytes",),
            {"inventoryRef": {"name": "inv-nul"}},
            [_configmap("inv-nul", ns, binary=f"{user}\x00\x00\n".encode())],
        ),
        Case(
            "json-not-a-list",
            "JSON object of 20,000 pairs instead of a list",
            "False",
            {"InventoryInvalid"},
            ("JSON inventory is an object, not a list",),
            {"inventoryRef": {"name": "inv-obj"}},
            [_configmap("inv-obj", ns, big_object)],
        ),
        Case(
            "json-truncated",
            "truncated JSON",
            "False",
            {"InventoryInvalid"},
            ("JSON could not be read", "line 1"),
            {"inventoryRef": {"name": "inv-trunc", "format": "json"}},
            [_configmap("inv-trunc", ns, f'[{{"source": "{user}"')],
        ),
        Case(
            "inventory-key-missing",
            "inventoryRef key not in the ConfigMap",
            "False",
            {"InventoryNotFound"},
            ("has no key mailboxes (spec.inventoryRef.key)", "its keys: users.csv"),
            {"inventoryRef": {"name": "inv-key"}},
            [_configmap("inv-key", ns, f"{user}\n", key="users.csv")],
        ),
        Case(
            "inventory-empty",
            "inventory key present but empty",
            "False",
            {"InventoryInvalid"},
            ("is empty",),
            {"inventoryRef": {"name": "inv-empty"}},
            [_configmap("inv-empty", ns, "\n")],
        ),
        # --- Secrets
        Case(
            "secret-wrong-type",
            "kubernetes.io/basic-auth Secret (username/password keys)",
            "False",
            {"SecretKeyMissing"},
            (f"Secret basic has no key {key}", "kubernetes.io/basic-auth"),
            {"source": {"secret": "basic"}},
            [
                _secret(
                    "basic",
                    ns,
                    {"username": user.encode(), "password": pw.encode()},
                    "kubernetes.io/basic-auth",
                )
            ],
        ),
        Case(
            "master-key-missing",
            "master-user auth, Secret without master-username",
            "False",
            {"SecretKeyMissing"},
            ("source Secret good has no key master-username (spec.source.auth.masterUserKey)",),
            {"source": {"method": "master-user"}},
        ),
        Case(
            "xoauth2-token-missing",
            "xoauth2 (static), Secret without the token key",
            "False",
            {"SecretKeyMissing"},
            ("destination Secret good has no key token (spec.destination.auth.oauth2.tokenKey)",),
            {"destination": {"method": "xoauth2", "oauth2": {"provider": "static"}}},
        ),
        Case(
            "secret-value-empty",
            "password key present, value empty",
            "False",
            {"SecretValueEmpty"},
            (f"Secret empty key {key}", "is empty"),
            {"source": {"secret": "empty"}},
            [_secret("empty", ns, {key: b""})],
        ),
        Case(
            "secret-not-utf8",
            "password value that is not UTF-8",
            "False",
            {"SecretValueInvalid"},
            (f"Secret latin key {key}", "not UTF-8"),
            {"source": {"secret": "latin"}},
            [_secret("latin", ns, {key: b"p\xe4ssword"})],
        ),
        Case(
            "secret-trailing-newline",
            "password with a trailing newline (works: stripped, as the worker does)",
            "True",
            {"AllMailboxesReachable"},
            ("1 mailboxes",),
            {"source": {"secret": "newline"}, "destination": {"secret": "newline"}},
            [_secret("newline", ns, {spare[3].replace("@", "_"): (pw + "\n").encode()})],
            user=spare[3],
        ),
        Case(
            "wrong-password",
            "wrong destination password",
            "False",
            {"NoMailboxReachable"},
            ("AuthenticationFailed", user),
            {"destination": {"secret": "wrongpw"}},
            [_secret("wrongpw", ns, {key: b"not-the-password"})],
        ),
        # --- servers
        Case(
            "endpoint-closed",
            "destination port with nothing listening",
            "False",
            {"NoMailboxReachable"},
            ("ConnectionFailed",),
            {"destination": {"port": free_port()}},
        ),
        Case(
            "host-unresolvable",
            "source host that does not resolve",
            "False",
            {"NoMailboxReachable"},
            ("ConnectionFailed", "(source)"),
            {"source": {"host": "imap.does-not-exist.invalid"}},
        ),
        Case(
            "tls-on-plain-port",
            "security tls on the plain IMAP port",
            "False",
            {"NoMailboxReachable"},
            ("(destination)",),
            {"destination": {"security": "tls", "connectTimeoutSeconds": 5, "readTimeoutSeconds": 5}},
        ),
        Case(
            "tls-self-signed",
            "tlsVerify on against a self-signed certificate",
            "False",
            {"NoMailboxReachable"},
            ("TLS",),
            {"destination": {"security": "tls", "port": dst.tls_port, "connectTimeoutSeconds": 5}},
        ),
    ]


def _manifest(case: Case, ns: str, pair: DovecotPair, user: str) -> Obj:
    m = d.migration_manifest(case.name, ns, pair.source, pair.destination, mailboxes=[case.user or user])
    spec = m["spec"]
    for side in ("source", "destination"):
        spec[side]["auth"]["secretRef"]["name"] = "good"
    for k, v in case.spec.items():
        if k in ("source", "destination"):
            v = dict(v)
            auth = spec[k]["auth"]
            if "secret" in v:
                auth["secretRef"]["name"] = v.pop("secret")
            if "method" in v:
                auth["method"] = v.pop("method")
            if "oauth2" in v:
                auth["oauth2"] = v.pop("oauth2")
            if "auth" in v:
                spec[k] = v
            else:
                spec[k].update(v)
        elif k == "inventoryRef":
            spec.pop("mailboxes", None)
            spec["inventoryRef"] = v
        else:
            spec[k] = v
    return m


def test_thirty_semantically_bad_migrations(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, operator: d.OperatorProcess
) -> None:
    ns = namespace
    user, pw = f"good@{ns}.test", "pw-good-" + ns
    spare = [f"good{i}@{ns}.test" for i in range(1, 6)]
    for address in [user, *spare]:
        dovecot_pair.source.add_user(address, pw)
        dovecot_pair.destination.add_user(address, pw)
    cases = _cases(ns, dovecot_pair, user, pw, spare)
    assert len(cases) >= 30 and len({c.name for c in cases}) == len(cases)
    keys = {a.replace("@", "_"): pw.encode() for a in [user, *spare]}
    d.apply(kube, _secret("good", ns, keys), verb=("create",))
    time.sleep(2)  # the operator has started its watches
    rss_before, _ = operator.memory_mb()
    extra = [o for c in cases for o in c.extra]
    d.apply(kube, *extra, verb=("create",))
    d.apply(kube, *(_manifest(c, ns, dovecot_pair, user) for c in cases), verb=("create",))
    t0 = time.monotonic()

    results: dict[str, dict[str, Any]] = {}

    def settled() -> bool:
        items = d.get(kube, "mailmigrations.mailferry.io", ns)["items"]
        for item in items:
            c = d.condition(item, "Validated")
            if c and c.get("reason") not in (None, "InProgress") and c["status"] in ("True", "False"):
                results[item["metadata"]["name"]] = c
        return all(c.name in results for c in cases)

    try:
        d.wait_for(settled, 240, "a Validated condition on every bad MailMigration")
    finally:
        missing = [c.name for c in cases if c.name not in results]
        if missing:
            print(f"no settled Validated condition: {missing}")
    elapsed = time.monotonic() - t0
    failures = []
    print("\n| # | input | Validated | reason | message |\n|---|---|---|---|---|")
    for i, c in enumerate(cases, 1):
        got = results[c.name]
        message = got.get("message", "")
        print(f"| {i} | {c.input} | {got['status']} | `{got['reason']}` | {message[:230]} |")
        if (
            got["status"] != c.status
            or got["reason"] not in c.reasons
            or not all(w in message for w in c.words)
        ):
            failures.append((c.name, got))
    print(f"\nall {len(cases)} settled {elapsed:.1f}s after creation")
    assert not failures, failures
    for c in cases:
        if c.status == "False":
            assert not d.worker_jobs(kube, ns, c.name), f"{c.name}: a Job was created"
    for name in ("self-copy", "self-copy-alias", "mapping-regex", "csv-password-column"):
        syncs = d.get(kube, "mailboxsyncs.mailferry.io", ns, selector=f"mailferry.io/migration={name}")[
            "items"
        ]
        assert not syncs, f"{name}: MailboxSyncs were created for a refused migration"
    for name in ("csv-password-column", "csv-headerless-password"):  # the password column is never echoed
        assert "hunter2" not in json.dumps(d.migration(kube, ns, name).get("status"))

    # the operator is up, bounded, and still does its job
    assert operator.alive(), "the operator died"
    rss_after, hwm = operator.memory_mb()
    print(f"operator RSS before {rss_before:.0f} MB, after {rss_after:.0f} MB, peak {hwm:.0f} MB")
    assert hwm - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, hwm)
    d.apply(kube, _manifest(Case("good-after", "", "", set(), (), user=spare[4]), ns, dovecot_pair, user))
    ok = d.wait_for(
        lambda: (
            (c := d.condition(d.migration(kube, ns, "good-after"), "Validated"))
            and c["status"] == "True"
            and c
        ),
        90,
        "the good migration created after the bad ones validates",
    )
    print(f"good-after: Validated=True reason={ok['reason']}")
    assert ok["reason"] == "AllMailboxesReachable"
    assert operator.alive()
    assert "Traceback" not in operator.log.read_text(errors="replace")


def test_two_migrations_into_one_mailbox(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, operator: d.OperatorProcess
) -> None:
    """A second MailMigration writing into a mailbox an older one is copying into is refused
    (MailboxConflict) until the older one is gone; one for another mailbox is not affected."""
    ns = namespace
    pw = "pw-twice-" + ns
    shared, alone = f"twice@{ns}.test", f"alone@{ns}.test"
    for address in (shared, alone):
        dovecot_pair.source.add_user(address, pw)
        dovecot_pair.destination.add_user(address, pw)
    d.apply(kube, _secret("good", ns, {a.replace("@", "_"): pw.encode() for a in (shared, alone)}))
    first = Case("first", "", "", set(), (), user=shared)
    d.apply(kube, _manifest(first, ns, dovecot_pair, shared))
    # no job runner here: its Jobs never finish, so it stays Syncing (copying) for the whole test
    d.wait_for(
        lambda: d.migration(kube, ns, "first").get("status", {}).get("phase") == "Syncing",
        90,
        "first Syncing",
    )
    time.sleep(1.1)  # creationTimestamp has a one-second resolution: the second one is younger
    d.apply(
        kube,
        _manifest(Case("second", "", "", set(), (), user=shared), ns, dovecot_pair, shared),
        _manifest(Case("other-mailbox", "", "", set(), (), user=alone), ns, dovecot_pair, alone),
    )

    def validated(name: str, status: str) -> dict[str, Any] | None:
        c = d.condition(d.migration(kube, ns, name), "Validated")
        return c if c and c["status"] == status and c.get("reason") != "InProgress" else None

    c = d.wait_for(lambda: validated("second", "False"), 90, "second: Validated=False")
    print(f"second: Validated=False reason={c['reason']} message={c['message']!r}")
    assert c["reason"] == "MailboxConflict", c
    assert f"MailMigration {ns}/first (older, copying) already copies into {shared}" in c["message"]
    assert not d.worker_jobs(kube, ns, "second")
    assert d.wait_for(lambda: validated("other-mailbox", "True"), 90, "other-mailbox validates")
    kube.kubectl("delete", "mailmigration", "first", "-n", ns, "--wait=true", "--timeout=60s")
    c = d.wait_for(lambda: validated("second", "True"), 120, "second validates once first is gone")
    print(f"second: Validated=True reason={c['reason']} once first was deleted")
    assert operator.alive()
