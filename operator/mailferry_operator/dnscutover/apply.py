"""The writes of a DnsCutover Decision, in the order decide.py put them: status, Secrets (DKIM keys),
the MTA-STS ConfigMap, DNS through the provider, metrics; and the Events at the end of a reconcile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.dnscutover import DNS_PHASES, DnsCutoverSpec, DnsCutoverStatus, GateStatus, RRset

from .. import metrics
from ..dns import dkim as dkimlib
from ..dns import phases as ph
from ..dns.providers.base import Keep
from ..kube import client as kube
from ..mtasts import policy as mtasts
from . import draft as dc
from .observe import Live, request
from .snapshot import SpecProblem

log = logging.getLogger("mailferry.dnscutover")

KIND = "DnsCutover"
# Fields the status patch sets to null when the model has none (a merge patch keeps what it omits).
REMOVABLE = (
    "plan",
    "dmarcStage",
    "lastError",
    "ttlLoweredAt",
    "switchedAt",
    "drainUntil",
    "mtaSts",
    "phaseEnteredAt",
)


def labels(namespace: str, name: str, spec: DnsCutoverSpec) -> dict[str, str]:
    return {"namespace": namespace, "dnscutover": name, "domain": spec.domain}


async def patch_status_raw(namespace: str, name: str, status: dict[str, Any]) -> None:
    await request(
        "PATCH",
        f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/dnscutovers/{name}/status",
        {"status": status},
    )


async def save_status(namespace: str, name: str, status: DnsCutoverStatus) -> None:
    body = status.to_api()
    body.pop("kopf", None)
    for removable in REMOVABLE:
        body.setdefault(removable, None)
    await patch_status_raw(namespace, name, body)


async def _create_secret(live: Live, name: str, data: dict[str, str]) -> bool:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": live.namespace,
            "labels": {"app.kubernetes.io/managed-by": "mailferry", "mailferry.io/dnscutover": live.name},
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": KIND,
                    "name": live.name,
                    "uid": live.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "Opaque",
        "stringData": data,
    }
    try:
        await request("POST", f"/api/v1/namespaces/{live.namespace}/secrets", body)
        return True
    except kube.KubeError as exc:
        if exc.status == 409:
            return False
        raise


async def _create_dkim_key(live: Live, spec: DnsCutoverSpec, action: dc.CreateDkimKey) -> list[dc.Event]:
    """A generated key is created once and never regenerated (409: another attempt made it first)."""
    pem = dkimlib.generate_private_pem(action.algorithm)
    data = {
        dkimlib.PRIVATE_KEY: pem.decode(),
        dkimlib.ALGORITHM_KEY: action.algorithm,
        "selector": action.selector,
        "domain": spec.domain,
    }
    if not await _create_secret(live, action.secret_name, data):
        return []
    what = f"a {action.algorithm} DKIM key for selector {action.selector}"
    return [dc.Event("Normal", "DkimKeyGenerated", f"generated {what} in Secret {action.secret_name}")]


async def _upsert_configmap(namespace: str, name: str, data: dict[str, str], cutover: str) -> None:
    labels = {
        "app.kubernetes.io/managed-by": "mailferry",
        "mailferry.io/dnscutover": cutover,
        "mailferry.io/mta-sts-policy": "true",
    }
    try:
        cm = await request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        owner = ((cm.get("metadata") or {}).get("labels") or {}).get("mailferry.io/dnscutover")
        others = sorted(k for k in (cm.get("data") or {}) if k not in data) + sorted(
            cm.get("binaryData") or {}
        )
        if (owner is not None and owner != cutover) or (owner is None and others):
            whose = (
                f"DnsCutover {owner}'s policy"
                if owner
                else f"another object's (keys: {', '.join(others[:5])})"
            )
            raise SpecProblem(
                "ConfigMapConflict",
                f"ConfigMap {name} (records.mtaSts.policyConfigMap) is {whose}: the MTA-STS policy would be "
                "written into it; choose a ConfigMap name of its own",
            )
        if dict(cm.get("data") or {}) == data:
            return
        await request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/{name}",
            {"data": data, "metadata": {"labels": labels}},
        )
    except kube.KubeError as exc:
        if exc.status != 404:
            raise
        # No ownerReference on purpose: senders cache the policy for max_age, so it must outlive the cutover.
        await request(
            "POST",
            f"/api/v1/namespaces/{namespace}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": labels},
                "data": data,
            },
        )


def _gate_metrics(lbl: dict[str, str], phase: str, gates: list[GateStatus]) -> None:
    for r in gates:
        for res in ("Pending", "Passed", "Failed", "Inconclusive"):
            metrics.dnscutover_gate.labels(**lbl, phase=phase, gate=r.name, type=r.type, result=res).set(
                1 if r.result == res else 0
            )


def _others_kept(spec: DnsCutoverSpec, rr: RRset) -> Keep | None:
    """For a shared RRset (the apex TXT, `_dmarc` TXT): `rr` with what others hold in it when the provider
    writes. The pass computed `rr` from the zone as read at its start, and a value someone added since
    (the status is saved before the writes) would be lost. RFC 2136 makes the write conditional on the
    provider's read; the REST APIs leave one round trip in which a concurrent write is overwritten."""
    if ph.shared_value(rr.name, rr.type, spec.domain) is None:
        return None
    return lambda current: ph.keep_foreign(rr, current, spec.domain)


async def run(
    live: Live,
    spec: DnsCutoverSpec,
    decision: dc.Decision,
    saved: Callable[[DnsCutoverStatus], None] = lambda _: None,
) -> list[dc.Event]:
    """Carry out the decision's actions in order; returns the Events they add (a key really created).
    `saved` hears of each status stored, so a failure after it ends the reconcile from that status."""
    lbl = labels(live.namespace, live.name, spec)
    events: list[dc.Event] = []
    for action in decision.actions:
        if isinstance(action, dc.SaveStatus):
            await save_status(live.namespace, live.name, action.status)
            saved(action.status)
        elif isinstance(action, dc.WriteRRset):
            rr = await live.provider.replace(action.rrset, _others_kept(spec, action.rrset))
            log.info(
                "%s/%s: wrote %s %s (%d record(s), ttl %d)",
                live.namespace,
                live.name,
                rr.name,
                rr.type,
                len(rr.records),
                rr.ttl,
            )
        elif isinstance(action, dc.PublishMtaSts):
            await _upsert_configmap(
                live.namespace, action.config_map, {mtasts.POLICY_KEY: action.policy}, live.name
            )
        elif isinstance(action, dc.CreateDkimKey):
            events += await _create_dkim_key(live, spec, action)
        elif isinstance(action, dc.CountTransition):
            metrics.dnscutover_transitions.labels(**lbl, direction=action.direction).inc()
        elif isinstance(action, dc.GateMetrics):
            _gate_metrics(lbl, action.phase, action.gates)
    return events


def status_metrics(namespace: str, name: str, spec: DnsCutoverSpec, status: DnsCutoverStatus) -> None:
    lbl = labels(namespace, name, spec)
    phase = status.phase or "Planned"
    for p in DNS_PHASES:
        metrics.dnscutover_phase.labels(**lbl, phase=p).set(1 if p == phase else 0)
    metrics.dnscutover_phase_index.labels(**lbl).set(ph.phase_index(phase))
    metrics.dnscutover_drifted.labels(**lbl).set(len(status.drifted))
    for c in status.conditions:
        metrics.dnscutover_condition.labels(**lbl, condition=c.type).set(1 if c.status == "True" else 0)


def emit(body: Any, events: list[dc.Event]) -> None:
    for e in events:
        kopf.event(body, type=e.type, reason=e.reason, message=e.message[:1000])
