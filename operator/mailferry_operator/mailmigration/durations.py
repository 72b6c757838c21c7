"""Durations: Go-style ones as users write them in specs (30s, 5m, 1h30m, 2d, 500ms), and back-off."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds; raises ValueError on anything that is not a sequence of <number><unit>."""
    text = text.strip()
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


VALIDATION_RETRY_FIRST = 30.0
VALIDATION_RETRY_MAX = 900.0


def validation_retry_delay(failures: int) -> float:
    """Seconds before a failed validation runs again: 30 s, doubling, at most 15 min.

    Every validation logs in to every mailbox on both sides; repeating failed logins every 30 s to a
    provider (10,000 mailboxes: 20,000 logins) gets accounts locked or the client's address blocked."""
    return min(VALIDATION_RETRY_MAX, VALIDATION_RETRY_FIRST * 2 ** min(failures, 16))
