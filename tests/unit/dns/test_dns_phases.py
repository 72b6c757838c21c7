"""Pure phase logic: what each DnsCutover phase writes, plans, snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailferry_api.dnscutover import DnsCutoverSpec, RRset, Snapshot
from mailferry_operator.dns import phases as ph
from mailferry_operator.dns.rrset import rrset_equal, txt_values
from mailferry_operator.mtasts import policy as mtasts

D = "example.test."


def spec(**over: object) -> DnsCutoverSpec:
    base: dict[str, object] = {
        "domain": "example.test",
        "provider": {"type": "powerdns", "secretRef": {"name": "pdns"}, "powerdns": {"apiUrl": "http://x"}},
        "records": {
            "mx": [{"host": "mx1.dest.test", "priority": 10}, {"host": "mx2.dest.test", "priority": 20}],
            "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"], "all": "-all"},
            "dkim": {
                "selectors": [
                    {"name": "mf1", "source": "txt", "publicKey": "v=DKIM1; k=rsa; p=" + "A" * 400},
                    {"name": "s2", "source": "cname", "cnameTarget": "s2.dkim.dest.test"},
                ]
            },
            "dmarc": {"rua": ["dmarc@example.test"]},
            "mtaSts": {"maxAgeSeconds": 86400},
            "tlsRpt": {"rua": ["tls@example.test"]},
        },
        "ttl": {"lowered": 60, "normal": 3600},
    }
    base.update(over)
    return DnsCutoverSpec.model_validate(base)


def originals() -> dict[ph.Key, RRset]:
    return {
        (D, "MX"): RRset(name=D, type="MX", ttl=86400, records=["10 mx.old.test."]),
        (D, "TXT"): RRset(
            name=D,
            type="TXT",
            ttl=7200,
            records=['"v=spf1 include:spf.old.test ~all"', '"google-site-verification=abc"'],
        ),
        ("_dmarc." + D, "TXT"): RRset(
            name="_dmarc." + D,
            type="TXT",
            ttl=3600,
            records=['"v=DMARC1; p=none; rua=mailto:old@example.test"'],
        ),
    }


def inputs(s: DnsCutoverSpec | None = None) -> ph.Inputs:
    s = s or spec()
    dk = [
        ph.DkimRecord("mf1", "TXT", s.records.dkim.selectors[0].public_key or ""),  # type: ignore[union-attr]
        ph.DkimRecord("s2", "CNAME", "s2.dkim.dest.test"),
    ]
    return ph.Inputs(spec=s, originals=originals(), dkim=dk)


def test_planned_is_the_original_records() -> None:
    inp = inputs()
    want = ph.desired(inp, "Planned")
    assert rrset_equal(want[(D, "MX")], originals()[(D, "MX")])
    assert want[("_mta-sts." + D, "TXT")].records == []


def test_ttl_lowered_lowers_mx_spf_dmarc_only() -> None:
    want = ph.desired(inputs(), "TTLLowered")
    assert want[(D, "MX")].ttl == 60 and want[(D, "MX")].records == ["10 mx.old.test."]
    assert want[(D, "TXT")].ttl == 60
    assert want[("_dmarc." + D, "TXT")].ttl == 60
    assert want[("mf1._domainkey." + D, "TXT")].records == []
    assert ph.old_ttl(inputs()) == 86400


def test_staged_publishes_dkim_spf_dmarc_mtasts_tlsrpt() -> None:
    inp = inputs()
    want = ph.desired(inp, "Staged")
    apex = txt_values(want[(D, "TXT")])
    assert "google-site-verification=abc" in apex
    assert "v=spf1 include:spf.old.test include:spf.dest.test ~all" in apex
    dk = want[("mf1._domainkey." + D, "TXT")]
    assert txt_values(dk) == ["v=DKIM1; k=rsa; p=" + "A" * 400]
    assert dk.records[0].count('" "') == 1  # split into two strings of <= 255 bytes
    assert want[("s2._domainkey." + D, "CNAME")].records == ["s2.dkim.dest.test."]
    dmarc = txt_values(want[("_dmarc." + D, "TXT")])[0]
    assert dmarc.startswith("v=DMARC1; p=none") and "mailto:old@example.test" in dmarc
    assert "mailto:dmarc@example.test" in dmarc
    policy = ph.mta_sts_policy(inp, "Staged", 0)
    assert policy is not None and "mode: testing" in policy
    assert "mx: mx.old.test" in policy and "mx: mx1.dest.test" in policy
    assert txt_values(want[("_mta-sts." + D, "TXT")]) == [mtasts.txt_value(policy)]
    assert txt_values(want[("_smtp._tls." + D, "TXT")]) == ["v=TLSRPTv1; rua=mailto:tls@example.test"]
    assert want[(D, "MX")].records == ["10 mx.old.test."]  # MX not yet switched


def test_switched_swaps_mx() -> None:
    want = ph.desired(inputs(), "Switched")
    assert sorted(want[(D, "MX")].records) == ["10 mx1.dest.test.", "20 mx2.dest.test."]
    assert want[(D, "MX")].ttl == 60


def test_enforced_stages_dmarc_and_restores_ttls() -> None:
    inp = inputs()
    s0 = ph.desired(inp, "Enforced", 0)
    s1 = ph.desired(inp, "Enforced", 1)
    s2 = ph.desired(inp, "Enforced", 2)
    d = "_dmarc." + D
    assert txt_values(s0[(d, "TXT")])[0].startswith("v=DMARC1; p=quarantine; t=y")
    assert txt_values(s1[(d, "TXT")])[0].startswith("v=DMARC1; p=quarantine; rua=")
    assert txt_values(s2[(d, "TXT")])[0].startswith("v=DMARC1; p=reject; rua=")
    assert "pct=" not in txt_values(s2[(d, "TXT")])[0]
    apex = txt_values(s0[(D, "TXT")])
    assert "v=spf1 include:spf.dest.test -all" in apex and "google-site-verification=abc" in apex
    assert all(r.ttl == 3600 for r in s0.values() if r.records)
    assert "mx: mx.old.test" in (ph.mta_sts_policy(inp, "Enforced", 0) or "")  # the switch not drained yet
    inp.drained = True
    s0, s2 = ph.desired(inp, "Enforced", 0), ph.desired(inp, "Enforced", 2)
    p0, p2 = ph.mta_sts_policy(inp, "Enforced", 0), ph.mta_sts_policy(inp, "Enforced", 2)
    assert p0 is not None and "mode: enforce" in p0 and "mx.old.test" not in p0 and "max_age: 86400" in p0
    assert p2 is not None and "max_age: 604800" in p2
    assert txt_values(s0[("_mta-sts." + D, "TXT")]) != txt_values(s2[("_mta-sts." + D, "TXT")])  # id bumped


def test_legacy_pct_only_when_asked() -> None:
    s = spec()
    s.records.dmarc.stages[0].pct = 25
    assert "pct=25" in txt_values(ph.desired(inputs(s), "Enforced", 0)[("_dmarc." + D, "TXT")])[0]


def test_staged_never_weakens_an_existing_dmarc_policy() -> None:
    inp = inputs()
    inp.originals[("_dmarc." + D, "TXT")] = RRset(
        name="_dmarc." + D, type="TXT", ttl=300, records=['"v=DMARC1; p=reject; adkim=s"']
    )
    value = txt_values(ph.desired(inp, "Staged")[("_dmarc." + D, "TXT")])[0]
    assert "p=reject" in value and "adkim=s" in value


def test_plan_lists_exact_changes_and_nothing_when_in_place() -> None:
    inp = inputs()
    current: dict[ph.Key, RRset | None] = {k: inp.original(*k) for k in ph.managed_keys(inp.spec)}
    plan = ph.plan(inp, current, "Planned", "TTLLowered", 0, datetime.now(UTC))
    assert sorted((c.action, c.name, c.type) for c in plan.changes) == sorted(
        [("replace", D, "MX"), ("replace", D, "TXT"), ("replace", "_dmarc." + D, "TXT")]
    )
    after = {k: (v if v.records else None) for k, v in ph.desired(inp, "TTLLowered").items()}
    assert ph.diff(after, ph.desired(inp, "TTLLowered")) == []
    staged = ph.plan(inp, after, "TTLLowered", "Staged", 0, datetime.now(UTC))
    creates = {(c.name, c.type) for c in staged.changes if c.action == "create"}
    assert ("mf1._domainkey." + D, "TXT") in creates and ("_mta-sts." + D, "TXT") in creates


def test_snapshot_keys_cover_every_dmarc_stage_and_originals_come_from_the_earliest_snapshot() -> None:
    inp = inputs()
    cur = {k: (v if v.records else None) for k, v in ph.desired(inp, "Switched").items()}
    keys = ph.snapshot_keys(inp, cur, "Enforced")
    assert ("_dmarc." + D, "TXT") in keys and (D, "MX") in keys
    snaps = [Snapshot(phase="TTLLowered", taken_at=datetime.now(UTC), rrsets=list(originals().values()))]
    orig = ph.originals_from(snaps, cur)
    assert orig[(D, "MX")].ttl == 86400


@pytest.mark.parametrize("phase", ["Planned", "TTLLowered", "Staged", "Switched", "Enforced"])
def test_desired_is_deterministic(phase: str) -> None:
    a, b = ph.desired(inputs(), phase), ph.desired(inputs(), phase)
    assert all(rrset_equal(a[k], b[k]) for k in a)


def test_no_existing_spf_creates_one() -> None:
    inp = inputs()
    del inp.originals[(D, "TXT")]
    apex = ph.desired(inp, "Staged")[(D, "TXT")]
    assert txt_values(apex) == ["v=spf1 include:spf.dest.test ~all"] and apex.ttl == 60
