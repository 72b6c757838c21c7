"""Microsoft 365 through Microsoft Graph (v1.0): users with their proxyAddresses, the mailbox purpose
(user / shared / room / equipment, from mailboxSettings.userPurpose: Graph has no list of shared
mailboxes), disabled accounts, mail-enabled groups (distribution lists, Microsoft 365 groups,
mail-enabled security groups) and their members. Guests and accounts without a mailbox are skipped."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from .directory import Account, AccountKind, Directory, Group, GroupKind
from .paging import DiscoveryError, get_json, pages

GRAPH_API = "https://graph.microsoft.com/v1.0"
SCOPE = "https://graph.microsoft.com/.default"
PURPOSE_CONCURRENCY = 8
_PURPOSES: dict[str, AccountKind] = {
    "user": "user",
    "linked": "user",
    "shared": "shared",
    "room": "room",
    "equipment": "equipment",
}


def _follow(page: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    link = page.get("@odata.nextLink")
    return (str(link), {}) if link else None  # the link carries every query parameter


def _addresses(entry: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(primary, aliases) from `mail` and `proxyAddresses` ("SMTP:" marks the primary, "smtp:" the rest;
    X500:, SIP: and other prefixes are not mail addresses)."""
    primary = str(entry.get("mail") or "").lower()
    aliases: set[str] = set()
    for proxy in entry.get("proxyAddresses") or []:
        prefix, _, value = str(proxy).partition(":")
        if prefix == "SMTP":
            primary = value.lower()
        elif prefix == "smtp":
            aliases.add(value.lower())
    aliases.discard(primary)
    return primary, tuple(sorted(aliases))


def _group_kind(group: dict[str, Any]) -> GroupKind:
    if "Unified" in (group.get("groupTypes") or []):
        return "microsoft365"
    return "security" if group.get("securityEnabled") else "distribution"


async def _purpose(http: httpx.AsyncClient, token: str, api_url: str, user_id: str) -> AccountKind | None:
    """The mailbox's purpose, None when the account has no Exchange mailbox."""
    try:
        settings = await get_json(
            http, f"{api_url}/users/{user_id}/mailboxSettings", token, {"$select": "userPurpose"}
        )
    except DiscoveryError as exc:
        if exc.reason == "NotFound":
            return None
        raise
    return _PURPOSES.get(str(settings.get("userPurpose") or "user"), "user")


async def discover(http: httpx.AsyncClient, token: str, api_url: str = GRAPH_API) -> Directory:
    """`api_url`: Graph's base (a contract fake's in tests; the caller checks it against the egress
    allowlist). @odata.nextLink URLs are followed as Graph gives them."""
    found = Directory(provider="microsoft365")
    users: list[dict[str, Any]] = []
    user_params = {
        "$select": "id,displayName,mail,userPrincipalName,proxyAddresses,accountEnabled,userType",
        "$top": "999",
    }
    async for user in pages(http, f"{api_url}/users", token, user_params, "value", _follow):
        name = str(user.get("mail") or user.get("userPrincipalName") or user.get("id"))
        if user.get("userType") == "Guest":
            found.skipped.append(f"{name.lower()}: guest account")
        elif not user.get("mail"):
            found.skipped.append(f"{name.lower()}: no mail address (no mailbox)")
        else:
            users.append(user)
    lane = asyncio.Semaphore(PURPOSE_CONCURRENCY)

    async def account(user: dict[str, Any]) -> Account | str:
        async with lane:
            kind = await _purpose(http, token, api_url, str(user["id"]))
        primary, aliases = _addresses(user)
        if kind is None:
            return f"{primary}: no Exchange Online mailbox"
        # Shared, room and equipment mailboxes have a disabled sign-in by design: not "suspended".
        disabled = user.get("accountEnabled") is False and kind == "user"
        return Account(primary, kind, str(user.get("displayName") or ""), aliases, disabled)

    for result in await asyncio.gather(*(account(u) for u in users)):
        if isinstance(result, str):
            found.skipped.append(result)
        else:
            found.accounts.append(result)
    group_params = {
        "$filter": "mailEnabled eq true",
        "$select": "id,displayName,mail,proxyAddresses,groupTypes,securityEnabled,mailEnabled",
        "$top": "999",
    }
    async for group in pages(http, f"{api_url}/groups", token, group_params, "value", _follow):
        primary, aliases = _addresses(group)
        member_params = {"$select": "mail,userPrincipalName", "$top": "999"}
        members = [
            str(m.get("mail") or m.get("userPrincipalName")).lower()
            async for m in pages(
                http, f"{api_url}/groups/{group['id']}/members", token, member_params, "value", _follow
            )
            if m.get("mail") or m.get("userPrincipalName")
        ]
        found.groups.append(
            Group(
                primary,
                _group_kind(group),
                str(group.get("displayName") or ""),
                aliases,
                tuple(sorted(members)),
            )
        )
    return found
