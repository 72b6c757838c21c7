"""Nameserver discovery when a DnsCutover lists none: the zone's NS RRset, asked through a resolver,
gives the servers every dnsRecord gate then queries. Two PowerDNS servers listen on port 53 of their
own loopback addresses, like real nameservers; the zone's SOA MNAME is a host nobody can resolve
(a hidden primary is common), which must not stop discovery."""

from __future__ import annotations

import random

import dns.asyncresolver
import pytest

from fixtures.powerdns import PowerDNSFactory
from mailferry_operator.gates import probes


def _loopback() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


async def test_servers_come_from_the_ns_rrset_and_each_is_asked(
    powerdns_factory: PowerDNSFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = "discovered.test."
    a, b = powerdns_factory(host=_loopback(), port=53), powerdns_factory(host=_loopback(), port=53)
    dkim = "v=DKIM1; k=rsa; p=MIIB"
    for server in (a, b):
        server.create_zone(
            zone,
            [("ns1", "A", 60, a.host), ("ns2", "A", 60, b.host)],
            soa="hidden-primary.invalid. hostmaster.discovered.test. 1 3600 600 86400 60",
        )
    a.set_rrset(zone, "sel._domainkey", "TXT", 60, dkim)  # b lags behind

    # The operator's "system resolver" here is the first nameserver itself (it answers NS and A).
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [a.host]
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", resolver)

    servers = await probes.resolve_nameservers([], zone)
    assert sorted(servers) == sorted([(a.host, 53), (b.host, 53)])
    want = probes.Expectation(f"sel._domainkey.{zone}", "TXT", {dkim})
    obs = await probes.probe_dns([want], servers)
    assert obs.problems == {f"{a.host}:53": [], f"{b.host}:53": [f"sel._domainkey.{zone} TXT missing"]}
