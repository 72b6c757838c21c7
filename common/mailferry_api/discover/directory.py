"""What a tenant holds (pure): accounts with their aliases, groups with their members, and how that
becomes a mailferry inventory plus a report of what must be recreated on the destination before the
MX swap (aliases and groups carry mail too, but they are not mailboxes to copy)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AccountKind = Literal["user", "shared", "room", "equipment", "archived"]
GroupKind = Literal["group", "distribution", "microsoft365", "security"]


@dataclass(frozen=True)
class Account:
    address: str
    kind: AccountKind = "user"
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    suspended: bool = False


@dataclass(frozen=True)
class Group:
    address: str
    kind: GroupKind = "group"
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    members: tuple[str, ...] = ()


@dataclass
class Directory:
    provider: str
    accounts: list[Account] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "address: why", e.g. guests, no mailbox


def _rehome(address: str, destination_domain: str | None) -> str:
    if not destination_domain or "@" not in address:
        return address
    return f"{address.split('@', 1)[0]}@{destination_domain}"


def mailboxes(directory: Directory, include_suspended: bool = False) -> list[Account]:
    """The accounts to migrate: every mailbox, suspended ones only when asked (their mail is often
    kept for legal reasons, but logging in as them may fail)."""
    return [a for a in directory.accounts if include_suspended or not a.suspended]


def inventory_csv(
    directory: Directory, destination_domain: str | None = None, include_suspended: bool = False
) -> str:
    """The inventory in the CSV shape the MailMigration's `inventoryRef` reads (source,destination)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["source", "destination"])
    for account in sorted(mailboxes(directory, include_suspended), key=lambda a: a.address):
        writer.writerow([account.address, _rehome(account.address, destination_domain)])
    return out.getvalue()


def recreate_report(directory: Directory, destination_domain: str | None = None) -> dict[str, Any]:
    """Aliases and groups to create on the destination before the MX swap (mail to them would bounce
    otherwise), the kind of each mailbox (shared, room: create them as such), suspended accounts left
    out of the inventory, and what discovery skipped."""
    return {
        "provider": directory.provider,
        "mailboxes": {
            _rehome(a.address, destination_domain): a.kind
            for a in sorted(directory.accounts, key=lambda a: a.address)
        },
        "aliases": [
            {"mailbox": _rehome(a.address, destination_domain), "alias": _rehome(x, destination_domain)}
            for a in sorted(directory.accounts, key=lambda a: a.address)
            for x in a.aliases
        ],
        "groups": [
            {**asdict(g), "address": _rehome(g.address, destination_domain)}
            for g in sorted(directory.groups, key=lambda g: g.address)
        ],
        "suspended": sorted(a.address for a in directory.accounts if a.suspended),
        "skipped": sorted(directory.skipped),
    }


def configmap(
    directory: Directory,
    name: str,
    namespace: str,
    destination_domain: str | None = None,
    include_suspended: bool = False,
    key: str = "mailboxes",
) -> dict[str, Any]:
    """A ConfigMap to review and `kubectl apply`: `key` (the inventory) and `recreate.json`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "mailferry-inventory"},
            "annotations": {"mailferry.io/discovered-from": directory.provider},
        },
        "data": {
            key: inventory_csv(directory, destination_domain, include_suspended),
            "recreate.json": json.dumps(recreate_report(directory, destination_domain), indent=2),
        },
    }
