"""Which folders a sync copies and where they go (pure): special-use detection, selection, mapping,
the one-STATUS "unchanged" test."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from mailferry_api.folder_regex import map_folder
from mailferry_api.imap import FolderSelection
from mailferry_api.mailboxsync import FolderCheckpoint
from mailferry_imap.client import FolderInfo

SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
CANONICAL = {
    "\\Sent": "Sent",
    "\\Drafts": "Drafts",
    "\\Trash": "Trash",
    "\\Junk": "Junk",
    "\\Archive": "Archive",
}
# Well-known names per special use (lower case, last component or full path) for servers without RFC 6154.
WELL_KNOWN = {
    "\\Sent": {
        "sent",
        "sent items",
        "sent messages",
        "sent mail",
        "[gmail]/sent mail",
        "gesendet",
        "gesendete objekte",
        "gesendete elemente",
        "envoyés",
        "éléments envoyés",
        "enviados",
        "inviata",
    },
    "\\Drafts": {"drafts", "draft", "[gmail]/drafts", "entwürfe", "brouillons", "borradores", "bozze"},
    "\\Trash": {
        "trash",
        "deleted items",
        "deleted messages",
        "bin",
        "[gmail]/trash",
        "[gmail]/bin",
        "papierkorb",
        "gelöschte elemente",
        "gelöschte objekte",
        "corbeille",
        "papelera",
        "cestino",
    },
    "\\Junk": {
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "bulk mail",
        "[gmail]/spam",
        "spam-verdacht",
        "junk-e-mail",
        "courrier indésirable",
        "indésirables",
    },
    "\\Archive": {"archive", "archives", "archiv", "[gmail]/all mail"},
}


@dataclass(frozen=True)
class FolderPlan:
    source: str  # decoded source name, as the server lists it
    destination: str  # decoded destination name
    special_use: str | None = None


def detect_special_use(folder: FolderInfo, prefix: str = "") -> str | None:
    su = folder.special_use
    if su in SPECIAL_USES:
        return su
    logical = _strip_prefix(folder.name, prefix).lower()
    last = logical.rsplit(folder.delimiter, 1)[-1] if folder.delimiter else logical
    normalised = logical.replace(folder.delimiter, "/") if folder.delimiter else logical
    for use, names in WELL_KNOWN.items():
        if normalised in names or (last in names and "/" not in normalised):
            return use
    return None


def _strip_prefix(name: str, prefix: str) -> str:
    if prefix and name.startswith(prefix) and name.upper() != "INBOX":
        return name[len(prefix) :]
    return name


def logical_parts(name: str, delimiter: str | None, prefix: str = "") -> list[str]:
    """Source name -> path components without the namespace prefix (INBOX normalised to upper case)."""
    rest = _strip_prefix(name, prefix)
    parts = rest.split(delimiter) if delimiter else [rest]
    parts = [p for p in parts if p != ""] or [rest]
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return parts


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or (path == "INBOX" and p.upper() == "INBOX") for p in patterns)


def select_folder(path: str, special_use: str | None, selection: FolderSelection) -> bool:
    """Whether a folder (logical path joined with '/') is copied at all."""
    if selection.strategy == "inboxOnly" and path != "INBOX":
        return False
    if selection.strategy == "standard" and path != "INBOX" and special_use not in SPECIAL_USES:
        return False
    if selection.include and not _matches(path, selection.include):
        return False
    return not (selection.exclude and _matches(path, selection.exclude))


def destination_name(parts: Sequence[str], delimiter: str, prefix: str) -> str:
    """Logical components -> destination name with its separator and namespace prefix."""
    if list(parts) == ["INBOX"]:
        return "INBOX"
    safe = [p.replace(delimiter, "_") if delimiter else p for p in parts]
    return prefix + delimiter.join(safe)


def plan_folders(
    source: Sequence[FolderInfo],
    destination: Sequence[FolderInfo],
    selection: FolderSelection,
    *,
    source_prefix: str = "",
    dest_prefix: str = "",
    dest_delimiter: str | None = None,
) -> list[FolderPlan]:
    """Which source folders to copy, and the destination name of each."""
    ddelim = dest_delimiter or next((f.delimiter for f in destination if f.delimiter), None) or "/"
    dest_special: dict[str, str] = {}
    for f in destination:
        su = f.special_use
        if su in SPECIAL_USES and su not in dest_special:
            dest_special[su] = f.name
    plans: list[FolderPlan] = []
    for f in source:
        if not f.selectable:
            continue
        su = detect_special_use(f, source_prefix)
        parts = [c.replace("/", "_") for c in logical_parts(f.name, f.delimiter, source_prefix)]
        path = "/".join(parts)  # logical path: '/' separates components whatever the server uses
        if not select_folder(path, su, selection):
            continue
        mapped: str | None = None
        for m in selection.mappings:
            mapped = map_folder(m.from_, m.to, path)  # RE2: linear in the name, whatever the pattern
            if mapped is not None:
                break
        if mapped is not None:
            dest = destination_name(logical_parts(mapped, "/"), ddelim, dest_prefix)
        elif selection.special_use_automap and su in SPECIAL_USES and len(parts) == 1:
            dest = dest_special.get(su) or destination_name([CANONICAL[su]], ddelim, dest_prefix)
        else:
            dest = destination_name(parts, ddelim, dest_prefix)
        plans.append(FolderPlan(f.name, dest, su))
    plans.sort(key=lambda p: (p.source.upper() != "INBOX", p.source))
    return plans


# ------------------------------------------------------------------------ per folder


def folder_unchanged(ckpt: FolderCheckpoint | None, status: dict[str, int], *, mirror: bool = False) -> bool:
    """True when STATUS proves nothing changed since the checkpoint (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ).

    ``mirror`` (deletions are carried over): also MESSAGES, the only sign of an expunge on a server
    without CONDSTORE, and no removals held back by the safety cap."""
    if ckpt is None or ckpt.uid_validity is None or ckpt.uid_next is None or ckpt.last_sync_time is None:
        return False
    if status.get("UIDVALIDITY") != ckpt.uid_validity or status.get("UIDNEXT") != ckpt.uid_next:
        return False
    if mirror and (
        ckpt.deletions_held
        or (
            ckpt.synced_messages is not None
            and status.get("MESSAGES", ckpt.synced_messages) != ckpt.synced_messages
        )
    ):
        return False
    hms = status.get("HIGHESTMODSEQ")
    return hms is None or hms == ckpt.highest_mod_seq
