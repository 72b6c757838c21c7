"""Provider presets (generic, gmail, microsoft365): what each side's provider implies for folders, limits
and flags, and the sync options that result. Pure: no I/O; the worker applies `with_presets` to the
MailboxSync spec it read, `mailferry verify` does the same, so both see one set of rules.

Every value is a default only: `endpoint.limits` overrides a limit, the user's folder mappings come
first (the first match wins), `endpoint.providerFolders: false` drops the preset's folder rules, and an
explicit `maxMessageBytes` in the spec wins over the preset's. Figures and sources: docs/providers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from .imap import EndpointLimits, FolderSelection, ImapEndpoint, Provider, SyncOptions

Side = Literal["source", "destination"]

GMAIL_VIEWS = ("[[]Gmail]/Starred", "[[]Gmail]/Important")
"""Gmail's virtual views (a Gmail label per message): carried as \\Flagged and the $Important keyword."""
GMAIL_SKIPPED = ("[[]Gmail]/Spam", "[[]Gmail]/Trash", "[[]Gmail]/Bin", "[[]Gmail]/Chats")
"""Not copied from Gmail unless the preset's folder rules are off (fnmatch globs: `[[]` is a literal `[`)."""
MICROSOFT_SKIPPED = ("Files", "Conversation History", "Sync Issues", "Sync Issues/*")
"""Exchange's system folders that hold no user mail a migration should carry."""


@dataclass(frozen=True)
class Preset:
    """What one provider implies. Byte budgets differ by direction (Gmail: 2,500 MB/day down, 500 up)."""

    name: Provider
    max_connections: int | None = None
    max_message_bytes: int | None = None  # the largest APPEND the provider takes (destination side)
    download_bytes_per_day: int | None = None
    upload_bytes_per_day: int | None = None
    messages_per_second: float | None = None  # on writes (destination side)
    source_exclude: tuple[str, ...] = ()
    custom_keywords: bool = True  # False: the server refuses keywords outside its PERMANENTFLAGS
    labels: bool = False  # X-GM-EXT-1: one message in several folders, same X-GM-MSGID


PRESETS: dict[Provider, Preset] = {
    "generic": Preset("generic"),
    "gmail": Preset(
        "gmail",
        max_connections=15,
        max_message_bytes=35_651_584,
        download_bytes_per_day=2_500_000_000,
        upload_bytes_per_day=500_000_000,
        source_exclude=GMAIL_VIEWS + GMAIL_SKIPPED,
        labels=True,
    ),
    "microsoft365": Preset(
        "microsoft365",
        max_connections=16,
        max_message_bytes=45_000_000,
        messages_per_second=4.0,
        source_exclude=MICROSOFT_SKIPPED,
        custom_keywords=False,
    ),
}


def preset(endpoint: ImapEndpoint) -> Preset:
    return PRESETS[endpoint.provider]


def effective_limits(endpoint: ImapEndpoint, side: Side) -> EndpointLimits:
    """The side's limits: the endpoint's own values, else the preset's for that direction."""
    p = preset(endpoint)
    own = endpoint.limits
    by_preset = EndpointLimits(
        max_connections=p.max_connections,
        # A size limit is about what the provider stores: it binds where messages are written.
        max_message_bytes=p.max_message_bytes if side == "destination" else None,
        bytes_per_day=p.download_bytes_per_day if side == "source" else p.upload_bytes_per_day,
        messages_per_second=p.messages_per_second if side == "destination" else None,
    )
    overrides = {name: getattr(own, name) for name in own.model_fields_set if getattr(own, name) is not None}
    return by_preset.model_copy(update=overrides)


def _smallest(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def effective_folders(folders: FolderSelection, source: ImapEndpoint) -> FolderSelection:
    """The user's selection plus the source preset's exclusions (unless its folder rules are off)."""
    if not source.provider_folders:
        return folders
    extra = [p for p in preset(source).source_exclude if p not in folders.exclude]
    return folders.model_copy(update={"exclude": [*folders.exclude, *extra]}) if extra else folders


Options = TypeVar("Options", bound=SyncOptions)


def with_presets(options: Options, source: ImapEndpoint, destination: ImapEndpoint) -> Options:
    """`options` with both sides' presets applied: folder exclusions, the size limit (an explicit
    maxMessageBytes wins), connections capped by either side's limit, and no deletion mirroring from a
    source with labels (Gmail: a message leaving a label folder was relabelled, not deleted, and the
    worker copies it from All Mail once; mirroring would remove the copy)."""
    src, dst = effective_limits(source, "source"), effective_limits(destination, "destination")
    size = options.max_message_bytes or _smallest(src.max_message_bytes, dst.max_message_bytes)
    connections = _smallest(options.connections_per_mailbox, src.max_connections, dst.max_connections)
    return options.model_copy(
        update={
            "folders": effective_folders(options.folders, source),
            "max_message_bytes": size,
            "connections_per_mailbox": connections or options.connections_per_mailbox,
            "deletions": "keep" if preset(source).labels else options.deletions,
        }
    )


__all__ = ["PRESETS", "Preset", "Side", "effective_folders", "effective_limits", "preset", "with_presets"]
