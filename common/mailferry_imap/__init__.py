"""Our own asyncio IMAP client (see client.py for why not aioimaplib)."""

from .client import AppendItem, Completion, FolderInfo, ImapClient, MessageMeta, SelectInfo, compress_uids
from .errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionFailed,
    ConnectionLost,
    DestinationFull,
    FolderVanished,
    ImapError,
    ProtocolError,
    Throttled,
    TLSError,
)

__all__ = [
    "AppendItem",
    "AuthenticationFailed",
    "CommandFailed",
    "Completion",
    "ConnectionFailed",
    "ConnectionLost",
    "DestinationFull",
    "FolderInfo",
    "FolderVanished",
    "ImapClient",
    "ImapError",
    "MessageMeta",
    "ProtocolError",
    "SelectInfo",
    "TLSError",
    "Throttled",
    "compress_uids",
]
