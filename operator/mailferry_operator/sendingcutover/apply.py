"""The SendingCutover's writes: its status, then the application's Secret (derived from that status).

Order matters for crash safety: the decision is recorded in status first; the Secret is then made to
match status on this and every later round. An operator killed between the two writes a Secret that
matches status on its next round; one killed before the status write re-decides from the old status.
The Secret is replaced whole with the resourceVersion it was read at (one atomic write, and a
concurrent change makes it fail and retry instead of being overwritten). It carries no ownerReference:
deleting the SendingCutover must not take the application's keys away.
"""

from __future__ import annotations

import base64
from typing import Any

from mailferry_api.problems import ProblemError
from mailferry_api.sendingcutover import SendingCutoverStatus

from ..kube import client as kube
from .contract import OWNER_LABEL, labels

K8S_TIMEOUT = 30
CLEARABLE = ("stepStartedAt", "baseline", "lastMeasurement", "hardStoppedAck")


class SecretConflict(ProblemError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "AppSecretConflict")


async def write_status(namespace: str, name: str, status: SendingCutoverStatus) -> None:
    body = status.to_api()
    body.pop("kopf", None)
    for key in CLEARABLE:
        body.setdefault(key, None)
    await (await kube.api()).request(
        "PATCH",
        f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/sendingcutovers/{name}/status",
        {"status": body},
        kube.MERGE_PATCH,
        timeout=K8S_TIMEOUT,
    )


def _encoded(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def _conflict(current: dict[str, Any] | None, owner: str, secret: str) -> SecretConflict | None:
    holder = ((current or {}).get("metadata", {}).get("labels") or {}).get(OWNER_LABEL)
    if current is None or holder == owner:
        return None
    whose = f"SendingCutover {holder}'s" if holder else "not written by mailferry"
    return SecretConflict(
        f"Secret {secret} (spec.appSecretName) is {whose}: choose a Secret of its own for the application"
    )


async def app_secret_conflict(namespace: str, owner: str, secret: str) -> SecretConflict | None:
    """Checked before deciding: a ramp must not move while its Secret cannot follow."""
    current = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{secret}", K8S_TIMEOUT)
    return _conflict(current, owner, secret)


async def write_app_secret(namespace: str, owner: str, secret: str, data: dict[str, str]) -> bool:
    """Make the Secret hold exactly `data`; True when it was written."""
    api = await kube.api()
    current = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{secret}", K8S_TIMEOUT)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret, "namespace": namespace, "labels": labels(owner)},
        "type": "Opaque",
        "data": _encoded(data),
    }
    if current is None:
        await api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body, timeout=K8S_TIMEOUT)
        return True
    meta = current.get("metadata") or {}
    conflict = _conflict(current, owner, secret)
    if conflict is not None:
        raise conflict
    if (current.get("data") or {}) == body["data"]:
        return False
    body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
    body["metadata"]["labels"] = {**(meta.get("labels") or {}), **labels(owner)}
    body["metadata"]["annotations"] = meta.get("annotations") or {}
    await api.request("PUT", f"/api/v1/namespaces/{namespace}/secrets/{secret}", body, timeout=K8S_TIMEOUT)
    return True
