"""MTA-STS (RFC 8461) policy text and TXT record, pure.

The policy `id` is derived from the policy text, so it changes exactly when the policy changes
and a restarted operator computes the same one.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Mode = Literal["none", "testing", "enforce"]
POLICY_KEY = "mta-sts.txt"
WELL_KNOWN = "/.well-known/mta-sts.txt"


def render(mode: Mode, mx: list[str], max_age: int) -> str:
    lines = ["version: STSv1", f"mode: {mode}"]
    seen: set[str] = set()
    for pattern in mx:
        p = pattern.lower().rstrip(".")
        if p and p not in seen:
            seen.add(p)
            lines.append(f"mx: {p}")
    lines.append(f"max_age: {max_age}")
    return "\r\n".join(lines) + "\r\n"


def policy_id(policy: str) -> str:
    """1-32 alphanumerics (RFC 8461 §3.1)."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def policy_sha256(policy: str) -> str:
    return hashlib.sha256(policy.encode()).hexdigest()


def txt_value(policy: str) -> str:
    return txt_of(policy_id(policy))


def txt_of(policy_id: str) -> str:
    """The `_mta-sts` TXT value announcing the policy with that id."""
    return f"v=STSv1; id={policy_id}"


def parse(text: str) -> dict[str, list[str]]:
    """key -> values; tolerant of LF or CRLF (RFC 8461 §3.2)."""
    out: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if ":" not in line:
            continue
        k, _, v = line.partition(":")
        out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def same_policy(a: str, b: str) -> bool:
    pa, pb = parse(a), parse(b)
    norm = {k: sorted(v) for k, v in pa.items()}
    return norm == {k: sorted(v) for k, v in pb.items()}


def url(domain: str) -> str:
    return f"https://mta-sts.{domain.rstrip('.')}{WELL_KNOWN}"
