"""The project's one Kubernetes API client: small, async, aiohttp; in-cluster config or KUBECONFIG.

Used by the worker (`mailferry-worker sync`, `mailferry verify`) and, through the operator's thin
`mailferry_operator.kube.client`, by both operator handlers. It lives here because the worker never
imports the operator. Deliberately tiny: no generated models (with 5,000 MailboxSyncs their
(de)serialisation costs time and RSS), plain JSON dicts in and out.

Errors are one type, `KubeError`. Its message names the method, the path, the HTTP status and the
API's own Status message (cut short); never a request body, a header (token) or any other response
body, so Secrets read or written through this client cannot leak into logs, Events or status.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from mailferry_api.common import API_GROUP, API_VERSION

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FIELD_MANAGER = "mailferry-worker"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MAX_CONNECTIONS = 50  # to the API server, per client
CONNECT_TIMEOUT = 10.0


class KubeError(Exception):
    """A failed API call. `status` is the HTTP status, None when there was no answer (API server
    unreachable, kubeconfig unusable); `reason` is the API's Status reason (NotFound, Forbidden, ...),
    else the transport error's type name, else KubeconfigUnusable."""

    def __init__(self, message: str, status: int | None = None, reason: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.detail = detail  # the API's own Status message, cut short


def api_error(method: str, path: str, status: int, raw: bytes) -> KubeError:
    """The API's Status reason and message (cut short); never the rest of the answer."""
    reason = message = ""
    try:
        data = json.loads(raw)
        reason, message = str(data.get("reason") or ""), str(data.get("message") or "")
    except (ValueError, AttributeError):
        pass
    message = message[:300]
    return KubeError(f"{method} {path}: HTTP {status} {message}", status, reason or str(status), message)


def _query(params: dict[str, Any]) -> dict[str, str]:
    """aiohttp takes strings only: booleans as the API server spells them, None left out."""
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items() if v is not None
    }


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
    """Kept-alive connections to one API server. POST/PATCH/PUT through `request` carry `field_manager`.

    On aiohttp (C-parsed HTTP/1.1; Kopf's own client, so the operator loads it anyway): httpx spent most
    of a busy follower's CPU in its pool's scan of queued requests, and httpcore 1.0.9 loses a pool slot
    for good to a request cancelled while it waits for a connection (encode/httpcore#1093), which a
    follower, cancelling Lease renewals and deltas as a matter of course, did all the time. aiohttp's
    connector queues waiters in a deque and drops a cancelled one (tests/unit/api/test_kube_client_cancel.py).
    The session is made on first use: aiohttp binds it to the running loop.
    """

    def __init__(
        self,
        server: str,
        verify: ssl.SSLContext | bool,
        token: str | None = None,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout: float = 30.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.server = server.rstrip("/")
        self.field_manager = field_manager
        self._headers = {"Accept": JSON} | ({"Authorization": f"Bearer {token}"} if token else {})
        self._tls = verify  # aiohttp: True = the default checks, False = none, or the context given
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._connections = max(1, connections)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, kubeconfig: str | None = None, **options: Any) -> KubeApi:
        """From `connection()`; `options` go to the constructor (field_manager, timeout, connections)."""
        return cls(*connection(kubeconfig), **options)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._tls),
                timeout=self._timeout,
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # the API server sets none
                # No trust_env: it reads ~/.netrc in a thread on every request, and an entry for the API
                # server's host would replace the bearer token. HTTPS_PROXY is therefore not followed.
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """(status, raw answer) for any status; KubeError when there was no answer."""
        kw: dict[str, Any] = {}
        if params:
            kw["params"] = _query(params)
        if body is not None:
            kw["data"] = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            kw["headers"] = {"Content-Type": content_type}
        if timeout is not None:
            kw["timeout"] = aiohttp.ClientTimeout(total=timeout, sock_connect=self._timeout.sock_connect)
        try:
            async with self._http().request(method, self.server + path, **kw) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            name = type(exc).__name__
            raise KubeError(f"{method} {path}: API server unreachable: {name}", None, name) from None

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
        status, raw = await self._call(method, path, params, body, content_type, timeout)
        if status >= 400:
            raise api_error(method, path, status, raw)
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    async def create(self, path: str, body: bytes) -> bool:
        """POST an already serialised object to the collection at `path`; False if it exists (409).
        The answer is not parsed: at a migration's start this is called 10,000 times and nobody reads it."""
        status, raw = await self._call("POST", path, {"fieldManager": self.field_manager}, body)
        if status == 409:
            return False
        if status >= 400:
            raise api_error("POST", path, status, raw)
        return True

    async def text(self, path: str, **params: Any) -> str:
        """GET a plain-text resource (a pod's log)."""
        status, raw = await self._call("GET", path, params)
        if status >= 400:
            raise api_error("GET", path, status, raw)
        return raw.decode(errors="replace")

    # ------------------------------------------------------------------ the worker's own calls
    @staticmethod
    def _namespaced(group_version: str, plural: str, namespace: str, name: str) -> str:
        base = f"/apis/{group_version}/namespaces/{namespace}/{plural}"
        return f"{base}/{name}" if name else base

    @classmethod
    def mailboxsync_path(cls, namespace: str, name: str = "") -> str:
        return cls._namespaced(f"{API_GROUP}/{API_VERSION}", "mailboxsyncs", namespace, name)

    async def get_mailboxsync(self, namespace: str, name: str, cached: bool = False) -> dict[str, Any]:
        """`cached`: from the API server's watch cache (resourceVersion=0), which may lag etcd a little;
        a fifth of a read from etcd in the API server's CPU (docs/benchmarks.md). Only for a read whose
        every use is checked later: a write conditional on its resourceVersion."""
        if cached:
            return await self.request("GET", self.mailboxsync_path(namespace, name), resourceVersion="0")
        return await self.request("GET", self.mailboxsync_path(namespace, name))

    async def patch_mailboxsync_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch /status; with ``resource_version`` only if the object still has it (else HTTP 409)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.request(
            "PATCH", self.mailboxsync_path(namespace, name) + "/status", body, MERGE_PATCH
        )

    # One coordination.k8s.io Lease per MailboxSync: one writer per mailbox (mailferry_worker/lease.py).
    @classmethod
    def lease_path(cls, namespace: str, name: str = "") -> str:
        return cls._namespaced("coordination.k8s.io/v1", "leases", namespace, name)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", self.lease_path(namespace, name))

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", self.lease_path(namespace), body)

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """PUT with body.metadata.resourceVersion: HTTP 409 when someone else wrote the Lease meanwhile.
        `timeout`: seconds, instead of the client's (a renewal must not outlast the Lease's validity)."""
        if timeout is not None:
            timeout = max(0.5, timeout)
        return await self.request("PUT", self.lease_path(namespace, name), body, timeout=timeout)

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> dict[str, Any]:
        """DELETE only while the Lease still has ``resource_version`` (else HTTP 409: written since)."""
        options = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": resource_version},
        }
        return await self.request("DELETE", self.lease_path(namespace, name), options)

    async def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body)

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        obj = await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
