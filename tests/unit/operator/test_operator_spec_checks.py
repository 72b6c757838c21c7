"""Pure MailMigration checks beyond the schema (migration/spec_checks.py) and the inventory's
whole-file problems (migration/inventory.py): each bad input gets a reason and a message naming the field."""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

import pytest

from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec
from mailferry_operator.mailmigration import inventory as inv
from mailferry_operator.mailmigration import spec_checks as sc


def _spec(**extra: Any) -> MailMigrationSpec:
    def ep(host: str, port: int = 993, **auth: Any) -> dict[str, Any]:
        return {"host": host, "port": port, "auth": {"secretRef": {"name": "creds"}, **auth}}

    body: dict[str, Any] = {
        "source": ep("imap.old.test"),
        "destination": ep("imap.new.test"),
        "mailboxes": [{"source": "a@x.test"}],
    }
    body.update(extra)
    return MailMigrationSpec.model_validate(body)


TODAY = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("mappings", "reason", "words"),
    [
        ([{"from": "([", "to": "x"}], "InvalidFolderMapping", ("mappings[0].from", "regular expression")),
        ([{"from": "^(A)$", "to": "B/\\2"}], "InvalidFolderMapping", ("mappings[0].to", "1 group")),
        ([{"from": "^(?P<n>A)$", "to": "\\g<m>"}], "InvalidFolderMapping", ("group",)),
        (
            [{"from": "^Old$", "to": "Archive"}, {"from": "^Older$", "to": "Archive/"}],
            "FolderMappingConflict",
            ("mappings[0] and spec.folders.mappings[1]", "'Archive/'"),
        ),
    ],
    ids=["regex", "group-number", "group-name", "two-into-one"],
)
def test_bad_folder_mappings(mappings: list[dict[str, str]], reason: str, words: tuple[str, ...]) -> None:
    problem = sc.spec_problem(_spec(folders={"mappings": mappings}), TODAY)
    assert problem is not None and problem.reason == reason, problem
    for w in words:
        assert w in problem.message, problem.message


def test_good_folder_mappings_pass() -> None:
    mappings = [
        {"from": "^(?P<y>20[0-9]{2})/(.*)$", "to": "Archive/\\g<y>/\\2"},
        {"from": "^Sent Items$", "to": "Sent"},
        {"from": "^Old/", "to": ""},
    ]
    assert sc.spec_problem(_spec(folders={"mappings": mappings}), TODAY) is None


def test_delta_interval_floor_and_import_since_in_the_future() -> None:
    p = sc.spec_problem(_spec(deltaInterval="0s"), TODAY)
    assert p is not None and p.reason == "InvalidSpec" and "spec.deltaInterval 0s" in p.message
    assert sc.spec_problem(_spec(deltaInterval="500ms"), TODAY) is not None
    assert sc.spec_problem(_spec(deltaInterval="5s"), TODAY) is None
    p = sc.spec_problem(_spec(importSince="2062-01-01"), TODAY)
    assert p is not None and "spec.importSince 2062-01-01 is in the future" in p.message
    assert sc.spec_problem(_spec(importSince="2026-11-25"), TODAY) is None


def test_source_equals_destination() -> None:
    spec = _spec(destination={"host": "IMAP.OLD.TEST", "port": 993, "auth": {"secretRef": {"name": "c"}}})
    same = sc.same_server(spec.source, spec.destination, [], [])
    assert same
    entries = [MailboxEntry(source="a@x.test"), MailboxEntry(source="b@x.test", destination="B@X.TEST")]
    p = sc.self_copy_problem(spec, entries, same)
    assert p is not None and p.reason == "SourceIsDestination"
    assert "a@x.test and 1 more would be copied onto itself" in p.message
    # on one server, different logins are fine (consolidating accounts)
    assert sc.self_copy_problem(spec, [MailboxEntry(source="a@x.test", destination="c@x.test")], same) is None
    # different names, one address; different ports are different servers
    other = _spec(destination={"host": "localhost", "port": 993, "auth": {"secretRef": {"name": "c"}}})
    assert sc.same_server(other.source, other.destination, ["127.0.0.1"], ["127.0.0.1", "::1"])
    assert not sc.same_server(other.source, other.destination, ["127.0.0.1"], ["10.0.0.1"])
    port = _spec(destination={"host": "imap.old.test", "port": 143, "auth": {"secretRef": {"name": "c"}}})
    assert not sc.same_server(port.source, port.destination, ["127.0.0.1"], ["127.0.0.1"])


def _b64(v: bytes) -> str:
    return base64.b64encode(v).decode()


def test_secret_values_trailing_newline_and_not_utf8() -> None:
    values, not_text = sc.decode_values({"a": _b64(b"pw\n"), "b": _b64(b"pw\r\n"), "c": _b64(b"\xff\xfe")})
    assert values == {"a": "pw", "b": "pw"} and not_text == ["c"]


def test_endpoint_secret_keys() -> None:
    master = _spec(source={"host": "s.test", "auth": {"method": "master-user", "secretRef": {"name": "m"}}})
    p = sc.endpoint_secret_problem(
        "source", master.source, "kubernetes.io/basic-auth", {"username": "u", "password": "p"}, []
    )
    assert p is not None and p.reason == "SecretKeyMissing"
    assert "source Secret m has no key master-username (spec.source.auth.masterUserKey)" in p.message
    assert "kubernetes.io/basic-auth" in p.message
    p = sc.endpoint_secret_problem(
        "source", master.source, "Opaque", {"master-username": "u", "master-password": " "}, []
    )
    assert p is not None and p.reason == "SecretValueEmpty" and "master-password" in p.message
    p = sc.endpoint_secret_problem(
        "source", master.source, None, {"master-username": "u"}, ["master-password"]
    )
    assert p is not None and p.reason == "SecretValueInvalid" and "not UTF-8" in p.message
    oauth = _spec(
        destination={
            "host": "d.test",
            "auth": {"method": "xoauth2", "secretRef": {"name": "o"}, "oauth2": {"provider": "static"}},
        }
    )
    p = sc.endpoint_secret_problem("destination", oauth.destination, "Opaque", {}, [])
    assert p is not None and "spec.destination.auth.oauth2.tokenKey" in p.message
    # password auth: keys are per mailbox, nothing to check for the side as a whole
    assert sc.endpoint_secret_problem("source", oauth.source, "Opaque", {}, []) is None


# ------------------------------------------------------------------------------------ inventory
def test_csv_header_by_name_any_order_and_bom() -> None:
    parsed = inv.parse_text("\ufeffDestination,Source\nnew@y.test,old@x.test\n")
    assert parsed.problem is None and parsed.error_count == 0
    assert [(e.source, e.destination) for e in parsed.entries] == [("old@x.test", "new@y.test")]
    # a BOM before a header-less list does not become part of the first address
    parsed = inv.parse_text("\ufeffa@x.test\n")
    assert [e.source for e in parsed.entries] == ["a@x.test"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("email,password\na@x.test,hunter2\n", ("column 2 'password'", "passwords do not belong")),
        ("source,quota\na@x.test,5G\n", ("column 2 'quota' is not one of source, destination, secretKey",)),
        ("destination,secretKey\nb@y.test,k\n", ("no source column",)),
        ("source,email\na@x.test,b@x.test\n", ("source column twice",)),
        ('{"a@x.test": "b@y.test"}', ("JSON inventory is an object, not a list",)),
        ('[{"source": "a@x.test"', ("JSON could not be read", "line 1")),
        ("a@x.test\x00\x01\x02", ("NUL bytes", "binary")),
        ("  \n", ("empty",)),
    ],
    ids=[
        "password-column",
        "unknown-column",
        "no-source",
        "source-twice",
        "json-object",
        "json-truncated",
        "nul",
        "empty",
    ],
)
def test_whole_inventory_problems(text: str, words: tuple[str, ...]) -> None:
    parsed = inv.parse_text(text)
    assert parsed.problem is not None and parsed.problem[0] == "InventoryInvalid", parsed
    assert parsed.entries == []
    for w in words:
        assert w in parsed.problem[1], parsed.problem[1]
    assert "hunter2" not in parsed.problem[1] and all("hunter2" not in e.reason for e in parsed.errors)


def test_json_format_forced_on_csv_text() -> None:
    p = inv.parse_text('"a@x.test"', "json").problem
    assert p is not None and "JSON inventory is a string, not a list" in p[1]
    parsed = inv.parse_text("a@x.test,b@y.test\n", "json")
    assert parsed.problem is not None and "JSON could not be read" in parsed.problem[1]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("source\nmüller@x.test\n".encode("latin-1"), ("not UTF-8", "Latin-1")),
        ("a@x.test\n".encode("utf-16"), ("UTF-16",)),
        (b"\x1f\x8b\x08\x00rest", ("gzip",)),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ("binary data",)),
    ],
    ids=["latin-1", "utf-16", "gzip", "png"],
)
def test_binary_data_that_is_not_utf8(raw: bytes, words: tuple[str, ...]) -> None:
    decoded = inv.decode(raw)
    assert isinstance(decoded, inv.Inventory) and decoded.problem is not None
    for w in words:
        assert w in decoded.problem[1]


def test_binary_data_that_is_utf8_is_read() -> None:
    decoded = inv.decode("\ufeff# Müller\nsource\nmueller@x.test\n".encode())
    assert isinstance(decoded, str)
    assert [e.source for e in inv.parse_text(decoded).entries] == ["mueller@x.test"]


def test_control_characters_are_not_addresses() -> None:
    parsed = inv.parse_csv("a\x01b@x.test\nok@x.test\n")
    assert [e.source for e in parsed.entries] == ["ok@x.test"]
    assert "not a mailbox address" in parsed.errors[0].reason


def test_headerless_password_column_is_refused_and_never_echoed() -> None:
    parsed = inv.parse_text("alice@x.test,hunter2\nbob@x.test,my secret pw\ncarol@x.test,,pass word!\n")
    assert parsed.entries == [] and parsed.error_count == 3
    reasons = [e.reason for e in parsed.errors]
    assert "give the CSV a header" in reasons[0]
    assert "destination (value not shown) is not a mailbox address" in reasons[1]
    assert "secretKey (value not shown)" in reasons[2]
    assert not any(w in r for r in reasons for w in ("hunter2", "secret pw", "pass word"))
    # with a header that says so, a bare destination login is fine
    named = inv.parse_text("source,destination\nalice@x.test,alice\n")
    assert [(e.source, e.destination) for e in named.entries] == [("alice@x.test", "alice")]
    # and so are bare logins on both sides
    assert len(inv.parse_text("alice,alice2\n").entries) == 1
