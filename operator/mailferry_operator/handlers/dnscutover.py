"""Kopf handlers for DnsCutover: move one gated phase at a time toward spec.targetPhase.

Registered on import (main.py imports this module). Every event (create/update/resume) and a
timer (MAILFERRY_DNS_GATE_INTERVAL seconds, default 15) run the same `reconcile`, serialized per
object. The record logic is pure (dns/phases.py), the gates are pure (gates/evaluate.py); this
module reads and writes: the object's status, Secrets (DKIM keys, provider credentials), the
MTA-STS ConfigMap, the MailMigration's status, and DNS through the provider.

Crash safety: entering a phase first persists the phase and a snapshot of every RRset it will
change, then writes the records (each compared before writing); a restart re-reads the records
and finishes the same phase without writing anything twice and without re-running gates that
already passed. Rolling back restores the snapshot and only then forgets it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from mailferry_api.common import API_GROUP, API_VERSION, MAX_HISTORY, ConditionStatus, ErrorInfo
from mailferry_api.conditions import get_condition, now, set_condition
from mailferry_api.dnscutover import (
    DNS_CONDITIONS,
    DNS_PHASES,
    DkimKeyStatus,
    DnsCutoverSpec,
    DnsCutoverStatus,
    DnsHistoryEntry,
    DnsPhase,
    Gate,
    GateStatus,
    MtaStsStatus,
    RRset,
    Snapshot,
)
from mailferry_api.problems import ProblemError

from .. import metrics, settings
from ..dns import dkim as dkimlib
from ..dns import phases as ph
from ..dns import spec_checks as dns_checks
from ..dns import spf as spflib
from ..dns.providers.base import DnsProvider, ProviderError
from ..dns.providers.factory import build as build_provider
from ..dns.rrset import absent, fqdn, mx_hosts, rrset_equal, split_txt, txt_values
from ..gates import evaluate as ev
from ..gates import probes
from ..kube import client as kube
from ..mtasts import policy as mtasts

log = logging.getLogger("mailferry.dnscutover")

PLURAL = "dnscutovers"
KIND = "DnsCutover"
APPROVAL_ANNOTATION = "mailferry.io/approved-phase"
GATE_INTERVAL = settings.current().dns_gate_interval
MAX_STEPS = 12
K8S_TIMEOUT = 30
RECONCILE_TIMEOUT = settings.current().dns_reconcile_timeout

_locks: dict[str, asyncio.Lock] = {}


class SpecProblem(ProblemError):
    """A problem the CRD schema cannot catch; shown as Stalled with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)


# ------------------------------------------------------------------------------------- k8s I/O
# Through the operator's shared client (kube/client.py); paths are literal so the RBAC test sees them.
async def request(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """A raw JSON call (merge-patch for PATCH), K8S_TIMEOUT seconds at most."""
    api = await kube.api()
    if method == "PATCH":
        return await api.request(method, path, body, kube.MERGE_PATCH, timeout=K8S_TIMEOUT)
    return await api.request(method, path, body, timeout=K8S_TIMEOUT)


async def _patch_status_raw(namespace: str, name: str, status: dict[str, Any]) -> None:
    await request(
        "PATCH",
        f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/dnscutovers/{name}/status",
        {"status": status},
    )


async def _get_object(namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get_or_none(
        f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/dnscutovers/{name}", K8S_TIMEOUT
    )


async def _patch_status(namespace: str, name: str, status: DnsCutoverStatus) -> None:
    body = status.to_api()
    body.pop("kopf", None)
    for removable in (
        "plan",
        "dmarcStage",
        "lastError",
        "ttlLoweredAt",
        "switchedAt",
        "mtaSts",
        "phaseEnteredAt",
    ):
        body.setdefault(removable, None)
    await _patch_status_raw(namespace, name, body)


async def _secret(namespace: str, name: str) -> dict[str, str] | None:
    secret = await kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}", K8S_TIMEOUT)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.get("data") or {}).items()}


async def _create_secret(namespace: str, name: str, data: dict[str, str], owner: dict[str, Any]) -> bool:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "mailferry", "mailferry.io/dnscutover": owner["name"]},
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": KIND,
                    "name": owner["name"],
                    "uid": owner["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "Opaque",
        "stringData": data,
    }
    try:
        await request("POST", f"/api/v1/namespaces/{namespace}/secrets", body)
        return True
    except kube.KubeError as exc:
        if exc.status == 409:
            return False
        raise


async def _ours(ctx: Ctx, kind: str, name: str) -> bool:
    """Whether the Secret/ConfigMap `name` carries this DnsCutover's label or ownerReference."""
    obj = await kube.get_or_none(f"/api/v1/namespaces/{ctx.namespace}/{kind}/{name}", K8S_TIMEOUT)
    if obj is None:
        return True
    meta = obj.get("metadata") or {}
    owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
    return (meta.get("labels") or {}).get("mailferry.io/dnscutover") == ctx.name or ctx.uid in owners


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


def _remember_index(kwargs: dict[str, Any]) -> None:
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


async def _domain_owner(namespace: str, name: str, meta: dict[str, Any], domain: str) -> str | None:
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


async def _check_migration(ctx: Ctx, name: str) -> None:
    """spec.migrationRef must name a MailMigration of this namespace before DNS moves forward
    (rolling back never needs it)."""
    try:
        await request("GET", f"/apis/mailferry.io/v1alpha1/namespaces/{ctx.namespace}/mailmigrations/{name}")
    except kube.KubeError as exc:
        if exc.status != 404:
            raise
        raise SpecProblem(
            "MigrationNotFound",
            f"spec.migrationRef: MailMigration {name} not found in namespace {ctx.namespace} (a DnsCutover "
            "refers to a MailMigration of its own namespace): create it, fix the name or remove "
            "migrationRef; "
            "nothing moves forward until then",
        ) from exc


async def _read_migration_lag(namespace: str, name: str) -> ev.LagObservation:
    try:
        obj = await request(
            "GET", f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/mailmigrations/{name}"
        )
    except kube.KubeError as exc:
        if exc.status == 404:
            return ev.LagObservation(found=False)
        return ev.LagObservation(found=True, error=f"reading MailMigration {name}: HTTP {exc.status}")
    lag = (obj.get("status") or {}).get("lag") or {}
    if "maxSeconds" not in lag:
        return ev.LagObservation(found=True)
    return ev.LagObservation(
        found=True,
        max_seconds=int(lag["maxSeconds"]),
        pending_messages=int(lag.get("pendingMessages", 0) or 0),
    )


# ------------------------------------------------------------------------------------ engine
@dataclass
class Ctx:
    namespace: str
    name: str
    uid: str
    generation: int
    annotations: dict[str, str]
    body: Any  # for kopf events
    spec: DnsCutoverSpec
    status: DnsCutoverStatus
    provider: DnsProvider | None = None
    dkim: list[ph.DkimRecord] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    rolled_back: bool = False
    problem: bool = False  # a SpecProblem/ProviderError was reported in this reconcile

    @property
    def labels(self) -> dict[str, str]:
        return {"namespace": self.namespace, "dnscutover": self.name, "domain": self.spec.domain}

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def cond(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.status.conditions = set_condition(
            self.status.conditions,
            type_,
            status,
            reason,
            message,
            self.generation,
        )

    def history(self, from_phase: DnsPhase, to_phase: DnsPhase, reason: str, message: str = "") -> None:
        entry = DnsHistoryEntry(
            time=now(), from_phase=from_phase, to_phase=to_phase, reason=reason, message=message[:1024]
        )
        self.status.history = [*self.status.history, entry][-MAX_HISTORY:]

    async def save(self) -> None:
        await _patch_status(self.namespace, self.name, self.status)


def _phase(ctx: Ctx) -> DnsPhase:
    return ctx.status.phase or "Planned"


def _stage(ctx: Ctx) -> int:
    return ctx.status.dmarc_stage or 0


def _last_stage(ctx: Ctx) -> int:
    return len(ctx.spec.records.dmarc.stages) - 1


def _validate_extra(spec: DnsCutoverSpec) -> None:
    """Checks the CRD schema cannot express."""
    if spec.records.dkim:
        sels = spec.records.dkim.selectors
        if any(s.algorithm == "ed25519" for s in sels) and not any(s.algorithm == "rsa" for s in sels):
            raise SpecProblem(
                "InvalidSpec",
                "an ed25519 DKIM selector needs an rsa selector beside it "
                "(RFC 8463; many receivers verify only RSA)",
            )
        names = [s.name for s in sels]
        if len(names) != len(set(names)):
            raise SpecProblem("InvalidSpec", "DKIM selector names must be unique")
    found = dns_checks.spec_problem(spec)
    if found is not None:
        raise SpecProblem(*found)
    if spec.ttl.lowered > spec.ttl.normal:
        raise SpecProblem("InvalidSpec", "ttl.lowered must not exceed ttl.normal")


async def _provider(ctx: Ctx) -> DnsProvider:
    ref = ctx.spec.provider.secret_ref
    secret: dict[str, str] = {}
    if ref is not None:
        found = await _secret(ctx.namespace, ref.name)
        if found is None:
            raise SpecProblem(
                "SecretNotFound",
                f"Secret {ref.name} (provider.secretRef) not found in namespace "
                f"{ctx.namespace}: create it with the provider credentials",
            )
        secret = found
    elif (
        ctx.spec.provider.type == "rfc2136"
        and ctx.spec.provider.rfc2136
        and ctx.spec.provider.rfc2136.tsig_key_name
    ):
        raise SpecProblem(
            "SecretNotFound", "provider.rfc2136.tsigKeyName is set but provider.secretRef is missing"
        )
    try:
        return build_provider(ctx.spec, secret)
    except ProviderError as exc:
        raise SpecProblem(exc.reason, exc.message) from exc


async def _ensure_dkim(ctx: Ctx, needed: bool) -> None:
    """DKIM records of the spec; generated keys are created once (never regenerated) when needed."""
    cfg = ctx.spec.records.dkim
    ctx.dkim = []
    if cfg is None:
        return
    statuses: list[DkimKeyStatus] = []
    for sel in cfg.selectors:
        if sel.source == "cname":
            assert sel.cname_target is not None
            ctx.dkim.append(ph.DkimRecord(sel.name, "CNAME", sel.cname_target))
            continue
        if sel.source == "txt":
            assert sel.public_key is not None
            pub = sel.public_key.strip()
            value = pub if pub.lower().startswith("v=dkim1") else dkimlib.txt_value(sel.algorithm, pub)
            ctx.dkim.append(ph.DkimRecord(sel.name, "TXT", value))
            continue
        sname = dkimlib.secret_name(ctx.name, sel.name)
        data = await _secret(ctx.namespace, sname)
        if data is None:
            if not needed:
                continue
            pem = dkimlib.generate_private_pem(sel.algorithm)
            created = await _create_secret(
                ctx.namespace,
                sname,
                {
                    dkimlib.PRIVATE_KEY: pem.decode(),
                    dkimlib.ALGORITHM_KEY: sel.algorithm,
                    "selector": sel.name,
                    "domain": ctx.spec.domain,
                },
                {"name": ctx.name, "uid": ctx.uid},
            )
            if created:
                ctx.event(
                    "Normal",
                    "DkimKeyGenerated",
                    f"generated a {sel.algorithm} DKIM key for selector {sel.name} in Secret {sname}",
                )
            data = await _secret(ctx.namespace, sname)
            if data is None:
                raise SpecProblem("DkimKeyMissing", f"DKIM Secret {sname} vanished right after creation")
        if dkimlib.PRIVATE_KEY not in data and not await _ours(ctx, "secrets", sname):
            provider = ctx.spec.provider.secret_ref
            loop = (
                " (it is this DnsCutover's own provider Secret)"
                if provider and provider.name == sname
                else ""
            )
            raise SpecProblem(
                "DkimSecretConflict",
                f"Secret {sname}, where selector {sel.name} keeps its DKIM key ({ctx.name}-dkim-<selector>), "
                f"already exists, was not created by this DnsCutover and has no {dkimlib.PRIVATE_KEY}{loop}: "
                "rename the selector or that Secret (do not delete it: it belongs to something else)",
            )
        try:
            alg, pub = dkimlib.public_key_b64(data[dkimlib.PRIVATE_KEY].encode())
        except (KeyError, ValueError) as exc:
            raise SpecProblem(
                "DkimKeyInvalid",
                f"Secret {sname} has no usable {dkimlib.PRIVATE_KEY} (PEM private key): fix or delete it",
            ) from exc
        if alg != sel.algorithm:
            raise SpecProblem(
                "DkimKeyInvalid",
                f"Secret {sname} holds a {alg} key but selector {sel.name} wants {sel.algorithm}",
            )
        ctx.dkim.append(ph.DkimRecord(sel.name, "TXT", dkimlib.txt_value(alg, pub)))
        statuses.append(
            DkimKeyStatus(
                selector=sel.name,
                algorithm=alg,
                secret_name=sname,
                public_key_sha256=dkimlib.fingerprint(pub),
            )
        )
    ctx.status.dkim = statuses


async def _read_current(ctx: Ctx) -> dict[ph.Key, RRset | None]:
    assert ctx.provider is not None
    keys = ph.managed_keys(ctx.spec)
    for snap in ctx.status.snapshots:
        for r in snap.rrsets:
            if (r.name, r.type) not in keys:
                keys.append((r.name, r.type))
    return {k: await ctx.provider.get(*k) for k in keys}


def _inputs(ctx: Ctx, current: dict[ph.Key, RRset | None]) -> ph.Inputs:
    return ph.Inputs(spec=ctx.spec, originals=ph.originals_from(ctx.status.snapshots, current), dkim=ctx.dkim)


async def _check_spf(ctx: Ctx, inp: ph.Inputs) -> None:
    want = ph.desired(inp, "Staged")
    values = [v for v in txt_values(want.get((inp.names.apex, "TXT"))) if spflib.is_spf(v)]
    if not values:
        return
    resolve = settings.current().spf_resolve
    count = await spflib.count_lookups(values[0], _spf_lookup if resolve else None)
    try:
        count.check()
    except spflib.SpfError as exc:
        raise SpecProblem("SpfLimitExceeded", f"{exc}: merged record would be {values[0]!r}") from exc


async def _check_mx(ctx: Ctx) -> None:
    """Before the MX swap: every new MX host must have an address. In the managed zone the provider
    says so authoritatively; elsewhere only a definite NXDOMAIN counts (MAILFERRY_SPF_RESOLVE=0: skipped)."""
    assert ctx.provider is not None
    zone = ctx.provider.zone
    resolve = settings.current().spf_resolve
    for i, mx in enumerate(ctx.spec.records.mx):
        host = fqdn(mx.host)
        if dns_checks.in_zone(host, zone):
            for rtype in ("A", "AAAA", "CNAME"):
                if await ctx.provider.get(host, rtype) is not None:
                    break
            else:
                raise SpecProblem(
                    "MxHostUnresolvable",
                    f"spec.records.mx[{i}].host {host} has no A, AAAA or CNAME record in zone {zone}: "
                    "mail would bounce after the MX switch; publish its address first",
                )
        elif resolve and await _nxdomain(host):
            raise SpecProblem(
                "MxHostUnresolvable",
                f"spec.records.mx[{i}].host {host} does not exist (NXDOMAIN): mail would bounce after the "
                "MX switch; check the name",
            )


async def _nxdomain(name: str) -> bool:
    import dns.exception
    import dns.resolver

    try:
        await _spf_resolver().resolve(name, "A", lifetime=3)
    except dns.resolver.NXDOMAIN:
        return True
    except dns.exception.DNSException:
        return False
    return False


def _spf_resolver() -> Any:
    """The system resolver, or MAILFERRY_SPF_NAMESERVERS (host:port, comma-separated) when set."""
    import dns.asyncresolver

    configured = list(settings.current().spf_nameservers)
    if not configured:
        return dns.asyncresolver.get_default_resolver()
    res = dns.asyncresolver.Resolver(configure=False)
    servers = [probes.parse_nameserver(x) for x in configured]
    res.nameservers = [h for h, _ in servers]
    res.port = servers[0][1]
    return res


async def _spf_lookup(name: str) -> list[str] | None:
    import dns.exception
    import dns.resolver

    try:
        ans = await _spf_resolver().resolve(name, "TXT", lifetime=3)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.DNSException as exc:
        raise spflib.LookupUnavailable(name) from exc
    return [b"".join(r.strings).decode(errors="replace") for r in ans]


async def _write(ctx: Ctx, changes: dict[ph.Key, RRset], current: dict[ph.Key, RRset | None]) -> int:
    """Write each RRset that differs from what the provider holds now. Returns the number written."""
    assert ctx.provider is not None
    written = 0
    for k, want in changes.items():
        if rrset_equal(current.get(k), want):
            continue
        await ctx.provider.replace(want)
        current[k] = want if want.records else None
        written += 1
        log.info(
            "%s/%s: wrote %s %s (%d record(s), ttl %d)",
            ctx.namespace,
            ctx.name,
            k[0],
            k[1],
            len(want.records),
            want.ttl,
        )
    return written


async def _sync_mta_sts(ctx: Ctx, inp: ph.Inputs, phase: str, stage: int) -> None:
    cfg = ctx.spec.records.mta_sts
    if cfg is None or not cfg.enabled:
        return
    policy = ph.mta_sts_policy(inp, phase, stage)
    cm_name = cfg.policy_config_map or f"{ctx.name}-mta-sts"
    if policy is None:
        if ctx.status.mta_sts is None:
            return
        # Rolled back below Staged: keep serving a policy (senders cache it for max_age), in mode none.
        hosts = [m.host for m in ctx.spec.records.mx] + mx_hosts(inp.original(inp.names.apex, "MX"))
        policy = mtasts.render("none", hosts, cfg.max_age_seconds)
    await _upsert_configmap(ctx.namespace, cm_name, {mtasts.POLICY_KEY: policy}, ctx.name)
    mode = mtasts.parse(policy).get("mode", ["none"])[0]
    ctx.status.mta_sts = MtaStsStatus(
        id=mtasts.policy_id(policy),
        mode=mode,
        policy_sha256=mtasts.policy_sha256(policy),
    )


async def _converge(ctx: Ctx, current: dict[ph.Key, RRset | None], phase: DnsPhase, stage: int) -> int:
    """Make the provider hold desired(phase, stage); first add anything it changes to the phase's snapshot."""
    inp = _inputs(ctx, current)
    want = ph.desired(inp, phase, stage)
    changes = {k: v for k, v in want.items() if not rrset_equal(current.get(k), v)}
    if not changes:
        await _sync_mta_sts(ctx, inp, phase, stage)
        return 0
    if phase != "Planned":
        snap = next((s for s in ctx.status.snapshots if s.phase == phase), None)
        have = {(r.name, r.type) for r in snap.rrsets} if snap else set()
        missing = [k for k in changes if k not in have]
        if missing:
            extra = [current.get(k) or absent(*k) for k in missing]
            if snap is None:
                snap = Snapshot(phase=phase, taken_at=now(), rrsets=extra)
                ctx.status.snapshots = [*ctx.status.snapshots, snap]
            else:
                snap.rrsets = [*snap.rrsets, *extra]
            await ctx.save()  # the snapshot is stored before any record of it changes
    # MTA-STS: the policy is served before the TXT id that announces it changes.
    await _sync_mta_sts(ctx, inp, phase, stage)
    return await _write(ctx, changes, current)


async def _rollback_step(ctx: Ctx, current: dict[ph.Key, RRset | None]) -> None:
    phase = _phase(ctx)
    to = ph.prev_phase(phase)
    snap = next((s for s in ctx.status.snapshots if s.phase == phase), None)
    written = 0
    if snap is not None:
        written = await _write(ctx, {(r.name, r.type): r for r in snap.rrsets}, current)
    ctx.status.snapshots = [s for s in ctx.status.snapshots if s.phase != phase]
    ctx.status.phase = to
    ctx.cond("Ready", "False", "RollingBack", f"rolling back from {phase} toward {ctx.spec.target_phase}")
    ctx.status.phase_entered_at = now()
    ctx.status.dmarc_stage = None
    ctx.status.gates = []
    ctx.status.plan = None
    if ph.phase_index(to) < ph.phase_index("Switched"):
        ctx.status.switched_at = None
    if ph.phase_index(to) < ph.phase_index("TTLLowered"):
        ctx.status.ttl_lowered_at = None
    inp = _inputs(ctx, current)
    await _sync_mta_sts(ctx, inp, to, 0)
    restored = len(snap.rrsets) if snap else 0
    msg = f"rolled back from {phase} to {to}: restored {restored} RRset(s), wrote {written}"
    ctx.history(phase, to, "RolledBack", msg)
    ctx.cond("RolledBack", "True", "RolledBack", msg)
    ctx.event("Normal", "RolledBack", msg)
    ctx.rolled_back = True
    metrics.dnscutover_transitions.labels(**ctx.labels, direction="rollback").inc()
    await ctx.save()


# ------------------------------------------------------------------------------------- gates
def _gates_for(ctx: Ctx, phase: DnsPhase) -> list[Gate]:
    g = ctx.spec.gates
    return {
        "TTLLowered": g.ttl_lowered,
        "Staged": g.staged,
        "Switched": g.switched,
        "Enforced": g.enforced,
    }.get(phase, [])


def _approved(ctx: Ctx) -> str | None:
    ann = ctx.annotations.get(APPROVAL_ANNOTATION)
    spec = ctx.spec.approved_phase
    cands = [p for p in (ann, spec) if p in DNS_PHASES]
    return max(cands, key=DNS_PHASES.index) if cands else None


async def _expectations(ctx: Ctx, gate: Gate, inp: ph.Inputs) -> list[probes.Expectation]:
    want = ph.desired(inp, _phase(ctx), _stage(ctx))
    cfg = gate.dns_record
    if cfg is None or cfg.name is None:
        return [probes.Expectation.of(r) for r in want.values()]
    name = fqdn(cfg.name, ctx.spec.domain)
    rtype = (cfg.type or "TXT").upper()
    if cfg.value is not None:
        return [
            probes.Expectation(
                name, rtype, {probes.comparable(rtype, _as_record(rtype, cfg.value))}, any_of=True
            )
        ]
    rr = want.get((name, rtype))
    if rr is None:
        raise SpecProblem(
            "InvalidGate",
            f"gate {gate.name}: {name} {rtype} is not a record mailferry manages; give dnsRecord.value",
        )
    return [probes.Expectation.of(rr)]


def _as_record(rtype: str, value: str) -> str:
    if rtype == "TXT" and not value.startswith('"'):
        return split_txt(value)
    return value


async def _evaluate_gate(
    ctx: Ctx, gate: Gate, st: GateStatus, target: DnsPhase, inp: ph.Inputs
) -> GateStatus:
    t = now()
    phase = _phase(ctx)
    if gate.type == "minDuration":
        return ev.min_duration(gate, st, ctx.status.phase_entered_at, t)
    if gate.type == "manualApproval":
        return ev.manual_approval(st, target, _approved(ctx), t)
    if gate.type == "ttlElapsed":
        if ph.phase_index(phase) >= ph.phase_index("Switched"):
            return ev.ttl_elapsed(st, ctx.status.switched_at, ctx.spec.ttl.lowered, t)
        if phase == "Planned":
            return st.model_copy(
                update={"result": "Passed", "message": "no TTL lowered yet", "last_evaluated": t}
            )
        return ev.ttl_elapsed(st, ctx.status.ttl_lowered_at, ph.old_ttl(inp), t)
    if gate.type == "syncLag":
        if ctx.spec.migration_ref is None:
            return ev.sync_lag(gate, st, ev.LagObservation(found=False), t).model_copy(
                update={"message": "a syncLag gate needs spec.migrationRef"}
            )
        obs = await _read_migration_lag(ctx.namespace, ctx.spec.migration_ref.name)
        return ev.sync_lag(gate, st, obs, t)
    if gate.type == "prometheus":
        if not ev.prometheus_due(gate, st, t):
            return st
        assert gate.prometheus is not None
        pobs = await probes.probe_prometheus(gate.prometheus.address, gate.prometheus.query)
        return ev.prometheus(gate, st, pobs, t)
    if gate.type == "dnsRecord":
        cfg = gate.dns_record
        zone = fqdn(ctx.spec.provider.zone or ctx.spec.domain)
        try:
            servers = await probes.resolve_nameservers(cfg.nameservers if cfg else [], zone)
        except Exception as exc:  # resolver failures of many kinds
            which = ", ".join(cfg.nameservers) if cfg and cfg.nameservers else f"of zone {zone}"
            return ev.dns_record(
                gate,
                st,
                ev.DnsObservation(error=f"finding nameservers ({which}): {type(exc).__name__} {exc}"[:300]),
                t,
            )
        exps = await _expectations(ctx, gate, inp)
        dobs = await probes.probe_dns(exps, servers)
        mcfg = ctx.spec.records.mta_sts
        policy = ph.mta_sts_policy(inp, phase, _stage(ctx))
        if (cfg is None or cfg.name is None) and mcfg is not None and mcfg.enabled and policy is not None:
            url = mcfg.policy_url or mtasts.url(ctx.spec.domain)
            text, err = await probes.fetch_policy(url)
            problems = probes.compare_policy(policy, text)
            if err:
                problems = [f"{problems[0]} ({err})"]
            if problems:
                dobs.problems.setdefault(url, []).extend(problems)
            else:
                dobs.problems.setdefault(url, [])
        return ev.dns_record(gate, st, dobs, t)
    return st


async def _run_gates(ctx: Ctx, target: DnsPhase, inp: ph.Inputs) -> tuple[ev.Outcome, str]:
    """Evaluate the gates of the next step. status.gates only ever holds the next step's gates: it is
    emptied whenever a step (phase or DMARC stage) is taken or rolled back."""
    previous = {s.name: s for s in ctx.status.gates if s.phase == target}
    results: list[GateStatus] = []
    for gate in _gates_for(ctx, target):
        st = previous.get(gate.name)
        if st is None or st.type != gate.type:
            st = ev.fresh(gate, target)
        results.append(await _evaluate_gate(ctx, gate, st, target, inp))
    ctx.status.gates = results
    for r in results:
        for res in ("Pending", "Passed", "Failed", "Inconclusive"):
            metrics.dnscutover_gate.labels(
                **ctx.labels, phase=target, gate=r.name, type=r.type, result=res
            ).set(1 if r.result == res else 0)
    return ev.summarize(results)


# ---------------------------------------------------------------------------------- reconcile
async def _step(ctx: Ctx) -> bool:
    """One action; True when another step may follow right away."""
    spec = ctx.spec
    phase = _phase(ctx)
    target = spec.target_phase
    current = await _read_current(ctx)
    # Roll back without gates: restore the snapshot of the phase we leave.
    if ph.phase_index(phase) > ph.phase_index(target):
        if spec.dry_run:
            snap = next((s for s in ctx.status.snapshots if s.phase == phase), None)
            ctx.status.plan = ph.plan(_inputs(ctx, current), current, phase, ph.prev_phase(phase), 0, now())
            if snap is not None:
                ctx.status.plan.changes = ph.diff(current, {(r.name, r.type): r for r in snap.rrsets})
            ctx.cond(
                "Paused", "True", "DryRun", f"spec.dryRun: would roll back {phase} -> {ph.prev_phase(phase)}"
            )
            return False
        await _rollback_step(ctx, current)
        return True
    # Make sure the current phase is fully in place (finishes a phase a crash interrupted).
    if not spec.dry_run:
        written = await _converge(ctx, current, phase, _stage(ctx))
        if written:
            log.info("%s/%s: %s converged (%d RRset(s) written)", ctx.namespace, ctx.name, phase, written)
    if phase != "Planned" and ctx.status.ttl_lowered_at is None and not spec.dry_run:
        ctx.status.ttl_lowered_at = now()
    if (
        ph.phase_index(phase) >= ph.phase_index("Switched")
        and ctx.status.switched_at is None
        and not spec.dry_run
    ):
        ctx.status.switched_at = now()
    inp = _inputs(ctx, current)
    # What is next?
    if ph.phase_index(phase) < ph.phase_index(target):
        nxt, nstage = ph.next_phase(phase), 0
    elif phase == "Enforced" and _stage(ctx) < _last_stage(ctx):
        nxt, nstage = "Enforced", _stage(ctx) + 1
    else:
        ctx.status.plan = None
        ctx.status.gates = []
        ctx.cond("GatesPassed", "True", "AtTarget", f"at the target phase {target}")
        ctx.cond("Paused", "False", "AtTarget", "")
        return False
    if spec.migration_ref is not None:
        await _check_migration(ctx, spec.migration_ref.name)
    if ph.phase_index(nxt) >= ph.phase_index("Staged"):
        await _check_spf(ctx, inp)
    if nxt == "Switched":
        await _check_mx(ctx)
    plan = ph.plan(inp, current, phase, nxt, nstage, now())
    if ctx.status.plan is None or ctx.status.plan.changes != plan.changes:
        log.info(
            "%s/%s: plan %s -> %s/%d: %d change(s)",
            ctx.namespace,
            ctx.name,
            phase,
            nxt,
            nstage,
            len(plan.changes),
        )
    else:
        plan.computed_at = ctx.status.plan.computed_at
    failed_before = sorted(g.name for g in ctx.status.gates if g.result == "Failed" and g.phase == nxt)
    outcome, message = await _run_gates(ctx, nxt, inp)
    ctx.status.plan = plan
    label = nxt if nstage == 0 else f"{nxt} (DMARC stage {nstage + 1}/{_last_stage(ctx) + 1})"
    if outcome == "Failed":
        prev = get_condition(ctx.status.conditions, "Stalled")
        failed = sorted(g.name for g in ctx.status.gates if g.result == "Failed")
        if prev is None or prev.status != "True" or prev.reason != "GateFailed" or failed_before != failed:
            ctx.event("Warning", "GateFailed", f"gates for {label}: {message}")
        ctx.cond("Stalled", "True", "GateFailed", message)
        ctx.cond("GatesPassed", "False", "GateFailed", message)
        ctx.cond("Paused", "False", "GateFailed", "")
        return False
    ctx.cond("Stalled", "False", "AsExpected", "")
    if outcome != "Passed":
        reason = "GatesInconclusive" if outcome == "Inconclusive" else "WaitingForGates"
        ctx.cond("Paused", "True", reason, message)
        ctx.cond("GatesPassed", "False", reason, message)
        return False
    ctx.cond("GatesPassed", "True", "GatesPassed", message)
    if spec.dry_run:
        ctx.cond(
            "Paused", "True", "DryRun", f"spec.dryRun: {len(plan.changes)} change(s) planned for {label}"
        )
        return False
    ctx.cond("Paused", "False", "Progressing", "")
    # Advance: persist the new phase (and, in _converge, the snapshot) before writing records.
    ctx.status.phase = nxt
    ctx.status.dmarc_stage = nstage if nxt == "Enforced" else None
    ctx.status.phase_entered_at = now()
    ctx.status.gates = []
    if nxt == "Switched":
        ctx.status.switched_at = None
    ctx.history(
        phase, nxt, "Advanced" if nstage == 0 else "DmarcStage", f"{label}: {len(plan.changes)} change(s)"
    )
    ctx.cond("RolledBack", "False", "Advanced", "")
    ctx.cond("Ready", "False", "Progressing", f"writing the records of {label}")
    ctx.event("Normal", "PhaseChanged", f"{phase} -> {label}: {len(plan.changes)} record change(s)")
    if nstage == 0:
        metrics.dnscutover_transitions.labels(**ctx.labels, direction="forward").inc()
    snap_keys = (
        ph.snapshot_keys(inp, current, nxt) if not any(s.phase == nxt for s in ctx.status.snapshots) else []
    )
    if snap_keys:
        ctx.status.snapshots = [
            *ctx.status.snapshots,
            Snapshot(phase=nxt, taken_at=now(), rrsets=[current.get(k) or absent(*k) for k in snap_keys]),
        ]
    await ctx.save()
    await _converge(ctx, current, nxt, nstage)
    if nxt == "TTLLowered":
        ctx.status.ttl_lowered_at = now()
    if nxt == "Switched":
        ctx.status.switched_at = now()
    ctx.status.plan = None
    await ctx.save()
    return True


def _finish_conditions(ctx: Ctx) -> None:
    phase, target = _phase(ctx), ctx.spec.target_phase
    done = phase == target and (phase != "Enforced" or _stage(ctx) >= _last_stage(ctx))
    stalled = get_condition(ctx.status.conditions, "Stalled")
    if done and not ctx.spec.dry_run and not ctx.problem:
        ctx.cond("Ready", "True", "AtTargetPhase", f"{phase} is in place")
        ctx.cond("Stalled", "False", "AsExpected", "")
        ctx.cond("Paused", "False", "AtTarget", "")
    elif stalled is not None and stalled.status == "True":
        ctx.cond("Ready", "False", stalled.reason, stalled.message)
    else:
        ctx.cond("Ready", "False", "Progressing", f"{phase} -> {target}")
    for c in DNS_CONDITIONS:
        if get_condition(ctx.status.conditions, c) is None:
            ctx.cond(c, "False", "NotYet" if c != "Stalled" else "AsExpected", "")
    ctx.status.observed_generation = ctx.generation


def _metrics(ctx: Ctx) -> None:
    phase = _phase(ctx)
    for p in DNS_PHASES:
        metrics.dnscutover_phase.labels(**ctx.labels, phase=p).set(1 if p == phase else 0)
    metrics.dnscutover_phase_index.labels(**ctx.labels).set(ph.phase_index(phase))
    for c in ctx.status.conditions:
        metrics.dnscutover_condition.labels(**ctx.labels, condition=c.type).set(
            1 if c.status == "True" else 0
        )


async def reconcile(namespace: str, name: str, body: Any) -> None:
    obj = await _get_object(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return  # deleting a DnsCutover never changes DNS
    meta = obj["metadata"]
    try:
        status = DnsCutoverStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = DnsCutoverStatus()
    try:
        spec = DnsCutoverSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        await _patch_status_raw(
            namespace,
            name,
            {
                "observedGeneration": meta.get("generation"),
                "conditions": [
                    c.to_api()
                    for c in set_condition(
                        status.conditions,
                        "Stalled",
                        "True",
                        "InvalidSpec",
                        str(exc)[:1000],
                        meta.get("generation"),
                    )
                ],
            },
        )
        return
    ctx = Ctx(
        namespace=namespace,
        name=name,
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        annotations=dict(meta.get("annotations") or {}),
        body=body,
        spec=spec,
        status=status,
    )
    if ctx.status.phase is None:
        ctx.status.phase = "Planned"
    if ctx.status.observed_generation != ctx.generation:
        # a new spec: gates that failed get another chance
        ctx.status.gates = [g for g in ctx.status.gates if g.result != "Failed"]
    try:
        owner = await _domain_owner(namespace, name, meta, spec.domain)
        elsewhere = _other_namespace_owner(namespace, name, meta, spec.domain)
        if owner is None and elsewhere is not None:
            raise SpecProblem(
                "DomainConflict",
                f"DnsCutover {elsewhere} (another namespace) already manages {spec.domain}: this one changes "
                "nothing until that one is deleted or this one's domain changes",
            )
        if owner is not None:
            raise SpecProblem(
                "DomainConflict",
                f"DnsCutover {owner} in this namespace already manages {spec.domain}: this one changes "
                "nothing until that one is deleted or this one's domain changes",
            )
        _validate_extra(spec)
        ctx.provider = await _provider(ctx)
        try:
            await ctx.provider.check_zone()
            needs_dkim = max(
                ph.phase_index(_phase(ctx)), ph.phase_index(spec.target_phase)
            ) >= ph.phase_index("Staged")
            await _ensure_dkim(ctx, needs_dkim)
            for _ in range(MAX_STEPS):
                if not await _step(ctx):
                    break
        finally:
            await ctx.provider.aclose()
        ctx.status.last_error = None
        stalled = get_condition(ctx.status.conditions, "Stalled")
        if stalled is not None and stalled.status == "True" and stalled.reason != "GateFailed":
            ctx.cond("Stalled", "False", "AsExpected", "")
    except SpecProblem as exc:
        _problem(ctx, exc.reason, exc.message)
    except ProviderError as exc:
        _problem(ctx, exc.reason, exc.message + (" (retried)" if exc.transient else ""))
    except kube.KubeError as exc:
        metrics.reconcile_errors.labels("kubernetes").inc()
        answer = f"HTTP {exc.status} {exc.reason}" if exc.status else f"unreachable ({exc.reason})"
        _problem(ctx, "KubernetesApiError", f"Kubernetes API: {answer}")
    _finish_conditions(ctx)
    _metrics(ctx)
    await ctx.save()
    for type_, reason, message in ctx.events:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])


def _problem(ctx: Ctx, reason: str, message: str) -> None:
    prev = get_condition(ctx.status.conditions, "Stalled")
    if prev is None or prev.status != "True" or prev.message != message:
        ctx.event("Warning", reason, message)
    log.warning("%s/%s: %s: %s", ctx.namespace, ctx.name, reason, message)
    ctx.cond("Stalled", "True", reason, message)
    ctx.problem = True
    ctx.status.last_error = ErrorInfo(reason=reason, message=message[:4096], time=now())


async def _locked(namespace: str, name: str, uid: str, body: Any) -> None:
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # being deleted: nothing to do (deleting a DnsCutover never changes DNS)
    lock = _locks.setdefault(uid, asyncio.Lock())
    async with lock:
        try:
            # bounded, so a stuck call can never keep Kopf from releasing the object (e.g. on deletion)
            await asyncio.wait_for(reconcile(namespace, name, body), timeout=RECONCILE_TIMEOUT)
        except TimeoutError as exc:
            metrics.reconcile_errors.labels("timeout").inc()
            raise kopf.TemporaryError(f"reconcile took over {RECONCILE_TIMEOUT:.0f}s", delay=5) from exc
        except (kube.KubeError, OSError) as exc:
            metrics.reconcile_errors.labels("dnscutover").inc()
            raise kopf.TemporaryError(f"reconcile failed: {type(exc).__name__}", delay=5) from exc


@kopf.on.startup()
def dnscutover_settings(settings: kopf.OperatorSettings, **_: Any) -> None:
    # A DnsCutover being deleted waits for its gate timer to stop; Kopf re-checks a timer that was
    # running at that moment only every `cancellation_polling` seconds (default 60).
    settings.background.cancellation_polling = min(settings.background.cancellation_polling, 5.0)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL)
async def dnscutover_changed(namespace: str | None, name: str, uid: str, body: Any, **kwargs: Any) -> None:
    _remember_index(kwargs)
    await _locked(namespace or "default", name, uid, body)


@kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=GATE_INTERVAL, initial_delay=min(GATE_INTERVAL, 5.0))
async def dnscutover_gates(namespace: str | None, name: str, uid: str, body: Any, **kwargs: Any) -> None:
    _remember_index(kwargs)
    await _locked(namespace or "default", name, uid, body)
