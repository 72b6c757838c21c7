"""SPF merge + lookup counting, DKIM keys, DMARC, TXT splitting, MTA-STS policy (pure)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailferry_api.dnscutover import DmarcStage, RRset
from mailferry_operator.dns import dkim, dmarc, spf
from mailferry_operator.dns.rrset import fqdn, rrset_equal, split_txt, txt_value
from mailferry_operator.mtasts import policy as mtasts


def test_split_txt_255_byte_strings_and_join_back() -> None:
    value = "v=DKIM1; k=rsa; p=" + "B" * 600
    rec = split_txt(value)
    parts = rec.split('" "')
    assert len(parts) == 3 and all(len(p.strip('"')) <= 255 for p in parts)
    assert txt_value(rec) == value


def test_fqdn_and_rrset_equality_ignores_case_and_order() -> None:
    assert fqdn("www", "example.test") == "www.example.test."
    assert fqdn("@", "example.test") == "example.test."
    a = RRset(name="x.", type="MX", ttl=60, records=["10 A.example.", "20 b.example."])
    b = RRset(name="x.", type="MX", ttl=60, records=["20 b.example.", "10 a.example."])
    assert rrset_equal(a, b)
    assert not rrset_equal(a, b.model_copy(update={"ttl": 61}))
    assert rrset_equal(None, RRset(name="x.", type="MX"))


def test_spf_merge_keeps_old_include_then_removes_it() -> None:
    old = "v=spf1 ip4:192.0.2.0/24 include:spf.old.test ~all"
    staged = spf.merge(old, ["spf.dest.test"], [], None)
    assert staged == "v=spf1 ip4:192.0.2.0/24 include:spf.old.test include:spf.dest.test ~all"
    assert spf.merge(staged, ["spf.dest.test"], [], None) == staged  # idempotent
    final = spf.merge(old, ["spf.dest.test"], ["spf.old.test"], "-all")
    assert final == "v=spf1 ip4:192.0.2.0/24 include:spf.dest.test -all"


async def test_spf_counts_nested_includes_and_refuses_includes_without_spf() -> None:
    zone = {
        "a.test": ["v=spf1 include:b.test include:c.test -all"],
        "b.test": ["v=spf1 a mx -all"],
        "c.test": ["v=spf1 ip4:192.0.2.1 -all"],
        "empty.test": [],
    }

    async def lookup(name: str) -> list[str] | None:
        return zone.get(name)

    count = await spf.count_lookups("v=spf1 include:a.test mx ~all", lookup)
    assert (count.lookups, count.void) == (6, 0)  # a, b, c, a, mx (in b), mx
    # an include without an SPF record is a permerror for every message (RFC 7208), not a void lookup
    with pytest.raises(spf.SpfError, match=r"include:nx1.test does not exist \(NXDOMAIN\).*permerror"):
        await spf.count_lookups("v=spf1 include:nx1.test ~all", lookup)
    with pytest.raises(spf.SpfError, match=r"include:empty\.test has no SPF record"):
        await spf.count_lookups("v=spf1 include:empty.test ~all", lookup)
    with pytest.raises(spf.SpfError, match=r"redirect=nx2\.test"):
        await spf.count_lookups("v=spf1 redirect=nx2.test", lookup)
    many = "v=spf1 " + " ".join(f"include:i{i}.test" for i in range(11)) + " ~all"
    with pytest.raises(spf.SpfError, match="11 DNS lookups"):
        (await spf.count_lookups(many)).check()


async def test_spf_unresolvable_include_counts_but_is_not_void() -> None:
    async def lookup(name: str) -> list[str] | None:
        raise spf.LookupUnavailable(name)

    c = await spf.count_lookups("v=spf1 include:x.test ~all", lookup)
    assert (c.lookups, c.void, c.unresolved) == (1, 0, ["x.test"])


def test_dkim_rsa_2048_and_ed25519_public_keys() -> None:
    pem = dkim.generate_private_pem("rsa")
    alg, pub = dkim.public_key_b64(pem)
    key = serialization.load_der_public_key(base64.b64decode(pub))
    assert alg == "rsa" and isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    alg2, pub2 = dkim.public_key_b64(dkim.generate_private_pem("ed25519"))
    assert alg2 == "ed25519" and len(base64.b64decode(pub2)) == 32
    ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(pub2))
    assert dkim.txt_value("rsa", pub).startswith("v=DKIM1; k=rsa; p=MII")
    # the same private key gives the same public key (keys are never regenerated)
    assert dkim.public_key_b64(pem) == (alg, pub)


def test_dmarc_render_stages() -> None:
    existing = "v=DMARC1; p=none; rua=mailto:a@x.test; ruf=mailto:f@x.test; pct=50"
    v = dmarc.render(existing, DmarcStage(policy="quarantine", testing=True), ["b@x.test"])
    assert v == "v=DMARC1; p=quarantine; t=y; rua=mailto:a@x.test,mailto:b@x.test; ruf=mailto:f@x.test"
    assert "pct=10" in dmarc.render(None, DmarcStage(policy="quarantine", pct=10), [])


def test_mta_sts_policy_id_changes_with_policy() -> None:
    a = mtasts.render("testing", ["mx1.dest.test", "MX.old.test."], 86400)
    b = mtasts.render("enforce", ["mx1.dest.test"], 86400)
    assert (
        a == "version: STSv1\r\nmode: testing\r\nmx: mx1.dest.test\r\nmx: mx.old.test\r\nmax_age: 86400\r\n"
    )
    assert mtasts.policy_id(a) != mtasts.policy_id(b)
    assert mtasts.policy_id(a) == mtasts.policy_id(
        mtasts.render("testing", ["mx1.dest.test", "mx.old.test"], 86400)
    )
    assert mtasts.same_policy(a, a.replace("\r\n", "\n"))
    assert not mtasts.same_policy(a, b)
    assert mtasts.txt_value(a).startswith("v=STSv1; id=")


def test_spf_redirect_is_kept_and_no_all_added_beside_it() -> None:
    merged = spf.merge(
        "v=spf1 include:spf.old.test redirect=_spf.example.test", ["spf.dest.test"], [], "-all"
    )
    assert merged == "v=spf1 include:spf.old.test include:spf.dest.test redirect=_spf.example.test"


@pytest.mark.parametrize(
    ("existing", "stage", "expected"),
    [
        ("v=DMARC1; p=reject", DmarcStage(policy="quarantine", testing=True), "v=DMARC1; p=reject"),
        ("v=DMARC1; p=reject; pct=50", DmarcStage(policy="reject"), "v=DMARC1; p=reject"),
        ("v=DMARC1; p=quarantine; pct=30", DmarcStage(policy="quarantine", testing=True), "pct=30"),
        ("v=DMARC1; p=quarantine; t=y", DmarcStage(policy="quarantine"), "v=DMARC1; p=quarantine; rua"),
        ("v=DMARC1; p=none", DmarcStage(policy="quarantine", testing=True), "p=quarantine; t=y"),
    ],
)
def test_dmarc_never_weaker_than_what_is_published(existing: str, stage: DmarcStage, expected: str) -> None:
    rendered = dmarc.render(existing, stage, ["d@example.test"])
    assert rendered.startswith(expected) or expected in rendered, rendered
    assert dmarc.staged("v=DMARC1; p=reject; t=y", []).startswith("v=DMARC1; p=reject; t=y")
