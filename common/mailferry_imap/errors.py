"""Typed IMAP failures. Messages never carry credentials."""

from __future__ import annotations

import re

from mailferry_api.problems import ProblemError


class ImapError(ProblemError):
    """Base of every IMAP failure. ``reason`` is the CamelCase status reason (fixed per class)."""

    reason = "ImapError"
    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ConnectionFailed(ImapError):
    reason = "ConnectionFailed"
    transient = True


class TLSError(ImapError):
    reason = "TLSError"
    transient = False


class ConnectionLost(ImapError):
    """The server closed the connection (BYE, EOF, reset) or a read timed out."""

    reason = "ConnectionFailed"
    transient = True


class Throttled(ImapError):
    reason = "Throttled"
    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationFailed(ImapError):
    reason = "AuthenticationFailed"


class CommandFailed(ImapError):
    """A tagged NO or BAD. ``code`` is the response code atom (e.g. NONEXISTENT, TRYCREATE)."""

    reason = "CommandFailed"

    def __init__(self, message: str, status: str = "NO", code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DestinationChanged(ImapError):
    """The destination folder got messages between a re-match and the first APPEND (e.g. an APPEND of an
    interrupted connection the server committed late): match again before copying."""

    reason = "DestinationChanged"
    transient = True


class DestinationFull(ImapError):
    """The destination refuses to store more (quota, disk full): retry later, never skip the message."""

    reason = "DestinationFull"
    transient = True


class FolderVanished(ImapError):
    reason = "FolderVanished"


class ProtocolError(ImapError):
    reason = "ProtocolError"
    transient = True


_BACKOFF_MS = re.compile(r"backoff\s+time:?\s*(\d+)\s*(milliseconds|ms|seconds|s)?", re.I)
_THROTTLE_CODES = {"THROTTLED", "UNAVAILABLE", "LIMIT", "INUSE", "OVERQUOTA_RATE"}
_THROTTLE_TEXT = re.compile(
    r"server unavailable|throttl|backoff|too many (simultaneous|connections|requests)|try again later|"
    r"rate limit|bandwidth limit|account exceeded",
    re.I,
)


_FULL_CODES = {"OVERQUOTA", "LIMIT_STORAGE"}
_FULL_TEXT = re.compile(r"quota|no space|disk full|mailbox (is )?full|insufficient storage", re.I)


def classify_full(text: str, code: str | None) -> DestinationFull | None:
    """A DestinationFull error if a NO says the server cannot store more."""
    if (code and code.upper() in _FULL_CODES) or _FULL_TEXT.search(text):
        return DestinationFull(f"destination is full: {text[:200]}")
    return None


def classify_text(text: str, code: str | None) -> Throttled | None:
    """A Throttled error if a NO/BAD/BYE text or code means "slow down / come back later"."""
    if (code and code.upper() in _THROTTLE_CODES) or _THROTTLE_TEXT.search(text):
        retry_after: float | None = None
        m = _BACKOFF_MS.search(text)
        if m:
            value = float(m.group(1))
            unit = (m.group(2) or "ms").lower()
            retry_after = value / 1000.0 if unit in ("ms", "milliseconds") else value
        return Throttled(f"server asks to back off: {text[:200]}", retry_after)
    return None
