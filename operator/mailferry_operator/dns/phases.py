"""The records of each phase, computed from the spec and the original RRsets (pure).

desired(phase, stage) depends only on the spec, the RRsets as they were before mailferry
touched them (`originals`), and the DKIM public keys, so a restarted operator computes the
same records and compares before writing.

Own only what you wrote: in an RRset others share (the apex TXT, `_dmarc` TXT) mailferry manages one
value (the SPF record, the DMARC record); every other value is taken from what the zone holds *now*
(`current`), so a verification string added mid-cutover survives every phase and every rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from mailferry_api.dnscutover import (
    DNS_PHASES,
    DnsCutoverSpec,
    DnsPhase,
    Plan,
    RecordChange,
    RRset,
    Snapshot,
)

from ..mtasts import policy as mtasts
from . import dmarc, spf
from .rrset import (
    absent,
    fqdn,
    mx_hosts,
    record_digest,
    record_ttls,
    rrset_equal,
    split_txt,
    txt_values,
    with_ttl,
)

Key = tuple[str, str]


def phase_index(phase: str) -> int:
    return DNS_PHASES.index(phase)


def next_phase(phase: str) -> DnsPhase:
    return DNS_PHASES[phase_index(phase) + 1]  # type: ignore[return-value]


def prev_phase(phase: str) -> DnsPhase:
    return DNS_PHASES[phase_index(phase) - 1]  # type: ignore[return-value]


@dataclass
class Names:
    apex: str
    dmarc: str
    mta_sts: str
    tls_rpt: str

    @classmethod
    def of(cls, domain: str) -> Names:
        apex = fqdn(domain)
        return cls(
            apex=apex, dmarc="_dmarc." + apex, mta_sts="_mta-sts." + apex, tls_rpt="_smtp._tls." + apex
        )

    def dkim(self, selector: str) -> str:
        return f"{selector}._domainkey.{self.apex}"


@dataclass
class DkimRecord:
    selector: str
    type: str  # TXT or CNAME
    value: str  # TXT: the joined value (v=DKIM1; ...); CNAME: the target


@dataclass
class Inputs:
    spec: DnsCutoverSpec
    originals: dict[Key, RRset]
    dkim: list[DkimRecord] = field(default_factory=list)
    current: dict[Key, RRset | None] = field(default_factory=dict)
    # an MTA-STS policy was published and a sender may still hold one: below Staged a `mode: none` policy is
    # served under its own id (False again once every policy a sender could cache has expired)
    mta_sts_published: bool = False
    # the switch has drained (status.drainUntil passed): the old MX leave the MTA-STS policy
    drained: bool = False
    # the `_mta-sts` TXT value mailferry published last, once no policy a sender holds can need it: deleted
    mta_sts_retired: str | None = None

    @property
    def names(self) -> Names:
        return Names.of(self.spec.domain)

    def original(self, name: str, rtype: str) -> RRset:
        return self.originals.get((name, rtype)) or absent(name, rtype)

    def original_spf(self) -> str | None:
        return next((v for v in txt_values(self.original(self.names.apex, "TXT")) if spf.is_spf(v)), None)

    def original_dmarc(self) -> str | None:
        return next(
            (v for v in txt_values(self.original(self.names.dmarc, "TXT")) if dmarc.is_dmarc(v)), None
        )

    def stages(self) -> int:
        return len(self.spec.records.dmarc.stages)


def managed_keys(spec: DnsCutoverSpec, dkim_types: dict[str, str] | None = None) -> list[Key]:
    """Every RRset mailferry may change for this spec."""
    n = Names.of(spec.domain)
    keys: list[Key] = [(n.apex, "MX"), (n.apex, "TXT"), (n.dmarc, "TXT")]
    if spec.records.dkim:
        for sel in spec.records.dkim.selectors:
            keys.append((n.dkim(sel.name), "CNAME" if sel.source == "cname" else "TXT"))
    if spec.records.mta_sts and spec.records.mta_sts.enabled:
        keys.append((n.mta_sts, "TXT"))
    if spec.records.tls_rpt:
        keys.append((n.tls_rpt, "TXT"))
    return keys


def old_ttl(inp: Inputs) -> int:
    """The longest TTL of the records that TTLLowered lowers (what caches may still hold)."""
    return max((t for r in _lowered_sources(inp) for t in record_ttls(r)), default=0)


def _lowered_sources(inp: Inputs) -> list[RRset]:
    n = inp.names
    out = [inp.original(n.apex, "MX")]
    if inp.original_spf() is not None:
        out.append(inp.original(n.apex, "TXT"))
    if inp.original_dmarc() is not None:
        out.append(inp.original(n.dmarc, "TXT"))
    return out


def mta_sts_policy(inp: Inputs, phase: str, stage: int) -> str | None:
    """The policy served in `phase`. Below Staged, once one was published and until every policy a sender
    may hold has expired: `mode: none` listing every MX (RFC 8461 §8.3), so a sender holding a cached
    policy fetches one that lets mail through. From Switched on, the old MX stay listed until the drain."""
    cfg = inp.spec.records.mta_sts
    if cfg is None or not cfg.enabled:
        return None
    if phase_index(phase) < phase_index("Staged"):
        if not inp.mta_sts_published:
            return None
        hosts = [m.host for m in inp.spec.records.mx] + mx_hosts(inp.original(inp.names.apex, "MX"))
        return mtasts.render("none", hosts, cfg.max_age_seconds)
    new = cfg.mx or [m.host.rstrip(".").lower() for m in inp.spec.records.mx]
    # Senders whose cache still holds the old MX deliver there until the switch has drained: a policy
    # without the old MX would make an enforcing sender refuse them, so they leave only after the drain.
    switched = phase_index(phase) >= phase_index("Switched")
    old = [] if switched and inp.drained else mx_hosts(inp.original(inp.names.apex, "MX"))
    if phase == "Enforced":
        last = stage >= inp.stages() - 1
        age = cfg.enforced_max_age_seconds if last else cfg.max_age_seconds
        return mtasts.render("enforce", [*new, *old], age)
    return mtasts.render("testing", [*new, *old], cfg.max_age_seconds)


def _txt(name: str, ttl: int, values: list[str]) -> RRset:
    return RRset(name=name, type="TXT", ttl=ttl, records=[split_txt(v) for v in values])


def _replace_txt(orig: RRset, name: str, ttl: int, match: str, new_value: str | None) -> RRset:
    """The TXT RRset with the record that `match` selects ("spf"/"dmarc") replaced, others kept."""
    test = spf.is_spf if match == "spf" else dmarc.is_dmarc
    kept = [r for r, v in zip(orig.records, txt_values(orig), strict=True) if not test(v)]
    records = kept + ([split_txt(new_value)] if new_value is not None else [])
    return RRset(name=name, type="TXT", ttl=ttl, records=records)


def shared_value(name: str, rtype: str, domain: str) -> Callable[[str], bool] | None:
    """For an RRset others share: which of its values mailferry manages (None: it manages all)."""
    n = Names.of(domain)
    if rtype == "TXT" and name == n.apex:
        return spf.is_spf
    if rtype == "TXT" and name == n.dmarc:
        return dmarc.is_dmarc
    return None


def keep_foreign(rrset: RRset, current: RRset | None, domain: str) -> RRset:
    """`rrset` with the values of `current` that mailferry does not manage kept beside its own."""
    ours = shared_value(rrset.name, rrset.type, domain)
    if ours is None or current is None or not current.records:
        return rrset
    foreign = [r for r, v in zip(current.records, txt_values(current), strict=True) if not ours(v)]
    then = [r for r, v in zip(rrset.records, txt_values(rrset), strict=True) if not ours(v)]
    if sorted(foreign) == sorted(then):
        return rrset  # nobody else changed it: exactly as wanted (per-record TTLs included)
    mine = [r for r, v in zip(rrset.records, txt_values(rrset), strict=True) if ours(v)]
    ttl = rrset.ttl if rrset.records else current.ttl
    records = foreign + mine
    # A value `rrset` has keeps its own TTL (Cloudflare keeps one per record) and its provider attributes.
    own = {record_digest(rrset.type, r): t for r, t in zip(rrset.records, record_ttls(rrset), strict=True)}
    ttls = [own.get(record_digest(rrset.type, r), ttl) for r in records]
    return RRset(
        name=rrset.name,
        type=rrset.type,
        ttl=ttls[0] if ttls else ttl,
        records=records,
        record_ttls=ttls if rrset.record_ttls and len(set(ttls)) > 1 else [],
        record_attrs=rrset.record_attrs,
    )


def desired(inp: Inputs, phase: str, stage: int = 0) -> dict[Key, RRset]:
    """The managed RRsets as they should be in `phase` (DMARC `stage` within Enforced)."""
    out = _desired(inp, phase, stage)
    return {k: keep_foreign(r, inp.current.get(k), inp.spec.domain) for k, r in out.items()}


def _desired(inp: Inputs, phase: str, stage: int) -> dict[Key, RRset]:
    spec, n = inp.spec, inp.names
    idx = phase_index(phase)
    low, normal = spec.ttl.lowered, spec.ttl.normal
    out: dict[Key, RRset] = {k: inp.original(*k) for k in managed_keys(spec)}
    below_staged = mta_sts_policy(inp, phase, stage)
    if below_staged is not None and idx < phase_index("Staged"):
        out[(n.mta_sts, "TXT")] = _txt(n.mta_sts, spec.ttl.lowered, [mtasts.txt_value(below_staged)])
    elif inp.mta_sts_retired is not None and idx < phase_index("Staged"):
        # the snapshot that knew `_mta-sts` before the cutover is gone: take out only the value written
        now = inp.current.get((n.mta_sts, "TXT")) or absent(n.mta_sts, "TXT")
        kept = [r for r, v in zip(now.records, txt_values(now), strict=True) if v != inp.mta_sts_retired]
        out[(n.mta_sts, "TXT")] = RRset(name=n.mta_sts, type="TXT", ttl=now.ttl, records=kept)
    if idx == 0:
        return out
    enforced = phase == "Enforced"
    ttl = normal if enforced else low

    def lowered(r: RRset) -> RRset:
        if not r.records:
            return r
        return with_ttl(r, ttl if enforced else min(max(record_ttls(r), default=r.ttl), low))

    for r in _lowered_sources(inp):
        out[(r.name, r.type)] = lowered(r)
    if idx < phase_index("Staged"):
        return out

    # Staged: DKIM, merged SPF, DMARC p=none with rua, MTA-STS testing, TLS-RPT.
    apex_txt = inp.original(n.apex, "TXT")
    spf_cfg = spec.records.spf
    new_spf = spf.merge(
        inp.original_spf(),
        spf_cfg.include,
        spf_cfg.remove_include if enforced else [],
        spf_cfg.all if enforced else None,
    )
    out[(n.apex, "TXT")] = _replace_txt(
        apex_txt, n.apex, ttl if enforced else min(apex_txt.ttl or low, low), "spf", new_spf
    )
    for rec in inp.dkim:
        name = n.dkim(rec.selector)
        if rec.type == "CNAME":
            out[(name, "CNAME")] = RRset(name=name, type="CNAME", ttl=ttl, records=[fqdn(rec.value)])
        else:
            out[(name, "TXT")] = _txt(name, ttl, [rec.value])
    dm = spec.records.dmarc
    if enforced:
        st = dm.stages[min(stage, len(dm.stages) - 1)]
        dmarc_value = dmarc.render(inp.original_dmarc(), st, dm.rua)
    else:
        dmarc_value = dmarc.staged(inp.original_dmarc(), dm.rua)
    orig_dm = inp.original(n.dmarc, "TXT")
    out[(n.dmarc, "TXT")] = _replace_txt(
        orig_dm, n.dmarc, ttl if enforced else min(orig_dm.ttl or low, low), "dmarc", dmarc_value
    )
    policy = mta_sts_policy(inp, phase, stage)
    if policy is not None:
        out[(n.mta_sts, "TXT")] = _txt(n.mta_sts, ttl, [mtasts.txt_value(policy)])
    if spec.records.tls_rpt:
        rua = ",".join(u if ":" in u else f"mailto:{u}" for u in spec.records.tls_rpt.rua)
        out[(n.tls_rpt, "TXT")] = _txt(n.tls_rpt, ttl, [f"v=TLSRPTv1; rua={rua}"])
    if idx < phase_index("Switched"):
        return out

    out[(n.apex, "MX")] = RRset(
        name=n.apex, type="MX", ttl=ttl, records=[f"{m.priority} {fqdn(m.host)}" for m in spec.records.mx]
    )
    return out


def steps(inp: Inputs, phase: str) -> list[int]:
    return list(range(inp.stages())) if phase == "Enforced" else [0]


def diff(current: dict[Key, RRset | None], want: dict[Key, RRset]) -> list[RecordChange]:
    changes: list[RecordChange] = []
    for k, after in want.items():
        before = current.get(k)
        if rrset_equal(before, after):
            continue
        b = before if before is not None and before.records else None
        a = after if after.records else None
        action = "create" if b is None else ("delete" if a is None else "replace")
        changes.append(RecordChange(action=action, name=k[0], type=k[1], before=b, after=a))
    return changes


def plan(
    inp: Inputs,
    current: dict[Key, RRset | None],
    from_phase: DnsPhase,
    to_phase: DnsPhase,
    stage: int,
    at: datetime,
) -> Plan:
    return Plan(
        from_phase=from_phase,
        to_phase=to_phase,
        changes=diff(current, desired(inp, to_phase, stage)),
        computed_at=at,
    )


def snapshot_keys(inp: Inputs, current: dict[Key, RRset | None], phase: str) -> list[Key]:
    """Keys any step of `phase` would change from what is there now."""
    keys: list[Key] = []
    for stage in steps(inp, phase):
        for k, after in desired(inp, phase, stage).items():
            if k not in keys and not rrset_equal(current.get(k), after):
                keys.append(k)
    return keys


def originals_from(snapshots: list[Snapshot], current: dict[Key, RRset | None]) -> dict[Key, RRset]:
    """Each key as it was before mailferry's first change: the earliest snapshot holding it, else now."""
    out: dict[Key, RRset] = {}
    for snap in sorted(snapshots, key=lambda s: phase_index(s.phase), reverse=True):
        for r in snap.rrsets:
            out[(r.name, r.type)] = r
    for k, cur in current.items():
        if k not in out:
            out[k] = cur if cur is not None else absent(*k)
    return out
