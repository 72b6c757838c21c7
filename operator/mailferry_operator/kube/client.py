"""Async Kubernetes calls the MailMigration handler needs: ConfigMaps, Secrets, MailboxSyncs, Jobs, status.

One ApiClient per operator process, built from in-cluster config or KUBECONFIG. Errors are re-raised
as `kopf.TemporaryError` by the caller; nothing here logs Secret data.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from mailferry_api.common import API_GROUP, API_VERSION

MERGE_PATCH = "application/merge-patch+json"

_client: client.ApiClient | None = None
_lock = asyncio.Lock()


async def api() -> client.ApiClient:
    global _client
    async with _lock:
        if _client is None:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
                config.load_incluster_config()
            else:
                await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
            conf = client.Configuration.get_default_copy()
            conf.connection_pool_maxsize = 128
            _client = client.ApiClient(conf)
        return _client


async def close() -> None:
    global _client
    if _client is not None:
        await _client.close()
        _client = None


def status_code(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


async def read_configmap(namespace: str, name: str) -> dict[str, str] | None:
    core = client.CoreV1Api(await api())
    try:
        cm = await core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = dict(cm.data or {})
    return data


async def read_secret_data(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's base64 `.data` (decode with probe.decode_secret_data); None if absent."""
    core = client.CoreV1Api(await api())
    try:
        secret = await core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(secret.data or {})


async def create_custom(namespace: str, plural: str, body: Mapping[str, Any]) -> bool:
    """Create; False if it already exists (409)."""
    co = client.CustomObjectsApi(await api())
    try:
        await co.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, dict(body))
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


async def patch_custom(namespace: str, plural: str, name: str, patch: Mapping[str, Any]) -> None:
    co = client.CustomObjectsApi(await api())
    await co.patch_namespaced_custom_object(
        API_GROUP,
        API_VERSION,
        namespace,
        plural,
        name,
        dict(patch),
        _content_type=MERGE_PATCH,  # type: ignore[call-arg]
    )


async def patch_custom_status(namespace: str, plural: str, name: str, status: Mapping[str, Any]) -> None:
    co = client.CustomObjectsApi(await api())
    await co.patch_namespaced_custom_object_status(
        API_GROUP,
        API_VERSION,
        namespace,
        plural,
        name,
        {"status": dict(status)},
        _content_type=MERGE_PATCH,  # type: ignore[call-arg]
    )


async def list_custom(namespace: str, plural: str, label_selector: str) -> list[dict[str, Any]]:
    co = client.CustomObjectsApi(await api())
    result = await co.list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, plural, label_selector=label_selector
    )
    return list(result.get("items", []))


async def list_jobs(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    batch = client.BatchV1Api(await api())
    result = await batch.list_namespaced_job(namespace, label_selector=label_selector)
    return [(await api()).sanitize_for_serialization(j) for j in result.items]


async def create_job(namespace: str, body: Mapping[str, Any]) -> bool:
    """Create; False if a Job of that name exists already (409)."""
    batch = client.BatchV1Api(await api())
    try:
        await batch.create_namespaced_job(namespace, dict(body))  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True
