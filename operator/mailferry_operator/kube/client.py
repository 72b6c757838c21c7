"""A small async Kubernetes client (httpx) for the calls the MailMigration handler makes.

In-cluster service account or KUBECONFIG (token, client certificate, CA). Deliberately tiny: with
5,000 MailboxSyncs, kubernetes_asyncio's model (de)serialisation costs time and RSS. `api()` still
hands out a kubernetes_asyncio ApiClient for handlers written against it.
Nothing here logs request or response bodies (Secrets are read through it).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from mailferry_api.common import API_GROUP, API_VERSION

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "mailferry-operator"


class ApiError(ApiException):
    """A non-2xx answer (an ApiException, so callers catching kubernetes_asyncio's errors see it too).
    Carries the API's reason and message, never a request body."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(status=status, reason=reason)
        self.status = status
        self.reason = reason
        self.body = message[:300].encode()


def _ssl_from_kubeconfig(base: Path, cluster: Mapping[str, Any], user: Mapping[str, Any]) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif cluster.get("certificate-authority"):
        ctx = ssl.create_default_context(cafile=str(base / cluster["certificate-authority"]))
    else:
        ctx = ssl.create_default_context()
    if user.get("client-certificate-data") and user.get("client-key-data"):
        with tempfile.TemporaryDirectory(prefix="mf-op-kube-") as tmp:
            cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.touch(0o600)
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            ctx.load_cert_chain(str(cert), str(key))
    elif user.get("client-certificate") and user.get("client-key"):
        ctx.load_cert_chain(str(base / user["client-certificate"]), str(base / user["client-key"]))
    return ctx


def _connection() -> tuple[str, ssl.SSLContext, str | None]:
    """(server, TLS context, bearer token) from KUBECONFIG / ~/.kube/config, else the service account."""
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        return f"https://{host}:{port}", ctx, (SA_DIR / "token").read_text().strip()
    cfg_path = Path(path or Path.home() / ".kube" / "config")
    cfg = yaml.safe_load(cfg_path.read_text())
    ctx_name = cfg.get("current-context")
    context: dict[str, Any] = next(
        (c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name), {}
    )
    cluster: dict[str, Any] = next(
        (c["cluster"] for c in cfg.get("clusters", []) if c["name"] == context.get("cluster")), {}
    )
    user: dict[str, Any] = next(
        (u["user"] for u in cfg.get("users", []) if u["name"] == context.get("user")), {}
    )
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(cfg_path.parent / user["tokenFile"]).read_text().strip()
    return str(cluster["server"]), _ssl_from_kubeconfig(cfg_path.parent, cluster, user), token


_client: httpx.AsyncClient | None = None
_lock = asyncio.Lock()


async def http() -> httpx.AsyncClient:
    global _client
    async with _lock:
        if _client is None:
            server, ctx, token = _connection()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            _client = httpx.AsyncClient(
                base_url=server.rstrip("/"),
                verify=ctx,
                headers=headers,
                timeout=httpx.Timeout(60.0, connect=10.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
        return _client


_api_client: k8s_client.ApiClient | None = None


async def api() -> k8s_client.ApiClient:
    """A kubernetes_asyncio ApiClient, for handlers that use the generated API classes (DnsCutover).
    Created on first use only; the MailMigration handler uses the small httpx client above."""
    global _api_client
    async with _lock:
        if _api_client is None:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
                k8s_config.load_incluster_config()
            else:
                await k8s_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
            conf = k8s_client.Configuration.get_default_copy()
            conf.connection_pool_maxsize = 32
            _api_client = k8s_client.ApiClient(conf)
        return _api_client


async def close() -> None:
    global _client, _api_client
    if _client is not None:
        await _client.aclose()
        _client = None
    if _api_client is not None:
        await _api_client.close()
        _api_client = None


async def request(
    method: str, path: str, body: Any = None, content_type: str = "application/json", **params: Any
) -> dict[str, Any]:
    client = await http()
    headers = {"Content-Type": content_type} if body is not None else {}
    resp = await client.request(method, path, json=body, headers=headers, params=params or None)
    if resp.status_code >= 400:
        try:
            data = resp.json()
            reason, message = str(data.get("reason", "")), str(data.get("message", ""))
        except ValueError:
            reason, message = resp.reason_phrase, ""
        raise ApiError(resp.status_code, reason or resp.reason_phrase, message)
    result: dict[str, Any] = resp.json() if resp.content else {}
    return result


def status_code(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiError) else None


def _custom(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


async def read_configmap(namespace: str, name: str) -> dict[str, str] | None:
    try:
        cm = await request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return dict(cm.get("data") or {})


async def read_secret_data(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's base64 `.data` (decode with probe.decode_secret_data); None if absent."""
    try:
        secret = await request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return dict(secret.get("data") or {})


async def create_custom(namespace: str, plural: str, body: Mapping[str, Any]) -> bool:
    """Create; False if it already exists (409)."""
    try:
        await request("POST", _custom(namespace, plural), dict(body), fieldManager=FIELD_MANAGER)
    except ApiError as exc:
        if exc.status == 409:
            return False
        raise
    return True


async def patch_custom(namespace: str, plural: str, name: str, patch: Mapping[str, Any]) -> None:
    await request(
        "PATCH", _custom(namespace, plural, name), dict(patch), MERGE_PATCH, fieldManager=FIELD_MANAGER
    )


async def patch_custom_status(namespace: str, plural: str, name: str, status: Mapping[str, Any]) -> None:
    await request(
        "PATCH",
        _custom(namespace, plural, name) + "/status",
        {"status": dict(status)},
        MERGE_PATCH,
        fieldManager=FIELD_MANAGER,
    )


async def list_jobs(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    data = await request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs", labelSelector=label_selector)
    return list(data.get("items", []))


async def create_job(namespace: str, body: Mapping[str, Any]) -> bool:
    """Create; False if a Job of that name exists already (409)."""
    try:
        await request(
            "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", dict(body), fieldManager=FIELD_MANAGER
        )
    except ApiError as exc:
        if exc.status == 409:
            return False
        raise
    return True
