"""Google Workspace through the Admin SDK Directory API (v1): users (with aliases, suspended and
archived flags), groups and their members. Google has no shared mailboxes (a Group with a collaborative
inbox plays that part), so every account with a mailbox is a `user`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from .directory import Account, Directory, Group
from .paging import pages

DIRECTORY_API = "https://admin.googleapis.com/admin/directory/v1"
SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly "
    "https://www.googleapis.com/auth/admin.directory.group.readonly"
)


def _next(base: str, params: dict[str, str]) -> Any:
    def follow(page: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        token = page.get("nextPageToken")
        return (base, {**params, "pageToken": str(token)}) if token else None

    return follow


async def discover(
    http: httpx.AsyncClient,
    token: str,
    customer: str = "my_customer",
    domain: str | None = None,
    api_url: str = DIRECTORY_API,
) -> Directory:
    """`api_url`: the Directory API's base (a contract fake's in tests; the caller checks it against
    the egress allowlist)."""
    scope = {"domain": domain} if domain else {"customer": customer}
    found = Directory(provider="google")
    users_url = f"{api_url}/users"
    user_params = {**scope, "maxResults": "500", "projection": "basic", "orderBy": "email"}
    async for user in pages(http, users_url, token, user_params, "users", _next(users_url, user_params)):
        address = str(user.get("primaryEmail") or "").lower()
        if not address:
            continue
        if user.get("isMailboxSetup") is False:
            found.skipped.append(f"{address}: no Gmail mailbox set up")
            continue
        found.accounts.append(
            Account(
                address=address,
                kind="archived" if user.get("archived") else "user",
                display_name=str((user.get("name") or {}).get("fullName") or ""),
                aliases=tuple(sorted(str(a).lower() for a in user.get("aliases") or [])),
                suspended=bool(user.get("suspended")),
            )
        )
    groups_url = f"{api_url}/groups"
    group_params = {**scope, "maxResults": "200"}
    async for group in pages(
        http, groups_url, token, group_params, "groups", _next(groups_url, group_params)
    ):
        address = str(group.get("email") or "").lower()
        members_url = f"{api_url}/groups/{quote(str(group.get('id') or address), safe='')}/members"
        member_params = {"maxResults": "200"}
        members = [
            str(m.get("email")).lower()
            async for m in pages(
                http, members_url, token, member_params, "members", _next(members_url, member_params)
            )
            if m.get("email")
        ]
        found.groups.append(
            Group(
                address=address,
                display_name=str(group.get("name") or ""),
                aliases=tuple(sorted(str(a).lower() for a in group.get("aliases") or [])),
                members=tuple(sorted(members)),
            )
        )
    return found
