"""The PowerDNS REST and RFC 2136 providers against a real PowerDNS: read and replace whole RRsets,
retries through injected faults (HTTP 500, timeouts, REFUSED), nothing half-applied."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from fixtures._proc import wait_until
from fixtures.powerdns import PowerDNS
from mailferry_api.dnscutover import RRset
from mailferry_operator.dns.providers.base import ProviderError, RetryPolicy
from mailferry_operator.dns.providers.powerdns import PowerDnsProvider
from mailferry_operator.dns.providers.rfc2136 import Rfc2136Provider
from mailferry_operator.dns.rrset import split_txt

sys.path.insert(0, str(Path(__file__).parent))
from dns_faults import DnsFaultProxy, Fault, HttpFaultProxy

_n = itertools.count()
FAST = RetryPolicy(attempts=5, base_delay=0.05, max_delay=0.2)


def new_zone(pdns: PowerDNS) -> str:
    zone = f"prov{next(_n)}.test."
    pdns.create_zone(
        zone, [("@", "MX", 3600, "10 mx.old.test."), ("@", "TXT", 3600, ["v=spf1 -all", "hello"])]
    )
    return zone


def both_providers(pdns: PowerDNS, zone: str) -> list[PowerDnsProvider | Rfc2136Provider]:
    return [
        PowerDnsProvider(pdns.api_url, pdns.api_key, zone, retry=FAST),
        Rfc2136Provider(pdns.host, pdns.port, zone, retry=FAST),
    ]


@pytest.mark.parametrize("kind", ["powerdns", "rfc2136"])
async def test_read_replace_delete_rrsets(powerdns: PowerDNS, kind: str) -> None:
    zone = new_zone(powerdns)
    prov = both_providers(powerdns, zone)[0 if kind == "powerdns" else 1]
    try:
        await prov.check_zone()
        mx = await prov.get(zone, "MX")
        assert mx is not None and mx.ttl == 3600 and mx.records == ["10 mx.old.test."]
        txt = await prov.get(zone, "TXT")
        assert txt is not None and sorted(txt.records) == ['"hello"', '"v=spf1 -all"']
        assert await prov.get("nothing." + zone, "TXT") is None

        long_value = "v=DKIM1; k=rsa; p=" + "Q" * 380
        dk = RRset(name="sel._domainkey." + zone, type="TXT", ttl=120, records=[split_txt(long_value)])
        await prov.replace(dk)
        assert powerdns.answer("sel._domainkey." + zone, "TXT") == [long_value]
        raw = powerdns.query("sel._domainkey." + zone, "TXT").answer[0][0]
        assert [len(s) for s in raw.strings] == [255, len(long_value) - 255]

        new_mx = RRset(name=zone, type="MX", ttl=60, records=["10 mx1.dest.test.", "20 mx2.dest.test."])
        await prov.replace(new_mx)
        assert sorted(powerdns.answer(zone, "MX")) == ["10 mx1.dest.test.", "20 mx2.dest.test."]
        assert powerdns.query(zone, "MX").answer[0].ttl == 60

        await prov.replace(RRset(name="sel._domainkey." + zone, type="TXT", ttl=0, records=[]))
        assert powerdns.answer("sel._domainkey." + zone, "TXT") == []
        assert await prov.get("sel._domainkey." + zone, "TXT") is None
    finally:
        await prov.aclose()


async def test_unknown_zone_is_reported(powerdns: PowerDNS) -> None:
    for prov in both_providers(powerdns, "no-such-zone.test."):
        with pytest.raises(ProviderError) as info:
            await prov.check_zone()
        assert info.value.reason == "ZoneNotFound"
        await prov.aclose()


async def test_unreachable_api_is_transient_and_reported() -> None:
    prov = PowerDnsProvider(
        "http://127.0.0.1:9", "k", "x.test", retry=RetryPolicy(attempts=2, base_delay=0.01)
    )
    with pytest.raises(ProviderError) as info:
        await prov.check_zone()
    assert info.value.reason == "ProviderUnreachable" and info.value.transient
    await prov.aclose()


async def test_tsig_required_and_wrong_key_is_not_retried(powerdns: PowerDNS) -> None:
    zone = new_zone(powerdns)
    key = powerdns.create_tsig_key(f"k{next(_n)}")
    powerdns.allow_dnsupdate(zone, key)
    good = Rfc2136Provider(
        powerdns.host, powerdns.port, zone, key.name, key.secret, key.algorithm, retry=FAST
    )
    await good.replace(RRset(name="t." + zone, type="TXT", ttl=60, records=['"signed"']))
    assert powerdns.answer("t." + zone, "TXT") == ["signed"]
    bad = Rfc2136Provider(
        powerdns.host, powerdns.port, zone, key.name, "c2VjcmV0c2VjcmV0c2VjcmV0", key.algorithm, retry=FAST
    )
    with pytest.raises(ProviderError) as info:
        await bad.replace(RRset(name="t." + zone, type="TXT", ttl=60, records=['"unsigned"']))
    assert "secret" not in info.value.message.lower() or "c2Vj" not in info.value.message
    assert powerdns.answer("t." + zone, "TXT") == ["signed"]


async def test_http_500_and_timeouts_are_retried_without_half_applied_rrsets(powerdns: PowerDNS) -> None:
    zone = new_zone(powerdns)
    proxy = HttpFaultProxy(f"http://127.0.0.1:{powerdns.webserver_port}", hang_seconds=2.0)
    proxy.faults = [Fault("500"), Fault("hang"), Fault("500-after"), Fault("500", method="GET")]
    prov = PowerDnsProvider(proxy.url, powerdns.api_key, zone, timeout=1.0, retry=FAST)
    try:
        want = RRset(name=zone, type="MX", ttl=60, records=["10 mx1.dest.test.", "20 mx2.dest.test."])
        await prov.replace(want)  # 500, timeout, then succeeds
        assert sorted(powerdns.answer(zone, "MX")) == ["10 mx1.dest.test.", "20 mx2.dest.test."]
        # 500, the hang (answered 504 after the client gave up), 500 after applying, then 204
        wait_until(lambda: len(proxy.patches()) == 4, timeout=10, what="the hung request to finish")
        assert sorted(e[3] for e in proxy.patches()) == [204, 500, 500, 504]
        # replace() reads the RRset first (to keep disabled records): that GET met the 500 and was retried
        assert proxy.faults == []
        # every PATCH carried the whole RRset: never a partial record list
        for _, _, body, _ in proxy.patches():
            assert body.count(b'"content"') == 2
        # "500-after" was applied by PowerDNS although the client saw a failure: the retry sends the
        # same REPLACE again (idempotent), so the end state is exactly the wanted RRset
        got = await prov.get(zone, "MX")
        assert got is not None and sorted(got.records) == sorted(want.records) and got.ttl == 60
    finally:
        await prov.aclose()
        proxy.close()


async def test_persistent_500_gives_up_with_a_reason_and_leaves_the_rrset_untouched(
    powerdns: PowerDNS,
) -> None:
    zone = new_zone(powerdns)
    proxy = HttpFaultProxy(f"http://127.0.0.1:{powerdns.webserver_port}")
    proxy.faults = [Fault("500") for _ in range(10)]
    prov = PowerDnsProvider(proxy.url, powerdns.api_key, zone, retry=RetryPolicy(attempts=3, base_delay=0.01))
    try:
        with pytest.raises(ProviderError) as info:
            await prov.replace(RRset(name=zone, type="MX", ttl=60, records=["10 new.test."]))
        assert info.value.transient and "500" in info.value.message
        assert len(proxy.patches()) == 3
        assert powerdns.answer(zone, "MX") == ["10 mx.old.test."]
    finally:
        await prov.aclose()
        proxy.close()


async def test_rfc2136_refused_is_retried_and_update_is_atomic(powerdns: PowerDNS) -> None:
    zone = new_zone(powerdns)
    proxy = DnsFaultProxy(powerdns.address, refuse_updates=2)
    prov = Rfc2136Provider("127.0.0.1", proxy.port, zone, retry=FAST)
    try:
        want = RRset(
            name=zone, type="TXT", ttl=90, records=['"v=spf1 include:a.test ~all"', '"hello"', '"x"']
        )
        await prov.replace(want)
        assert proxy.refused == 2 and proxy.forwarded_updates == 1
        assert sorted(powerdns.answer(zone, "TXT")) == ["hello", "v=spf1 include:a.test ~all", "x"]
        assert powerdns.query(zone, "TXT").answer[0].ttl == 90
        # replacing again with the same content sends no UPDATE at all (compared before writing)
        await prov.replace(want)
        assert proxy.forwarded_updates == 1
    finally:
        proxy.close()


async def test_rfc2136_prerequisite_protects_a_concurrent_change(powerdns: PowerDNS) -> None:
    """The UPDATE carries 'RRset exists with exactly these values': a change made by someone else
    between our read and our write makes the server reject it (YXRRSET/NXRRSET), we re-read and
    apply on top of the new state instead of blindly overwriting half of it."""
    import dns.asyncquery
    import dns.rcode
    import dns.update

    zone = new_zone(powerdns)
    old = await Rfc2136Provider(powerdns.host, powerdns.port, zone).get(zone, "TXT")
    assert old is not None
    import dns.rdataset

    rds = dns.rdataset.from_text("IN", "TXT", 0, '"v=spf1 -all"')  # not the whole RRset
    upd = dns.update.UpdateMessage(zone)
    upd.present(zone, rds)
    upd.replace(zone, 60, "TXT", '"clobbered"')
    resp = await dns.asyncquery.tcp(upd, powerdns.host, port=powerdns.port, timeout=5)
    assert resp.rcode() == dns.rcode.NXRRSET
    assert sorted(powerdns.answer(zone, "TXT")) == ["hello", "v=spf1 -all"]


async def test_disabled_records_survive_a_change_and_its_rollback(powerdns: PowerDNS) -> None:
    """A record someone disabled in PowerDNS is not served, so mailferry neither reads nor owns it: the
    lowered/changed RRset and the restored one keep it, disabled, byte for byte; and the RRset's comments
    (PowerDNS keeps them per RRset: a REPLACE without `comments` leaves them) stay as they were."""
    zone = new_zone(powerdns)
    txt = powerdns.api("GET", f"/zones/{zone}")["rrsets"]
    apex = next(r for r in txt if r["name"] == zone and r["type"] == "TXT")
    apex["records"].append({"content": '"old-verification=disabled"', "disabled": True})
    apex["comments"] = [{"content": "verification strings: ask IT", "account": "it-team"}]
    powerdns.api("PATCH", f"/zones/{zone}", {"rrsets": [{**apex, "changetype": "REPLACE"}]})

    def raw() -> list[tuple[str, bool | str]]:
        rrsets = powerdns.api("GET", f"/zones/{zone}")["rrsets"]
        found = next(r for r in rrsets if r["name"] == zone and r["type"] == "TXT")
        comments = [(c["content"], c["account"]) for c in found.get("comments", [])]
        return sorted((r["content"], r["disabled"]) for r in found["records"]) + sorted(comments)

    before = raw()
    prov = PowerDnsProvider(powerdns.api_url, powerdns.api_key, zone, retry=FAST)
    try:
        snapshot = await prov.get(zone, "TXT")
        assert snapshot is not None and sorted(snapshot.records) == ['"hello"', '"v=spf1 -all"']
        await prov.replace(
            snapshot.model_copy(update={"ttl": 60, "records": ['"v=spf1 include:x.test -all"']})
        )
        assert ('"old-verification=disabled"', True) in raw()
        assert ("verification strings: ask IT", "it-team") in raw()
        assert powerdns.answer(zone, "TXT") == ["v=spf1 include:x.test -all"]
        await prov.replace(snapshot)
        assert raw() == before
        assert powerdns.query(zone, "TXT").answer[0].ttl == 3600
    finally:
        await prov.aclose()


@pytest.mark.parametrize("kind", ["powerdns", "rfc2136"])
async def test_a_value_added_after_the_pass_read_the_zone_survives_its_write(
    powerdns: PowerDNS, kind: str
) -> None:
    """The pass computes the apex TXT from the zone as it read it, then saves its status and writes. A
    verification string someone adds in between is read again just before the write and kept (apply.run);
    a non-shared RRset (the MX) is written as computed."""
    from mailferry_api.dnscutover import DnsCutoverSpec, DnsCutoverStatus
    from mailferry_operator.dns import phases as ph
    from mailferry_operator.dnscutover import apply
    from mailferry_operator.dnscutover import draft as dc
    from mailferry_operator.dnscutover.observe import Live

    zone = new_zone(powerdns)
    prov = both_providers(powerdns, zone)[0 if kind == "powerdns" else 1]
    spec = DnsCutoverSpec.model_validate(
        {
            "domain": zone.rstrip("."),
            "provider": {"type": "powerdns", "secretRef": {"name": "p"}, "powerdns": {"apiUrl": "http://x"}},
            "records": {"mx": [{"host": "mx1.dest.test", "priority": 10}]},
        }
    )
    try:
        await prov.check_zone()
        read = await prov.get(zone, "TXT")  # the pass's read (PowerDNS: the zone is read once per pass)
        assert read is not None
        wanted = ph.keep_foreign(
            RRset(name=zone, type="TXT", ttl=300, records=['"hello"', '"v=spf1 include:spf.dest.test -all"']),
            read,
            spec.domain,
        )
        powerdns.set_rrset(zone, "@", "TXT", 3600, ["v=spf1 -all", "hello", "MS=ms12345"])  # someone else
        mx = RRset(name=zone, type="MX", ttl=300, records=["10 mx1.dest.test."])
        decision = dc.Decision(DnsCutoverStatus(), [dc.WriteRRset(wanted), dc.WriteRRset(mx)])
        await apply.run(Live("ns", "cut", "uid", prov), spec, decision)
        assert sorted(powerdns.answer(zone, "TXT")) == [
            "MS=ms12345",
            "hello",
            "v=spf1 include:spf.dest.test -all",
        ]
        assert powerdns.answer(zone, "MX") == ["10 mx1.dest.test."]
    finally:
        await prov.aclose()


async def test_rfc2136_a_value_written_between_its_read_and_its_update_is_kept(powerdns: PowerDNS) -> None:
    """Someone writes the apex TXT right after the provider read it for a merge: the UPDATE's prerequisite
    (the RRset as read) fails, the next attempt reads again, and the merge keeps their value."""
    from mailferry_operator.dns import phases as ph

    zone = new_zone(powerdns)
    prov = Rfc2136Provider(powerdns.host, powerdns.port, zone, retry=FAST)
    mine = RRset(name=zone, type="TXT", ttl=300, records=['"hello"', '"v=spf1 include:spf.dest.test -all"'])
    seen: list[list[str]] = []

    def keep(current: RRset | None) -> RRset:
        assert current is not None
        seen.append(sorted(current.records))
        if len(seen) == 1:  # another writer, between this read and the UPDATE it prepares
            powerdns.set_rrset(zone, "@", "TXT", 3600, ["v=spf1 -all", "hello", "MS=ms12345"])
        return ph.keep_foreign(mine, current, zone.rstrip("."))

    try:
        wrote = await prov.replace(mine, keep)
        assert len(seen) == 2 and '"MS=ms12345"' in seen[1], seen  # the first UPDATE was refused
        assert sorted(powerdns.answer(zone, "TXT")) == [
            "MS=ms12345",
            "hello",
            "v=spf1 include:spf.dest.test -all",
        ]
        assert sorted(wrote.records) == ['"MS=ms12345"', '"hello"', '"v=spf1 include:spf.dest.test -all"']
    finally:
        await prov.aclose()
