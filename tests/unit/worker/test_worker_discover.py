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

from mailferry_operator.mailmigration.inventory import parse_csv
from mailferry_worker.cli import main
from mailferry_worker.discover import google, graph
from mailferry_worker.discover.directory import inventory_csv, recreate_report
from mailferry_worker.discover.paging import DiscoveryError

D = google.DIRECTORY_API
G = graph.GRAPH_API
TOKEN = "tok-123-not-a-real-one"


def _auth_ok(request: httpx.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {TOKEN}"


def _google_routes(router: respx.MockRouter) -> None:
    def users(request: httpx.Request) -> httpx.Response:
        assert _auth_ok(request)
        q = request.url.params
        assert q["customer"] == "my_customer" and q["maxResults"] == "500"
        if q.get("pageToken") != "p2":
            return httpx.Response(
                200,
                json={
                    "kind": "admin#directory#users",
                    "nextPageToken": "p2",
                    "users": [
                        {
                            "primaryEmail": "Ann@old.example",
                            "name": {"fullName": "Ann A"},
                            "aliases": ["a@old.example", "ann.a@old.example"],
                            "suspended": False,
                            "isMailboxSetup": True,
                        },
                        {"primaryEmail": "bob@old.example", "suspended": True, "isMailboxSetup": True},
                    ],
                },
            )
        return httpx.Response(
            200,
            json={
                "kind": "admin#directory#users",
                "users": [
                    {"primaryEmail": "carl@old.example", "archived": True, "isMailboxSetup": True},
                    {"primaryEmail": "nomail@old.example", "isMailboxSetup": False},
                ],
            },
        )

    def groups(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "groups": [
                    {
                        "id": "g1",
                        "email": "sales@old.example",
                        "name": "Sales",
                        "aliases": ["vente@old.example"],
                    }
                ]
            },
        )

    def members(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("pageToken") != "m2":
            return httpx.Response(
                200,
                json={
                    "nextPageToken": "m2",
                    "members": [{"email": "ann@old.example", "role": "OWNER", "type": "USER"}],
                },
            )
        return httpx.Response(200, json={"members": [{"email": "partner@else.example", "type": "USER"}]})

    router.get(f"{D}/users").mock(side_effect=users)
    router.get(f"{D}/groups").mock(side_effect=groups)
    router.get(f"{D}/groups/g1/members").mock(side_effect=members)


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


def _graph_routes(router: respx.MockRouter, throttle_once: bool = True) -> dict[str, int]:
    calls = {"users": 0}

    def users(request: httpx.Request) -> httpx.Response:
        assert _auth_ok(request)
        calls["users"] += 1
        if throttle_once and calls["users"] == 1:
            return httpx.Response(
                429, headers={"Retry-After": "0"}, json={"error": {"code": "TooManyRequests"}}
            )
        if request.url.params.get("$skiptoken") == "X2":
            return httpx.Response(
                200,
                json={
                    "value": [
                        {
                            "id": "u4",
                            "mail": "room1@old.example",
                            "userPrincipalName": "room1@old.example",
                            "accountEnabled": False,
                            "userType": "Member",
                            "proxyAddresses": [],
                        },
                        {
                            "id": "u5",
                            "mail": "nobox@old.example",
                            "userType": "Member",
                            "accountEnabled": True,
                        },
                    ]
                },
            )
        assert "proxyAddresses" in request.url.params["$select"]
        return httpx.Response(
            200,
            json={
                "@odata.nextLink": f"{G}/users?$select=id&$top=999&$skiptoken=X2",
                "value": [
                    {
                        "id": "u1",
                        "mail": "dan@old.example",
                        "userPrincipalName": "dan@old.onmicrosoft.com",
                        "accountEnabled": True,
                        "userType": "Member",
                        "proxyAddresses": [
                            "SMTP:dan@old.example",
                            "smtp:d@old.example",
                            "X500:/o=Ex/cn=dan",
                            "SIP:dan@old.example",
                        ],
                    },
                    {
                        "id": "u2",
                        "mail": "info@old.example",
                        "accountEnabled": False,
                        "userType": "Member",
                        "proxyAddresses": ["SMTP:info@old.example", "smtp:contact@old.example"],
                    },
                    {"id": "u3", "mail": "eve@old.example", "accountEnabled": False, "userType": "Member"},
                    {"id": "g9", "mail": "guest_x@other.example", "userType": "Guest"},
                    {
                        "id": "u6",
                        "mail": None,
                        "userPrincipalName": "svc@old.onmicrosoft.com",
                        "userType": "Member",
                    },
                ],
            },
        )

    purposes = {"u1": "user", "u2": "shared", "u3": "user", "u4": "room"}

    def mailbox_settings(request: httpx.Request, user_id: str) -> httpx.Response:
        assert request.url.params["$select"] == "userPurpose"
        if user_id not in purposes:
            return httpx.Response(404, json={"error": {"code": "MailboxNotEnabledForRESTAPI"}})
        return httpx.Response(200, json={"userPurpose": purposes[user_id]})

    def groups(request: httpx.Request) -> httpx.Response:
        assert request.url.params["$filter"] == "mailEnabled eq true"
        return httpx.Response(
            200,
            json={
                "value": [
                    {
                        "id": "gA",
                        "mail": "team@old.example",
                        "displayName": "Team",
                        "groupTypes": ["Unified"],
                        "securityEnabled": False,
                        "proxyAddresses": ["SMTP:team@old.example", "smtp:t@old.example"],
                    },
                    {"id": "gB", "mail": "all@old.example", "groupTypes": [], "securityEnabled": False},
                    {"id": "gC", "mail": "admins@old.example", "groupTypes": [], "securityEnabled": True},
                ]
            },
        )

    def members(request: httpx.Request, group_id: str) -> httpx.Response:
        if group_id == "gA" and "$skiptoken" not in str(request.url):
            return httpx.Response(
                200,
                json={
                    "@odata.nextLink": f"{G}/groups/gA/members?$skiptoken=M2",
                    "value": [{"mail": "dan@old.example"}],
                },
            )
        if group_id == "gA":
            return httpx.Response(200, json={"value": [{"userPrincipalName": "eve@old.example"}]})
        return httpx.Response(200, json={"value": []})

    router.get(f"{G}/users").mock(side_effect=users)
    router.get(url__regex=rf"{G}/users/(?P<user_id>[^/]+)/mailboxSettings").mock(side_effect=mailbox_settings)
    router.get(f"{G}/groups").mock(side_effect=groups)
    router.get(url__regex=rf"{G}/groups/(?P<group_id>[^/]+)/members").mock(side_effect=members)
    return calls


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
