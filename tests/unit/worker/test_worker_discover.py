"""Inventory discovery against the documented request/response shapes of the Google Admin SDK Directory
API (users.list, groups.list, members.list: nextPageToken paging) and Microsoft Graph v1.0 (/users with
proxyAddresses, mailboxSettings.userPurpose, /groups with groupTypes, @odata.nextLink paging, 429 with
Retry-After). HTTP contract tests: the only fakes allowed, for cloud APIs that cannot run here."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import respx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fixtures.directory_api import TOKEN, G
from fixtures.directory_api import google_routes as _google_routes
from fixtures.directory_api import graph_routes as _graph_routes
from mailferry_api.discover import google, graph
from mailferry_api.discover.directory import inventory_csv, recreate_report
from mailferry_api.discover.paging import DiscoveryError
from mailferry_operator.mailmigration.inventory import parse_csv
from mailferry_worker.cli import main


async def test_google_directory_pages_aliases_groups_and_suspended() -> None:
    with respx.mock(assert_all_called=True) as router:
        _google_routes(router)
        async with httpx.AsyncClient() as http:
            found = await google.discover(http, TOKEN)
    by = {a.address: a for a in found.accounts}
    assert set(by) == {"ann@old.example", "bob@old.example", "carl@old.example"}
    assert by["ann@old.example"].aliases == ("a@old.example", "ann.a@old.example")
    assert by["bob@old.example"].suspended and by["carl@old.example"].kind == "archived"
    assert found.skipped == ["nomail@old.example: no Gmail mailbox set up"]
    (sales,) = found.groups
    assert sales.members == ("ann@old.example", "partner@else.example")
    csv_text = inventory_csv(found, "new.example")
    assert "bob@old.example" not in csv_text  # suspended: reported, not migrated unless asked
    inv = parse_csv(csv_text)  # the operator reads what discovery writes
    assert [(e.source, e.destination) for e in inv.entries] == [
        ("ann@old.example", "ann@new.example"),
        ("carl@old.example", "carl@new.example"),
    ]
    report = recreate_report(found, "new.example")
    assert {"mailbox": "ann@new.example", "alias": "a@new.example"} in report["aliases"]
    assert report["groups"][0]["address"] == "sales@new.example" and report["suspended"] == [
        "bob@old.example"
    ]


async def test_graph_users_shared_rooms_aliases_groups_and_throttling() -> None:
    with respx.mock(assert_all_called=True) as router:
        calls = _graph_routes(router)
        async with httpx.AsyncClient() as http:
            found = await graph.discover(http, TOKEN)
    assert calls["users"] == 3  # one 429 answered with Retry-After, then two pages
    by = {a.address: a for a in found.accounts}
    assert set(by) == {"dan@old.example", "info@old.example", "eve@old.example", "room1@old.example"}
    assert by["dan@old.example"].aliases == ("d@old.example",)  # X500:/SIP: are not mail addresses
    assert (by["info@old.example"].kind, by["info@old.example"].suspended) == ("shared", False)
    assert (by["eve@old.example"].kind, by["eve@old.example"].suspended) == ("user", True)
    assert by["room1@old.example"].kind == "room"
    assert sorted(found.skipped) == [
        "guest_x@other.example: guest account",
        "nobox@old.example: no Exchange Online mailbox",
        "svc@old.onmicrosoft.com: no mail address (no mailbox)",
    ]
    kinds = {g.address: g.kind for g in found.groups}
    assert kinds == {
        "team@old.example": "microsoft365",
        "all@old.example": "distribution",
        "admins@old.example": "security",
    }
    team = next(g for g in found.groups if g.address == "team@old.example")
    assert team.members == ("dan@old.example", "eve@old.example") and team.aliases == ("t@old.example",)


async def test_refused_credentials_name_the_cause_not_the_token() -> None:
    with respx.mock() as router:
        router.get(f"{G}/users").mock(return_value=httpx.Response(403, text=f"secret page {TOKEN}"))
        async with httpx.AsyncClient() as http:
            with pytest.raises(DiscoveryError) as caught:
                await graph.discover(http, TOKEN)
    assert caught.value.reason == "Forbidden" and TOKEN not in str(caught.value)
    assert "secret page" not in str(caught.value)


def test_cli_google_prints_a_configmap_the_operator_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"client_email": "svc@proj.iam.gserviceaccount.com", "private_key": pem}))

    def token(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = json.loads(__import__("base64").urlsafe_b64decode(form["assertion"][0].split(".")[1] + "=="))
        assert claims["sub"] == "admin@old.example" and "admin.directory.user.readonly" in claims["scope"]
        return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 3600})

    with respx.mock() as router:
        router.post("https://oauth2.googleapis.com/token").mock(side_effect=token)
        _google_routes(router)
        code = main(
            [
                "inventory",
                "--provider",
                "google",
                "--service-account-file",
                str(sa),
                "--admin",
                "admin@old.example",
                "--destination-domain",
                "new.example",
                "--namespace",
                "mail",
            ]
        )
    out = capsys.readouterr()
    assert code == 0 and "2 mailboxes, 2 aliases, 1 groups" in out.err
    cm = yaml.safe_load(out.out)
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["namespace"] == "mail"
    assert len(parse_csv(cm["data"]["mailboxes"]).entries) == 2
    assert json.loads(cm["data"]["recreate.json"])["mailboxes"]["carl@new.example"] == "archived"
    assert pem not in out.out + out.err
