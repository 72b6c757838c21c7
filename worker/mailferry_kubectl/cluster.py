"""The few API calls the plugin makes, through the kernel's one Kubernetes client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_kube.client import MERGE_PATCH, KubeApi, KubeError

FIELD_MANAGER = "kubectl-mailferry"
KINDS = {
    "mailmigrations": "MailMigration",
    "mailboxsyncs": "MailboxSync",
    "dnscutovers": "DnsCutover",
    "noticeplans": "NoticePlan",
}


class NotFound(Exception):
    """A named object does not exist (the message says which and where)."""


def default_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context, as kubectl picks it; else `default`."""
    path = (
        kubeconfig
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or str(Path.home() / ".kube/config")
    )
    try:
        import yaml

        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, ValueError):
        return "default"
    current = cfg.get("current-context")
    for ctx in cfg.get("contexts") or []:
        if ctx.get("name") == current:
            return str((ctx.get("context") or {}).get("namespace") or "default")
    return "default"


class Cluster:
    """One namespace of one API server."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def _path(self, plural: str, name: str = "") -> str:
        base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.namespace}/{plural}"
        return f"{base}/{name}" if name else base

    async def get(self, plural: str, name: str) -> dict[str, Any]:
        found = await self.get_or_none(plural, name)
        if found is None:
            raise NotFound(f"{KINDS[plural]} {name!r} not found in namespace {self.namespace!r}")
        return found

    async def get_or_none(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.api.request("GET", self._path(plural, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def _items(self, path: str, selector: str | None) -> list[dict[str, Any]]:
        found = await (
            self.api.request("GET", path, labelSelector=selector)
            if selector
            else self.api.request("GET", path)
        )
        items: list[dict[str, Any]] = found["items"]
        return items

    async def list_objects(self, plural: str, selector: str | None = None) -> list[dict[str, Any]]:
        return await self._items(self._path(plural), selector)

    async def patch_spec(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.api.request("PATCH", self._path(plural, name), patch, MERGE_PATCH)

    async def jobs(self, selector: str) -> list[dict[str, Any]]:
        return await self._items(f"/apis/batch/v1/namespaces/{self.namespace}/jobs", selector)

    async def pods(self, selector: str) -> list[dict[str, Any]]:
        return await self._items(f"/api/v1/namespaces/{self.namespace}/pods", selector)

    async def pod_log(self, pod: str, tail: int | None) -> str:
        params = {"tailLines": tail} if tail else {}
        try:
            return await self.api.text(f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log", **params)
        except KubeError as exc:
            if exc.status is None:
                raise
            raise LogUnavailable(f"pod {pod}: HTTP {exc.status} {exc.detail}") from None


class LogUnavailable(Exception):
    """The API server could not return a pod's log (no node, container not started, pod gone)."""
