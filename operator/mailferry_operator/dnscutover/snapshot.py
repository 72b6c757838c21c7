"""What one step of a DnsCutover sees: the Snapshot observe.py fills and decide.py reads (pure, no I/O).

Also the few pure questions both sides ask: which step comes next, which gates guard it, which DKIM
records the spec and the Secrets make, and the inputs of dns/phases.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailferry_api.dnscutover import (
    DNS_PHASES,
    DkimKeyStatus,
    DnsCutoverSpec,
    DnsCutoverStatus,
    DnsPhase,
    Gate,
    RRset,
)
from mailferry_api.problems import Problem, ProblemError

from ..dns import dkim as dkimlib
from ..dns import phases as ph
from ..dns.rrset import rrset_equal
from ..gates import evaluate as ev
from ..mtasts import policy as mtasts

APPROVAL_ANNOTATION = "mailferry.io/approved-phase"

GateObservation = ev.LagObservation | ev.PromObservation | ev.DnsObservation | None


class SpecProblem(ProblemError):
    """A problem the CRD schema cannot catch; shown as Stalled with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)


@dataclass(frozen=True)
class DkimSecret:
    """A generated selector's Secret as observed: never the private key, only what it yields."""

    secret_name: str
    exists: bool
    has_key: bool = False
    ours: bool = True  # carries this DnsCutover's label or ownerReference
    is_provider_secret: bool = False
    algorithm: str | None = None  # of the private key; None when it does not parse
    public_b64: str | None = None


@dataclass(frozen=True)
class MigrationView:
    """The referenced MailMigration as the built-in migrationInSync gate sees it."""

    found: bool
    phase: str | None = None
    in_sync: bool = False
    lag: ev.LagObservation | None = None


@dataclass
class Snapshot:
    """Everything one step decides on. `status` is the status as the previous step left it."""

    namespace: str
    name: str
    uid: str
    generation: int
    annotations: dict[str, str]
    spec: DnsCutoverSpec
    status: DnsCutoverStatus
    now: datetime
    current: dict[ph.Key, RRset | None] = field(default_factory=dict)
    dkim_secrets: dict[str, DkimSecret] = field(default_factory=dict)
    # the first reason the next forward step may not be taken (migrationRef, SPF, MX host), if any
    forward_problem: Problem | None = None
    gate_observations: dict[str, GateObservation] = field(default_factory=dict)
    # built-in gates: what every authoritative nameserver serves, the zone's SOA, the MailMigration
    served: ev.DnsObservation | None = None  # the records the current phase wrote
    dkim_served: ev.DnsObservation | None = None
    mx_served: ev.DnsObservation | None = None  # the new MX, once Switched and not yet seen
    soa_negative_ttl: int | None = None
    migration: MigrationView | None = None

    @property
    def phase(self) -> DnsPhase:
        return self.status.phase or "Planned"

    @property
    def stage(self) -> int:
        return self.status.dmarc_stage or 0


Step = tuple[DnsPhase, int]


def last_stage(spec: DnsCutoverSpec) -> int:
    return len(spec.records.dmarc.stages) - 1


def rolling_back(spec: DnsCutoverSpec, status: DnsCutoverStatus) -> bool:
    return ph.phase_index(status.phase or "Planned") > ph.phase_index(spec.target_phase)


def next_step(spec: DnsCutoverSpec, status: DnsCutoverStatus) -> Step | None:
    """The forward step toward spec.targetPhase (a phase, or the next DMARC stage within Enforced)."""
    phase, stage = status.phase or "Planned", status.dmarc_stage or 0
    if ph.phase_index(phase) < ph.phase_index(spec.target_phase):
        return ph.next_phase(phase), 0
    if phase == "Enforced" and spec.target_phase == "Enforced" and stage < last_stage(spec):
        return "Enforced", stage + 1
    return None


def gates_for(spec: DnsCutoverSpec, phase: DnsPhase) -> list[Gate]:
    g = spec.gates
    return {
        "TTLLowered": g.ttl_lowered,
        "Staged": g.staged,
        "Switched": g.switched,
        "Enforced": g.enforced,
    }.get(phase, [])


def approved(spec: DnsCutoverSpec, annotations: dict[str, str]) -> str | None:
    cands = [p for p in (annotations.get(APPROVAL_ANNOTATION), spec.approved_phase) if p in DNS_PHASES]
    return max(cands, key=DNS_PHASES.index) if cands else None


def needs_dkim(spec: DnsCutoverSpec, status: DnsCutoverStatus) -> bool:
    """Generated keys are created only once a phase that publishes them is current or targeted."""
    top = max(ph.phase_index(status.phase or "Planned"), ph.phase_index(spec.target_phase))
    return top >= ph.phase_index("Staged")


def dkim_records(
    spec: DnsCutoverSpec, name: str, secrets: dict[str, DkimSecret]
) -> tuple[list[ph.DkimRecord], list[DkimKeyStatus], list[str]]:
    """(records, key statuses, selectors whose generated key does not exist yet)."""
    cfg = spec.records.dkim
    records: list[ph.DkimRecord] = []
    statuses: list[DkimKeyStatus] = []
    missing: list[str] = []
    if cfg is None:
        return records, statuses, missing
    for sel in cfg.selectors:
        if sel.source == "cname":
            assert sel.cname_target is not None
            records.append(ph.DkimRecord(sel.name, "CNAME", sel.cname_target))
            continue
        if sel.source == "txt":
            assert sel.public_key is not None
            pub = sel.public_key.strip()
            value = pub if pub.lower().startswith("v=dkim1") else dkimlib.txt_value(sel.algorithm, pub)
            records.append(ph.DkimRecord(sel.name, "TXT", value))
            continue
        found = secrets.get(sel.name)
        sname = dkimlib.secret_name(name, sel.name)
        if found is None or not found.exists:
            missing.append(sel.name)
            continue
        if not found.has_key and not found.ours:
            loop = " (it is this DnsCutover's own provider Secret)" if found.is_provider_secret else ""
            raise SpecProblem(
                "DkimSecretConflict",
                f"Secret {sname}, where selector {sel.name} keeps its DKIM key ({name}-dkim-<selector>), "
                f"already exists, was not created by this DnsCutover and has no {dkimlib.PRIVATE_KEY}{loop}: "
                "rename the selector or that Secret (do not delete it: it belongs to something else)",
            )
        if found.algorithm is None or found.public_b64 is None:
            raise SpecProblem(
                "DkimKeyInvalid",
                f"Secret {sname} has no usable {dkimlib.PRIVATE_KEY} (PEM private key): fix or delete it",
            )
        if found.algorithm != sel.algorithm:
            raise SpecProblem(
                "DkimKeyInvalid",
                f"Secret {sname} holds a {found.algorithm} key but selector {sel.name} wants {sel.algorithm}",
            )
        records.append(ph.DkimRecord(sel.name, "TXT", dkimlib.txt_value(sel.algorithm, found.public_b64)))
        statuses.append(
            DkimKeyStatus(
                selector=sel.name,
                algorithm=sel.algorithm,
                secret_name=sname,
                public_key_sha256=dkimlib.fingerprint(found.public_b64),
            )
        )
    return records, statuses, missing


def inputs(
    snap: Snapshot, current: dict[ph.Key, RRset | None] | None = None, status: DnsCutoverStatus | None = None
) -> ph.Inputs:
    """dns/phases.py's inputs: the spec, the records before mailferry touched them and as they are now,
    the DKIM records, whether an MTA-STS policy was ever published."""
    cur = snap.current if current is None else current
    st = snap.status if status is None else status
    records, _, _ = dkim_records(snap.spec, snap.name, snap.dkim_secrets)
    expired = mta_sts_expired(st, snap.now)
    return ph.Inputs(
        spec=snap.spec,
        originals=ph.originals_from(st.snapshots, cur),
        dkim=records,
        current=cur,
        mta_sts_published=st.mta_sts is not None and not expired,
        drained=st.drain_until is not None and snap.now >= st.drain_until,
        mta_sts_retired=mtasts.txt_of(st.mta_sts.id) if expired and st.mta_sts is not None else None,
    )


def mta_sts_expired(status: DnsCutoverStatus, now: datetime) -> bool:
    """Only `mode: none` is served and every policy a sender may have fetched before it has expired
    (status.mtaSts.enforceCachedUntil passed): `_mta-sts` may go (RFC 8461 §8.3). Unknown is not expired."""
    m = status.mta_sts
    until = m.enforce_cached_until if m is not None else None
    return m is not None and m.mode == "none" and until is not None and now >= until


def skipped(spec: DnsCutoverSpec, gate: str) -> bool:
    return any(s.gate == gate for s in spec.safety.skip)


def builtin_gates(spec: DnsCutoverSpec, nxt: DnsPhase) -> list[str]:
    """The built-in gates of the step into `nxt` (DESIGN.md "Cutover safety")."""
    out = ["minDwell", "recordsServed"]
    if nxt == "Switched":
        out += ["oldTtl", "dkimVerified"]
        if spec.migration_ref is not None:
            out.append("migrationInSync")
    return out


def written(inp: ph.Inputs, phase: DnsPhase, stage: int) -> list[RRset]:
    """The RRsets `phase` (DMARC `stage`) wrote: where it differs from the records before the cutover."""
    if phase == "Planned":
        return []
    return [r for k, r in ph.desired(inp, phase, stage).items() if not rrset_equal(inp.original(*k), r)]


def created_names(inp: ph.Inputs, phase: DnsPhase, stage: int) -> list[RRset]:
    """The RRsets `phase` created where nothing was before (negative caching applies to them)."""
    return [r for r in written(inp, phase, stage) if r.records and not inp.original(r.name, r.type).records]


def all_serve(obs: ev.DnsObservation | None) -> bool:
    """Every authoritative nameserver answered, and each serves what was asked exactly."""
    if obs is None or obs.error or obs.unreachable or not obs.problems:
        return False
    return not any(obs.problems.values())
