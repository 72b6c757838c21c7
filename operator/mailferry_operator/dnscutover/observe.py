"""Read what one DnsCutover step decides on into a Snapshot: the object, the domain index, Secrets,
the provider's records, the authoritative nameservers' answers, the MailMigration's status, the clock.

Reads only. What is observed depends on the next step (snapshot.next_step):
a step that rolls back or converges needs no gate probes, so none are made.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import kopf

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.conditions import now
from mailferry_api.dnscutover import DnsCutoverSpec, DnsCutoverStatus, DnsPhase, RRset
from mailferry_api.problems import Problem

from .. import settings
from ..dns import dkim as dkimlib
from ..dns import phases as ph
from ..dns import spf as spflib
from ..dns.providers.base import DnsProvider, ProviderError
from ..dns.providers.factory import build as build_provider
from ..dns.providers.factory import egress_problem
from ..dns.rrset import rrset_equal, txt_values
from ..kube import client as kube
from ..kube.consent import consent_problem
from . import dnslookup, gateprobes, verify
from . import snapshot as sn
from .snapshot import SpecProblem

PLURAL = "dnscutovers"
K8S_TIMEOUT = 30


@dataclass
class Live:
    """The handles one reconcile reads and writes through."""

    namespace: str
    name: str
    uid: str
    provider: DnsProvider


async def request(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """A raw JSON call (merge-patch for PATCH), K8S_TIMEOUT seconds at most. Paths stay literal at the
    call sites so the RBAC test sees them."""
    api = await kube.api()
    if method == "PATCH":
        return await api.request(method, path, body, kube.MERGE_PATCH, timeout=K8S_TIMEOUT)
    return await api.request(method, path, body, timeout=K8S_TIMEOUT)


async def read_object(namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get_or_none(
        f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/dnscutovers/{name}", K8S_TIMEOUT
    )


def _owned(obj: dict[str, Any], name: str, uid: str) -> bool:
    """Whether the object carries DnsCutover `name`'s label or its ownerReference."""
    meta = obj.get("metadata") or {}
    owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
    return (meta.get("labels") or {}).get("mailferry.io/dnscutover") == name or uid in owners


async def read_secret(namespace: str, name: str, owner: tuple[str, str] = ("", "")) -> dict[str, str] | None:
    """The Secret's values, None when absent. Only a Secret its owner opted in (kube.consent) or one this
    DnsCutover (`owner` = name, uid) wrote itself is read; any other is SecretNotPermitted."""
    secret = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}", K8S_TIMEOUT)
    if secret is None:
        return None
    refused = consent_problem(secret)
    if refused is not None and not (owner[1] and _owned(secret, *owner)):
        raise SpecProblem(refused.reason, refused.message)
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.get("data") or {}).items()}


async def _secret_is_ours(namespace: str, name: str, uid: str, secret: str) -> bool:
    """Whether Secret `secret` carries this DnsCutover's label or ownerReference."""
    obj = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{secret}", K8S_TIMEOUT)
    return obj is None or _owned(obj, name, uid)


# ------------------------------------------------------------------ one domain, one DnsCutover
# Kopf keeps this index of every watched DnsCutover (all namespaces the operator watches) in memory:
# a second DnsCutover for a domain in *another* namespace is found without listing the cluster.
_by_domain: kopf.Index[str, tuple[str, str, str, bool]] | None = None


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def dnscutovers_by_domain(
    namespace: str | None, name: str | None, spec: Any, meta: Any, **_: Any
) -> dict[str, tuple[str, str, str, bool]]:
    """domain -> (creationTimestamp, namespace, name, being deleted)"""
    domain = str((spec or {}).get("domain", "")).lower().rstrip(".")
    created = str(meta.get("creationTimestamp") or "")
    return {domain: (created, namespace or "", name or "", bool(meta.get("deletionTimestamp")))}


def remember_index(kwargs: dict[str, Any]) -> None:
    global _by_domain
    index = kwargs.get("dnscutovers_by_domain")
    if index is not None:
        _by_domain = index


def _other_namespace_owner(namespace: str, name: str, meta: dict[str, Any], domain: str) -> str | None:
    """An older DnsCutover for the same domain in another watched namespace: `namespace/name`."""
    if _by_domain is None:
        return None
    mine = (str(meta.get("creationTimestamp") or ""), namespace, name)
    try:
        entries = list(_by_domain.get(domain.lower().rstrip("."), []))
    except Exception:  # a Store can change while being read by a concurrent watch event
        return None
    older = [
        (c, ns, n) for c, ns, n, deleting in entries if ns != namespace and not deleting and (c, ns, n) < mine
    ]
    return "/".join(min(older)[1:]) if older else None


async def _same_namespace_owner(namespace: str, name: str, meta: dict[str, Any], domain: str) -> str | None:
    """The older DnsCutover of the same namespace for the same domain, if any (it wins; ties by name)."""
    found = await request("GET", f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/dnscutovers")
    mine = (str(meta.get("creationTimestamp") or ""), name)
    want = domain.lower().rstrip(".")
    owners = []
    for item in found.get("items", []):
        m = item.get("metadata") or {}
        other = (str(m.get("creationTimestamp") or ""), str(m.get("name")))
        same = str((item.get("spec") or {}).get("domain", "")).lower().rstrip(".") == want
        if same and other[1] != name and not m.get("deletionTimestamp") and other < mine:
            owners.append(other)
    return min(owners)[1] if owners else None


async def check_domain_owner(namespace: str, name: str, meta: dict[str, Any], domain: str) -> None:
    """Raise DomainConflict when an older DnsCutover (here or in another namespace) owns the domain."""
    owner = await _same_namespace_owner(namespace, name, meta, domain)
    where = "in this namespace"
    if owner is None:
        owner, where = _other_namespace_owner(namespace, name, meta, domain), "(another namespace)"
    if owner is not None:
        raise SpecProblem(
            "DomainConflict",
            f"DnsCutover {owner} {where} already manages {domain}: this one changes "
            "nothing until that one is deleted or this one's domain changes",
        )


# ------------------------------------------------------------------------------ provider, DKIM
async def provider(namespace: str, spec: DnsCutoverSpec) -> DnsProvider:
    refused = egress_problem(spec)  # before the Secret is even read
    if refused is not None:
        raise SpecProblem(refused.reason, refused.message)
    ref = spec.provider.secret_ref
    secret: dict[str, str] = {}
    if ref is not None:
        found = await read_secret(namespace, ref.name)
        if found is None:
            raise SpecProblem(
                "SecretNotFound",
                f"Secret {ref.name} (provider.secretRef) not found in namespace "
                f"{namespace}: create it with the provider credentials",
            )
        secret = found
    elif spec.provider.type == "rfc2136" and spec.provider.rfc2136 and spec.provider.rfc2136.tsig_key_name:
        raise SpecProblem(
            "SecretNotFound", "provider.rfc2136.tsigKeyName is set but provider.secretRef is missing"
        )
    try:
        return build_provider(spec, secret)
    except ProviderError as exc:
        raise SpecProblem(exc.reason, exc.message) from exc


async def _dkim_secrets(live: Live, spec: DnsCutoverSpec) -> dict[str, sn.DkimSecret]:
    """Each generated selector's Secret, reduced to its public half (the private key stays here)."""
    out: dict[str, sn.DkimSecret] = {}
    if spec.records.dkim is None:
        return out
    provider_ref = spec.provider.secret_ref
    for sel in spec.records.dkim.selectors:
        if sel.source != "generate":
            continue
        sname = dkimlib.secret_name(live.name, sel.name)
        data = await read_secret(live.namespace, sname, (live.name, live.uid))
        if data is None:
            out[sel.name] = sn.DkimSecret(sname, exists=False)
            continue
        has_key = dkimlib.PRIVATE_KEY in data
        ours = has_key or await _secret_is_ours(live.namespace, live.name, live.uid, sname)
        alg: str | None = None
        pub: str | None = None
        if has_key:
            try:
                alg, pub = dkimlib.public_key_b64(data[dkimlib.PRIVATE_KEY].encode())
            except (ValueError, TypeError):  # not a PEM private key, or one with a password
                alg = pub = None
        out[sel.name] = sn.DkimSecret(
            sname,
            exists=True,
            has_key=has_key,
            ours=ours,
            is_provider_secret=provider_ref is not None and provider_ref.name == sname,
            algorithm=alg,
            public_b64=pub,
        )
    return out


async def _read_current(
    provider: DnsProvider, spec: DnsCutoverSpec, status: DnsCutoverStatus
) -> dict[ph.Key, RRset | None]:
    """Every RRset the spec manages, and every one a stored snapshot may restore."""
    keys = ph.managed_keys(spec)
    for snap in status.snapshots:
        for r in snap.rrsets:
            if (r.name, r.type) not in keys:
                keys.append((r.name, r.type))
    return {k: await provider.get(*k) for k in keys}


# ----------------------------------------------------------------------------------- forward checks
async def _migration_exists(namespace: str, name: str) -> bool:
    try:
        await request("GET", f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/mailmigrations/{name}")
    except kube.KubeError as exc:
        if exc.status != 404:
            raise
        return False
    return True


async def _forward_problem(live: Live, snap: sn.Snapshot, nxt: DnsPhase) -> Problem | None:
    """Why the next forward step may not be taken, checked in this order: the MailMigration exists,
    the merged SPF record stays within RFC 7208's limits, every new MX host has an address."""
    spec = snap.spec
    if spec.migration_ref is not None and not await _migration_exists(
        live.namespace, spec.migration_ref.name
    ):
        return Problem(
            "MigrationNotFound",
            f"spec.migrationRef: MailMigration {spec.migration_ref.name} not found in namespace "
            f"{live.namespace} (a DnsCutover refers to a MailMigration of its own namespace): create it, fix "
            "the name or remove migrationRef; nothing moves forward until then",
        )
    if ph.phase_index(nxt) >= ph.phase_index("Staged"):
        inp = sn.inputs(snap)
        want = ph.desired(inp, "Staged")
        values = [v for v in txt_values(want.get((inp.names.apex, "TXT"))) if spflib.is_spf(v)]
        if values:
            resolve = settings.current().spf_resolve
            try:
                count = await spflib.count_lookups(values[0], dnslookup.spf_lookup if resolve else None)
            except spflib.SpfError as exc:
                return Problem("SpfIncludeInvalid", f"{exc}: merged record would be {values[0]!r}")
            try:
                count.check()
            except spflib.SpfError as exc:
                return Problem("SpfLimitExceeded", f"{exc}: merged record would be {values[0]!r}")
        if settings.current().spf_resolve:
            found = await dnslookup.rua_problem(spec)
            if found is not None:
                return found
    if nxt == "Switched":
        return await dnslookup.mx_problem(live.provider, spec)
    return None


# ----------------------------------------------------------------------------------- snapshot
async def observe(
    live: Live,
    spec: DnsCutoverSpec,
    status: DnsCutoverStatus,
    generation: int,
    annotations: dict[str, str],
) -> sn.Snapshot:
    snap = sn.Snapshot(
        namespace=live.namespace,
        name=live.name,
        uid=live.uid,
        generation=generation,
        annotations=annotations,
        spec=spec,
        status=status,
        now=now(),
        dkim_secrets=await _dkim_secrets(live, spec),
        current=await _read_current(live.provider, spec, status),
    )
    if sn.rolling_back(spec, status) or _converging(snap):
        return snap
    nxt = sn.next_step(spec, status)
    if nxt is not None:
        snap.forward_problem = await _forward_problem(live, snap, nxt[0])
        if snap.forward_problem is not None:
            return snap
        for gate in sn.gates_for(spec, nxt[0]):
            snap.gate_observations[gate.name] = await gateprobes.observe_gate(
                live.namespace, snap, gate, nxt[0]
            )
    await verify.observe_builtin(live.provider, snap, nxt[0] if nxt else None)
    snap.now = now()
    return snap


def _converging(snap: sn.Snapshot) -> bool:
    """The current phase is not fully in place (a crash interrupted it, or a key is still to make):
    the step finishes it first and looks at the gates on the next observation."""
    _, _, missing = sn.dkim_records(snap.spec, snap.name, snap.dkim_secrets)
    if missing and sn.needs_dkim(snap.spec, snap.status):
        return True
    if snap.spec.dry_run:
        return False
    want = ph.desired(sn.inputs(snap), snap.phase, snap.stage)
    return any(not rrset_equal(snap.current.get(k), v) for k, v in want.items())
