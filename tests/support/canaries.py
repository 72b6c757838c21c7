"""Distinctive secret values and the ways a leak of one could look (used by the secret-leak tests)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable


def canary(kind: str) -> str:
    return f"S3cr3t-MAILFERRY-CANARY-{kind}-{secrets.token_hex(8)}"


def forms(value: str) -> set[str]:
    """The value and the encodings a leak might take (base64 as in Secret data, SASL PLAIN/XOAUTH2)."""
    out = {value, base64.b64encode(value.encode()).decode()}
    out.add(value[len("S3cr3t-") :])  # a truncated copy still counts
    return out


def hits(texts: Iterable[tuple[str, str]], values: Iterable[str]) -> list[str]:
    needles = set().union(*(forms(v) for v in values))
    found = []
    for where, text in texts:
        for n in needles:
            if n in text:
                found.append(f"{where}: {n[:24]}...")
    return found
