"""The project's one Kubernetes API client: small, async, httpx; in-cluster config or KUBECONFIG.

Used by the worker (`mailferry-worker sync`, `mailferry verify`) and, through the operator's thin
`mailferry_operator.kube.client`, by both operator handlers. It lives here because the worker never
imports the operator. Deliberately tiny: no generated models (with 5,000 MailboxSyncs their
(de)serialisation costs time and RSS), plain JSON dicts in and out.

Errors are one type, `KubeError`. Its message names the method, the path, the HTTP status and the
API's own Status message (cut short); never a request body, a header (token) or any other response
body, so Secrets read or written through this client cannot leak into logs, Events or status.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx

from mailferry_api.common import API_GROUP, API_VERSION

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "mailferry-worker"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MAX_CONNECTIONS = 50  # to the API server, per client
CLOSE_GRACE = 5.0  # seconds close() waits for requests whose callers were cancelled


class KubeError(Exception):
    """A failed API call. `status` is the HTTP status, None when there was no answer (API server
    unreachable, kubeconfig unusable); `reason` is the API's Status reason (NotFound, Forbidden, ...),
    else the transport error's type name, else KubeconfigUnusable."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _ssl_context(cfg_dir: Path, cluster: dict[str, Any], user: dict[str, Any]) -> ssl.SSLContext:
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


def connection(kubeconfig: str | None = None) -> tuple[str, ssl.SSLContext, str | None]:
    """(server, TLS context, bearer token): `kubeconfig`, else KUBECONFIG's first file, else the
    in-cluster service account, else ~/.kube/config. Raises KubeError if the kubeconfig is unreadable."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if not path and (SA_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}", ctx, (SA_DIR / "token").read_text().strip()
    if not path:
        path = str(Path.home() / ".kube" / "config")
    p = Path(path.split(os.pathsep)[0])
    try:
        import yaml  # only for a kubeconfig file (in a pod: the ServiceAccount files)

        cfg = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise KubeError(f"cannot read kubeconfig {p}: {exc.strerror}", None, "KubeconfigUnusable") from None
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
        raise KubeError(f"kubeconfig {p} has no usable cluster", None, "KubeconfigUnusable")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (p.parent / user["tokenFile"]).read_text().strip()
    return str(cluster["server"]), _ssl_context(p.parent, cluster, user), token


class KubeApi:
    """One connection pool to one API server. POST/PATCH/PUT through `request` carry `field_manager`."""

    def __init__(
        self,
        server: str,
        verify: ssl.SSLContext | bool,
        token: str | None = None,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout: httpx.Timeout | float = 30.0,
        limits: httpx.Limits | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.field_manager = field_manager
        self.http = httpx.AsyncClient(
            base_url=self.server,
            verify=verify,
            headers=headers,
            timeout=timeout,
            # Every connection kept: with fewer kept than allowed, a busy worker (a follower renewing a
            # thousand Leases) opens and closes TLS connections all the time, on both sides' CPU.
            limits=limits
            or httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        )
        self._in_flight: set[asyncio.Future[dict[str, Any]]] = set()

    @classmethod
    def from_env(cls, kubeconfig: str | None = None, **options: Any) -> KubeApi:
        """Configured by `connection()`; `options` go to the constructor (field_manager, timeout, limits)."""
        return cls(*connection(kubeconfig), **options)

    async def close(self) -> None:
        if self._in_flight:  # requests whose callers were cancelled: let them end first
            await asyncio.wait(self._in_flight, timeout=CLOSE_GRACE)
        await self.http.aclose()

    async def _request(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        """Send; map every failure to KubeError (see the module doc for what its message may hold).

        The request runs in a task of its own that a cancelled caller leaves to finish: httpcore 1.0.9
        loses a pool slot for good to a request cancelled while it waits for a connection
        (encode/httpcore#1093), and a follower, which cancels Lease renewals and deltas as a matter of
        course, would end with every request failing on PoolTimeout against a healthy API server."""
        task = asyncio.ensure_future(self._send(method, url, **kw))
        self._in_flight.add(task)
        task.add_done_callback(self._ended)
        return await asyncio.shield(task)

    def _ended(self, task: asyncio.Future[dict[str, Any]]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody waits for any more is not logged as unhandled

    async def _send(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            raise KubeError(f"{method} {url}: API server unreachable: {name}", None, name) from None
        if resp.status_code >= 400:
            try:
                data = resp.json()
                reason, msg = str(data.get("reason") or ""), str(data.get("message") or "")
            except (ValueError, AttributeError):
                reason, msg = "", ""
            reason = reason or resp.reason_phrase
            raise KubeError(f"{method} {url}: HTTP {resp.status_code} {msg[:300]}", resp.status_code, reason)
        result: dict[str, Any] = resp.json() if resp.content else {}
        return result

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = JSON,
        *,
        timeout: float | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """A JSON call: `body` as JSON of `content_type`, `params` as the query (fieldManager added to
        writes), `timeout` (seconds) instead of the client's."""
        if method in ("POST", "PATCH", "PUT"):
            params.setdefault("fieldManager", self.field_manager)
        kw: dict[str, Any] = {"params": params or None}
        if body is not None:
            kw |= {"json": body, "headers": {"Content-Type": content_type}}
        if timeout is not None:
            kw["timeout"] = timeout
        return await self._request(method, path, **kw)

    # ------------------------------------------------------------------ the worker's own calls
    @staticmethod
    def _namespaced(group_version: str, plural: str, namespace: str, name: str) -> str:
        base = f"/apis/{group_version}/namespaces/{namespace}/{plural}"
        return f"{base}/{name}" if name else base

    @classmethod
    def mailboxsync_path(cls, namespace: str, name: str = "") -> str:
        return cls._namespaced(f"{API_GROUP}/{API_VERSION}", "mailboxsyncs", namespace, name)

    async def get_mailboxsync(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self.mailboxsync_path(namespace, name))

    async def patch_mailboxsync_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch /status; with ``resource_version`` only if the object still has it (else HTTP 409)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._request(
            "PATCH",
            self.mailboxsync_path(namespace, name) + "/status",
            params={"fieldManager": self.field_manager},
            json=body,
            headers={"Content-Type": MERGE_PATCH},
        )

    # One coordination.k8s.io Lease per MailboxSync: one writer per mailbox (mailferry_worker/lease.py).
    @classmethod
    def lease_path(cls, namespace: str, name: str = "") -> str:
        return cls._namespaced("coordination.k8s.io/v1", "leases", namespace, name)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self.lease_path(namespace, name))

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request(
            "POST", self.lease_path(namespace), params={"fieldManager": self.field_manager}, json=body
        )

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with body.metadata.resourceVersion: HTTP 409 when someone else wrote the Lease meanwhile."""
        return await self._request(
            "PUT", self.lease_path(namespace, name), params={"fieldManager": self.field_manager}, json=body
        )

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> dict[str, Any]:
        """DELETE only while the Lease still has ``resource_version`` (else HTTP 409: written since)."""
        options = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": resource_version},
        }
        return await self._request("DELETE", self.lease_path(namespace, name), json=options)

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            params={"fieldManager": self.field_manager},
            json=body,
        )

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        obj = await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
