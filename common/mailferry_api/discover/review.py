"""What a person approves: the inventory ConfigMap's content, by hash.

The hash covers every key of `data` and `binaryData` (not metadata): an edit of any row, or a re-discovery
that found something else, is a new hash and needs a new approval; a re-discovery that found the same is
the same hash and keeps it. Both the operator (which compares) and `kubectl mailferry approve inventory`
(which shows the rows and approves what it showed) compute it here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

PREFIX = "sha256:"
ANNOTATION_CONTENT = "mailferry.io/content-sha256"  # the content hash when the operator wrote it
ANNOTATION_SPEC = "mailferry.io/discover-spec-hash"  # the discover block it was written for
ANNOTATION_REDISCOVER = "mailferry.io/rediscover"  # on the MailMigration: a new value runs discovery again
ANNOTATION_PROVIDER = "mailferry.io/discovered-from"


def content_hash(configmap: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of a ConfigMap's data and binaryData (canonical JSON: sorted keys, no spaces)."""
    body = {
        "data": dict(configmap.get("data") or {}),
        "binaryData": dict(configmap.get("binaryData") or {}),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


def spec_hash(discover: Mapping[str, Any]) -> str:
    """A short hash of the discover block as the API holds it (a change of it runs discovery again)."""
    text = json.dumps(dict(discover), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
