"""The operator's Kubernetes calls, on the project's one client (`mailferry_kube.client.KubeApi`).

One KubeApi per process, created on first use (KUBECONFIG, else the in-cluster service account),
field manager `mailferry-operator`, shared by the MailMigration and DnsCutover handlers.
Failures raise `KubeError` (status None: no answer). Nothing here logs request or response bodies
(Secrets are read and written through it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.problems import Problem
from mailferry_kube.client import MERGE_PATCH, KubeApi, KubeError

from .. import settings
from ..mailmigration.spec_checks import decode_values
from .consent import consent_problem

FIELD_MANAGER = "mailferry-operator"
SECRET_SHARE_SECONDS = 2.0
MIN_CONNECTIONS = 24

_api: KubeApi | None = None
_lock = asyncio.Lock()


async def api() -> KubeApi:
    """The process's client (writes carry fieldManager=mailferry-operator)."""
    global _api
    async with _lock:
        if _api is None:
            _api = KubeApi.from_env(
                field_manager=FIELD_MANAGER,
                timeout=60.0,
                # the MailboxSync creates at a migration's start run `create_concurrency` at a time
                connections=max(MIN_CONNECTIONS, settings.current().create_concurrency),
            )
        return _api


async def close() -> None:
    global _api
    if _api is not None:
        await _api.close()
        _api = None


def _custom(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


async def create_custom(namespace: str, plural: str, body: Mapping[str, Any]) -> bool:
    """Create; False if it already exists (409). The call made 10,000 times at a migration's start,
    `create_concurrency` at a time: the body is serialised once here and the answer is not parsed."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return await (await api()).create(_custom(namespace, plural), data)


async def patch_custom(namespace: str, plural: str, name: str, patch: Mapping[str, Any]) -> None:
    await (await api()).request("PATCH", _custom(namespace, plural, name), dict(patch), MERGE_PATCH)


async def patch_custom_status(namespace: str, plural: str, name: str, status: Mapping[str, Any]) -> None:
    await (await api()).request(
        "PATCH", _custom(namespace, plural, name) + "/status", {"status": dict(status)}, MERGE_PATCH
    )


async def create_job(namespace: str, body: Mapping[str, Any]) -> bool:
    """Create; False if a Job of that name exists already (409)."""
    try:
        await (await api()).request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", dict(body))
    except KubeError as exc:
        if exc.status == 409:
            return False
        raise
    return True


async def delete_job(namespace: str, name: str) -> bool:
    """Delete a Job and its pods (background propagation: the pods get SIGTERM); False if it is gone."""
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
    try:
        await (await api()).request("DELETE", path, propagationPolicy="Background")
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


@dataclass(frozen=True)
class SecretValues:
    """A Secret's type and `.data` decoded to text (`spec_checks.decode_values`); read-only, shared.
    A Secret that did not opt in (`consent.consent_problem`) has no values and says why in `refused`."""

    type: str | None
    values: Mapping[str, str]
    not_text: tuple[str, ...]  # keys whose value is not UTF-8 text
    refused: Problem | None = None


_secret_reads: dict[tuple[str, str], asyncio.Future[SecretValues | None]] = {}


async def get_or_none(path: str, timeout: float | None = None) -> dict[str, Any] | None:
    """GET one object; None when it does not exist (404). Other failures raise KubeError."""
    try:
        return await (await api()).request("GET", path, timeout=timeout)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


async def _fetch_secret(namespace: str, name: str) -> SecretValues | None:
    secret = await get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        return None
    refused = consent_problem(secret)
    if refused is not None:
        return SecretValues(secret.get("type"), {}, (), refused)
    values, not_text = decode_values(dict(secret.get("data") or {}))
    return SecretValues(secret.get("type"), values, tuple(not_text))


async def read_secret_values(namespace: str, name: str) -> SecretValues | None:
    """The Secret decoded to text, None when absent. Reads of one Secret that overlap, or come within
    SECRET_SHARE_SECONDS of the answer, share one GET and one decoded copy, which is then dropped:
    50 migrations validating at once against one 10,000-key Secret held ~5 MB each."""
    key = (namespace, name)
    shared = _secret_reads.get(key)
    if shared is not None:
        try:
            return await asyncio.shield(shared)
        except asyncio.CancelledError:
            if not shared.cancelled():
                raise  # this caller was cancelled
            # the reader it waited for was cancelled: read here
    loop = asyncio.get_running_loop()
    future: asyncio.Future[SecretValues | None] = loop.create_future()
    _secret_reads[key] = future

    def forget() -> None:
        if _secret_reads.get(key) is future:
            del _secret_reads[key]

    try:
        result = await _fetch_secret(namespace, name)
    except BaseException as exc:
        forget()
        if isinstance(exc, Exception):
            future.set_exception(exc)
            future.exception()  # retrieved: only waiters re-raise it
        else:
            future.cancel()
        raise
    future.set_result(result)
    loop.call_later(SECRET_SHARE_SECONDS, forget)
    return result
