"""A small async Kubernetes API client (httpx): in-cluster config or KUBECONFIG; just the worker's calls."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from mailferry_api.common import API_GROUP, API_VERSION

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "mailferry-worker"


class KubeError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _ssl_context(cfg_dir: Path, cluster: dict[str, Any], user: dict[str, Any]) -> ssl.SSLContext | bool:
    if cluster.get("insecure-skip-tls-verify"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif cluster.get("certificate-authority"):
        ctx = ssl.create_default_context(cafile=str(cfg_dir / cluster["certificate-authority"]))
    else:
        ctx = ssl.create_default_context()
    cert = user.get("client-certificate")
    key = user.get("client-key")
    if user.get("client-certificate-data") and user.get("client-key-data"):
        with tempfile.TemporaryDirectory(prefix="mf-kube-") as tmp:
            c = Path(tmp) / "c.pem"
            k = Path(tmp) / "k.pem"
            c.write_bytes(base64.b64decode(user["client-certificate-data"]))
            k.touch(0o600)
            k.write_bytes(base64.b64decode(user["client-key-data"]))
            ctx.load_cert_chain(str(c), str(k))
    elif cert and key:
        ctx.load_cert_chain(str(cfg_dir / cert), str(cfg_dir / key))
    return ctx


class KubeApi:
    def __init__(self, server: str, verify: ssl.SSLContext | bool, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.server, verify=verify, headers=headers, timeout=30.0)

    @classmethod
    def from_env(cls, kubeconfig: str | None = None) -> KubeApi:
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if not path and (SA_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            host = os.environ["KUBERNETES_SERVICE_HOST"]
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
            if ":" in host:
                host = f"[{host}]"
            return cls(f"https://{host}:{port}", ctx, (SA_DIR / "token").read_text().strip())
        if not path:
            path = str(Path.home() / ".kube" / "config")
        p = Path(path.split(os.pathsep)[0])
        try:
            cfg = yaml.safe_load(p.read_text())
        except OSError as exc:
            raise KubeError(f"cannot read kubeconfig {p}: {exc.strerror}") from None
        ctx_name = cfg.get("current-context")
        contexts: dict[str, dict[str, Any]] = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
        context: dict[str, Any] = contexts.get(ctx_name) or next(iter(contexts.values()), {})
        cluster = next(
            (c["cluster"] for c in cfg.get("clusters", []) if c["name"] == context.get("cluster")), None
        )
        user: dict[str, Any] = (
            next((u["user"] for u in cfg.get("users", []) if u["name"] == context.get("user")), {}) or {}
        )
        if cluster is None:
            raise KubeError(f"kubeconfig {p} has no usable cluster")
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(cluster["server"], _ssl_context(p.parent, cluster, user), token)

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise KubeError(f"API server unreachable: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            try:
                msg = resp.json().get("message", "")
            except ValueError:
                msg = resp.text[:200]
            raise KubeError(f"{method} {url}: HTTP {resp.status_code} {msg}", resp.status_code)
        result: dict[str, Any] = resp.json()
        return result

    @staticmethod
    def mailboxsync_path(namespace: str, name: str = "") -> str:
        base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/mailboxsyncs"
        return f"{base}/{name}" if name else base

    async def get_mailboxsync(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self.mailboxsync_path(namespace, name))

    async def patch_mailboxsync_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._request(
            "PATCH",
            self.mailboxsync_path(namespace, name) + "/status",
            params={"fieldManager": FIELD_MANAGER},
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        obj = await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
