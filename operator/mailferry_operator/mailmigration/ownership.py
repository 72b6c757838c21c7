"""Whose object is it: a MailboxSync name the migration needs may already be taken (created beforehand
by hand or by another tool). mailferry never overwrites such an object; it says who holds it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailferry_api.problems import Problem

REASON = "MailboxSyncNameTaken"


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """The object has an ownerReference to the object with this uid."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


def owner_of(obj: Mapping[str, Any]) -> str:
    """Who holds the object, in words: its owners, else the field managers that wrote it."""
    meta = obj.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if refs:
        return ", ".join(f"{r.get('kind')} {r.get('name')}" for r in refs[:3])
    managers = sorted({str(m.get("manager")) for m in meta.get("managedFields") or [] if m.get("manager")})
    return f"no owner; written by {', '.join(managers[:3])}" if managers else "no owner"


def taken_problem(taken: Mapping[str, str]) -> Problem | None:
    """Validated=False while any name is taken; the message names the first one and its holder."""
    if not taken:
        return None
    name, owner = next(iter(taken.items()))
    more = f" ({len(taken) - 1} more names taken)" if len(taken) > 1 else ""
    return Problem(
        REASON,
        f"MailboxSync {name} already exists and is not this MailMigration's ({owner}): mailferry does not "
        f"overwrite it; delete it, or move the mailbox to another migration{more}",
    )
