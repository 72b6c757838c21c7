"""The dnsRecord probe against two real authoritative PowerDNS servers: TXT strings joined, CNAMEs
followed, every server asked directly, a silent server reported as unreachable (inconclusive)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from fixtures._proc import free_port
from fixtures.powerdns import PowerDNSPair
from mailferry_api.dnscutover import Gate, RRset
from mailferry_operator.dns.rrset import split_txt
from mailferry_operator.gates import evaluate as ev
from mailferry_operator.gates import probes

_n = itertools.count()
GATE = Gate(name="served", type="dnsRecord")
NOW = datetime(2026, 11, 25, tzinfo=UTC)


async def test_txt_joined_cname_followed_and_every_server_asked(powerdns_pair: PowerDNSPair) -> None:
    zone = f"probe{next(_n)}.test."
    long_value = "v=DKIM1; k=rsa; p=" + "Z" * 300
    powerdns_pair.create_zone(
        zone,
        [
            ("sel._domainkey", "TXT", 60, long_value),  # stored as two strings
            ("alias._domainkey", "CNAME", 60, f"sel._domainkey.{zone}"),
        ],
    )
    servers = [s.address for s in powerdns_pair]
    want_txt = RRset(name=f"sel._domainkey.{zone}", type="TXT", ttl=60, records=[split_txt(long_value)])
    via_cname = probes.Expectation(f"alias._domainkey.{zone}", "TXT", {long_value})
    absent = probes.Expectation(f"nothing.{zone}", "TXT", set())
    obs = await probes.probe_dns([probes.Expectation.of(want_txt), via_cname, absent], servers)
    assert obs.problems == {f"127.0.0.1:{s.port}": [] for s in powerdns_pair}
    assert ev.dns_record(GATE, ev.fresh(GATE, "Switched"), obs, NOW).result == "Passed"

    # the second server lags behind: its answer differs, the gate fails naming that server only
    powerdns_pair.primary.set_rrset(zone, "sel._domainkey", "TXT", 60, long_value + "X")
    want_new = probes.Expectation(f"sel._domainkey.{zone}", "TXT", {long_value + "X"})
    obs = await probes.probe_dns([want_new], servers)
    assert obs.problems[f"127.0.0.1:{powerdns_pair.primary.port}"] == []
    assert obs.problems[f"127.0.0.1:{powerdns_pair.secondary.port}"] == [f"sel._domainkey.{zone} TXT differs"]

    # explicit value (any_of) and a server that does not answer at all
    explicit = probes.Expectation(f"sel._domainkey.{zone}", "TXT", {long_value + "X"}, any_of=True)
    obs = await probes.probe_dns(
        [explicit], [powerdns_pair.primary.address, ("127.0.0.1", free_port())], timeout=0.5
    )
    assert list(obs.unreachable) and obs.problems == {f"127.0.0.1:{powerdns_pair.primary.port}": []}
    assert ev.dns_record(GATE, ev.fresh(GATE, "Switched"), obs, NOW).result == "Inconclusive"


async def test_nameserver_lists() -> None:
    assert probes.parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert probes.parse_nameserver("[::1]:53") == ("::1", 53)
    assert probes.parse_nameserver("ns1.example.test") == ("ns1.example.test", 53)
    assert await probes.resolve_nameservers(["127.0.0.1:1053", "10.0.0.1"], "x.test.") == [
        ("127.0.0.1", 1053),
        ("10.0.0.1", 53),
    ]
