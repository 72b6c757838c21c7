"""Secrets by consent: the operator reads (and mounts into worker Jobs) only Secrets that opt in.

A person allowed to create a MailMigration or a DnsCutover is not necessarily allowed to read the
namespace's Secrets; the operator is. So a reference in a spec is not enough: the Secret must carry the
label `mailferry.io/credentials: "true"`, set by someone who may read it, and it must not be a token
Kubernetes issues itself (a ServiceAccount or bootstrap token grants API access, not a mailbox login).
Anything else is refused with `SecretNotPermitted` before one value is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailferry_api.problems import Problem

CONSENT_LABEL = "mailferry.io/credentials"
CONSENT_VALUE = "true"
# Tokens the cluster mints: never credentials for a mail or DNS provider, whatever their labels say.
NEVER_READ_TYPES = frozenset({"kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token"})
REASON = "SecretNotPermitted"


def consent_problem(secret: Mapping[str, Any]) -> Problem | None:
    """None when the operator may read `secret` (an API object); else why not, and how to fix it."""
    meta = secret.get("metadata") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    secret_type = secret.get("type")
    if secret_type in NEVER_READ_TYPES:
        return Problem(
            REASON,
            f"Secret {name} is a {secret_type} Secret: mailferry never reads tokens Kubernetes issues; "
            "put the provider's credentials in an Opaque Secret",
        )
    if (meta.get("labels") or {}).get(CONSENT_LABEL) != CONSENT_VALUE:
        return Problem(
            REASON,
            f"Secret {name} is not labelled {CONSENT_LABEL}={CONSENT_VALUE}: mailferry reads only Secrets "
            f"their owners opted in; someone allowed to read it runs `kubectl label secret -n "
            f"{meta.get('namespace', '')} {meta.get('name', '')} {CONSENT_LABEL}={CONSENT_VALUE}`",
        )
    return None
