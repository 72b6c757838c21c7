"""spec.inventoryRef.discover (I/O): run discovery in the background (like the connection test), write
the inventory ConfigMap this MailMigration owns, and read it back for the review (review.py decides).

The rights are the tenant's, not the operator's: the API and token URLs must lie under the egress
allowlist (checked before the Secret is read), the Secret must carry the consent label, and neither a
token nor a response body reaches status, an Event or the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from mailferry_api import egress
from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.conditions import set_condition
from mailferry_api.discover import run
from mailferry_api.discover.directory import configmap, mailboxes
from mailferry_api.discover.review import (
    ANNOTATION_CONTENT,
    ANNOTATION_REDISCOVER,
    ANNOTATION_SPEC,
    content_hash,
    spec_hash,
)
from mailferry_api.mailmigration import DiscoveryStatus, InventoryDiscover, InventoryRef, MailMigrationStatus
from mailferry_api.problems import Problem, ProblemError
from mailferry_imap.auth import TokenSource

from .. import settings
from ..kube import client as kube
from . import review

READ_EVERY_SECONDS = 10.0  # the ConfigMap is read again at most this often (an edit needs a new approval)
HTTP_TIMEOUT = 30.0
FIELD = "spec.inventoryRef.discover"


@dataclass
class _State:
    task: asyncio.Task[DiscoveryStatus | Problem] | None = None
    task_for: review.Wanted | None = None
    last: review.LastRun | None = None
    found: DiscoveryStatus | None = None
    cm: review.ConfigMapView | None = None
    read_at: float = 0.0
    read_for: tuple[Any, ...] = field(default_factory=tuple)


_states: dict[str, _State] = {}  # MailMigration uid -> state


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _view(cm: Mapping[str, Any] | None, uid: str) -> review.ConfigMapView:
    if cm is None:
        return review.ConfigMapView(exists=False)
    meta = cm.get("metadata") or {}
    notes = meta.get("annotations") or {}
    owned = any(o.get("uid") == uid for o in meta.get("ownerReferences") or [])
    return review.ConfigMapView(
        True, owned, notes.get(ANNOTATION_SPEC, ""), notes.get(ANNOTATION_REDISCOVER, ""), content_hash(cm)
    )


def _path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


def _url_problems(spec: InventoryDiscover, allow: tuple[str, ...]) -> Problem | None:
    if spec.api_url is not None:
        problem = egress.url_problem(spec.api_url, allow, f"{FIELD}.apiUrl")
        if problem is not None:
            return problem
    if spec.oauth2.token_url is not None:
        return egress.url_problem(spec.oauth2.token_url, allow, f"{FIELD}.oauth2.tokenUrl")
    return None


async def _token_source(
    namespace: str, spec: InventoryDiscover, allow: tuple[str, ...]
) -> TokenSource | Problem:
    """The token source from the consented Secret (nothing decoded from one that did not opt in)."""
    secret = spec.secret_ref.name
    found = await kube.read_secret_values(namespace, secret)
    if found is None:
        return Problem(
            "SecretNotFound", f"Secret {secret} ({FIELD}.secretRef) not found in namespace {namespace}"
        )
    if found.refused is not None:
        return Problem(found.refused.reason, f"{FIELD}.secretRef: {found.refused.message}")
    o = spec.oauth2
    key = o.service_account_key if spec.provider == "google" else o.client_secret_key
    if key not in found.values:
        return Problem(
            "SecretKeyMissing",
            f"Secret {secret} ({FIELD}.secretRef) has no key {key} "
            f"({FIELD}.oauth2.{'serviceAccountKey' if spec.provider == 'google' else 'clientSecretKey'})",
        )
    common: dict[str, Any] = {
        "scope": o.scope or run.SCOPES[spec.provider],
        "token_url": o.token_url,
        "egress_allow": allow,
        "timeout": HTTP_TIMEOUT,
    }
    if spec.provider == "google":
        return TokenSource("google", spec.admin or "", service_account_json=found.values[key], **common)
    return TokenSource(
        "microsoft",
        o.client_id or "",
        client_id=o.client_id,
        client_secret=found.values[key],
        tenant_id=o.tenant_id,
        **common,
    )


def _owner(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "MailMigration",
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
        "blockOwnerDeletion": False,
    }


async def _write(namespace: str, uid: str, cm: dict[str, Any]) -> Problem | None:
    """Create the ConfigMap, or update the one this migration owns; never one held by someone else."""
    name = cm["metadata"]["name"]
    existing = await kube.get_or_none(_path(namespace, name))
    api = await kube.api()
    if existing is None:
        try:
            await api.request("POST", _path(namespace), cm)
            return None
        except kube.KubeError as exc:
            if exc.status != 409:
                raise
            existing = await kube.get_or_none(_path(namespace, name))
    if existing is not None and not _view(existing, uid).owned:
        return Problem(
            "InventoryConfigMapTaken",
            f"ConfigMap {name} (spec.inventoryRef.name) exists and is not owned by this MailMigration: "
            "discovery writes only a ConfigMap it owns; delete it or name another one",
        )
    patch = {"metadata": {k: cm["metadata"][k] for k in ("labels", "annotations")}, "data": cm["data"]}
    await api.request("PATCH", _path(namespace, name), patch, kube.MERGE_PATCH)
    return None


async def discover(
    body: Mapping[str, Any], namespace: str, ref: InventoryRef, wanted: review.Wanted
) -> DiscoveryStatus | Problem:
    """One discovery run: egress, consent, token, the provider's API, the ConfigMap."""
    spec = ref.discover
    assert spec is not None
    allow = settings.current().egress_allow
    problem = _url_problems(spec, allow)  # before the Secret is read
    if problem is not None:
        return problem
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            tokens = await _token_source(namespace, spec, allow)
            if isinstance(tokens, Problem):
                return tokens
            token = await tokens.token(http)
            del tokens
            found = await run.discover(http, spec.provider, token, spec.customer, spec.domain, spec.api_url)
    except ProblemError as exc:  # DiscoveryError (Forbidden, throttled, EgressNotAllowed), token errors
        return Problem(exc.reason, exc.message, exc.transient)
    except httpx.HTTPError as exc:
        return Problem(
            "DiscoveryFailed", f"the {spec.provider} API is unreachable: {type(exc).__name__}", True
        )
    meta = body.get("metadata") or {}
    cm = configmap(found, ref.name, namespace, spec.destination_domain, spec.include_suspended, ref.key)
    digest = content_hash(cm)
    cm["metadata"]["ownerReferences"] = [_owner(body)]
    cm["metadata"]["annotations"].update(
        {ANNOTATION_CONTENT: digest, ANNOTATION_SPEC: wanted[0], ANNOTATION_REDISCOVER: wanted[1]}
    )
    problem = await _write(namespace, str(meta.get("uid") or ""), cm)
    if problem is not None:
        return problem
    return DiscoveryStatus(
        contents_hash=digest,
        discovered_at=now(),
        mailboxes=len(mailboxes(found, spec.include_suspended)),
        aliases=sum(len(a.aliases) for a in found.accounts),
        groups=len(found.groups),
        skipped=len(found.skipped) + len(found.accounts) - len(mailboxes(found, spec.include_suspended)),
    )


def _fold(st: _State, mono: float) -> None:
    """A finished run: remember its outcome (a failure is not tried again before review.RETRY_SECONDS)."""
    task, wanted = st.task, st.task_for
    if task is None or not task.done() or wanted is None:
        return
    try:
        result = task.result()
    except (Exception, asyncio.CancelledError):
        result = Problem("DiscoveryFailed", "discovery stopped unexpectedly; see the operator log")
    if isinstance(result, Problem):
        st.last = review.LastRun(wanted, mono, result)
    else:
        st.last, st.found = review.LastRun(wanted), result
    st.task, st.read_at = None, 0.0  # read the ConfigMap it wrote at once


async def observe_review(
    wake: asyncio.Event | None,
    body: Mapping[str, Any],
    namespace: str,
    name: str,
    ref: InventoryRef | None,
    status: MailMigrationStatus,
) -> Problem | None:
    """One pass: start discovery when due, read the ConfigMap (at most every READ_EVERY_SECONDS, at once
    after a spec change or a run), set status.discovery and the InventoryReviewed condition. Returns why
    the inventory may not be used yet (None: approved, or no review asked for)."""
    meta = body.get("metadata") or {}
    uid, generation = str(meta.get("uid") or ""), int(meta.get("generation") or 0)
    if ref is None or (ref.discover is None and ref.approved_hash is None):
        _states.pop(uid, None)
        status.discovery = None
        status.conditions = [c for c in status.conditions if c.type != review.CONDITION]
        return None
    st = _states.setdefault(uid, _State())
    mono = time.monotonic()
    _fold(st, mono)
    if st.cm is None or mono - st.read_at >= READ_EVERY_SECONDS or st.read_for != (generation,):
        st.cm = _view(await kube.get_or_none(_path(namespace, ref.name)), uid)
        st.read_at, st.read_for = mono, (generation,)
    failed: Problem | None = None
    if ref.discover is not None:
        rediscover = str((meta.get("annotations") or {}).get(ANNOTATION_REDISCOVER) or "")
        wanted = (
            spec_hash(ref.discover.model_dump(mode="json", by_alias=True, exclude_none=True)),
            rediscover,
        )
        if review.discovery_due(wanted, st.cm, st.task is not None, st.last, mono):
            st.task, st.task_for = asyncio.create_task(discover(body, namespace, ref, wanted)), wanted
            if wake is not None:
                st.task.add_done_callback(lambda _t: wake.set())
        if st.task is None and st.last is not None and st.last.wanted == wanted:
            failed = st.last.problem
    problem = review.review_problem(ref, st.cm, namespace, name, failed, st.task is not None)
    found = st.found or status.discovery or DiscoveryStatus()
    status.discovery = found.model_copy(
        update={"contents_hash": st.cm.content_hash or None, "approved": problem is None and st.cm.exists}
    )
    if problem is None:
        reason, message = "Approved", f"ConfigMap {ref.name} is the approved content {ref.approved_hash}"
        status.conditions = set_condition(
            status.conditions, review.CONDITION, "True", reason, message, generation, now()
        )
    else:
        status.conditions = set_condition(
            status.conditions, review.CONDITION, "False", problem.reason, problem.message, generation, now()
        )
    return problem
