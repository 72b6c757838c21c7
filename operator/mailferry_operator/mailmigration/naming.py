"""Deterministic names: MailboxSyncs and Jobs are looked up by name, so a restart never doubles them."""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63  # DNS label: usable as a label value and a Job name (Job names become pod labels)

_INVALID = re.compile(r"[^a-z0-9-]+")


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def sanitise(text: str) -> str:
    """Lower-case RFC 1123 label characters only: `Alice.Smith@Example.COM` -> `alice-smith-example-com`."""
    cleaned = _INVALID.sub("-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", cleaned)


def fit(name: str, *hash_parts: str, limit: int = MAX_NAME) -> str:
    """`name` if it fits, else its truncated head plus a hash of `hash_parts` (or of the name)."""
    if len(name) <= limit:
        return name
    digest = short_hash(*(hash_parts or (name,)))
    head = name[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def mailbox_sync_name(migration: str, source: str) -> str:
    """`<sanitised source address>-<hash8>`; the hash covers migration and address, so two
    migrations in one namespace, or two addresses that sanitise alike, never collide."""
    digest = short_hash(migration, source.lower())
    base = sanitise(source) or "mailbox"
    base = base[: MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{base}-{digest}"


def job_name(migration: str, round_: int, batch: int, attempt: int = 0) -> str:
    """`<migration>-r<round>-b<batch>` (plus `-a<attempt>` for retries), truncated+hashed to 63 chars."""
    suffix = f"-r{round_}-b{batch}" + (f"-a{attempt}" if attempt else "")
    name = f"{migration}{suffix}"
    if len(name) <= MAX_NAME:
        return name
    digest = short_hash(migration)
    head = migration[: MAX_NAME - len(suffix) - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}{suffix}"
