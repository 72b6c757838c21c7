"""Lookups through a recursive resolver for the forward checks: SPF includes (RFC 7208 counting) and
whether a new MX host exists. The system resolver, or MAILFERRY_SPF_NAMESERVERS when set."""

from __future__ import annotations

from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailferry_api.dnscutover import DnsCutoverSpec
from mailferry_api.problems import Problem

from .. import settings
from ..dns import spec_checks as dns_checks
from ..dns import spf as spflib
from ..dns.providers.base import DnsProvider
from ..dns.rrset import fqdn
from ..gates import probes


def _resolver() -> Any:
    """The system resolver, or MAILFERRY_SPF_NAMESERVERS (host:port, comma-separated) when set."""
    configured = list(settings.current().spf_nameservers)
    if not configured:
        return dns.asyncresolver.get_default_resolver()
    res = dns.asyncresolver.Resolver(configure=False)
    servers = [probes.parse_nameserver(x) for x in configured]
    res.nameservers = [h for h, _ in servers]
    res.port = servers[0][1]
    return res


async def spf_lookup(name: str) -> list[str] | None:
    """The TXT strings at `name` (joined per record); None for NXDOMAIN."""
    try:
        ans = await _resolver().resolve(name, "TXT", lifetime=3)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.DNSException as exc:
        raise spflib.LookupUnavailable(name) from exc
    return [b"".join(r.strings).decode(errors="replace") for r in ans]


async def _nxdomain(name: str) -> bool:
    try:
        await _resolver().resolve(name, "A", lifetime=3)
    except dns.resolver.NXDOMAIN:
        return True
    except dns.exception.DNSException:
        return False
    return False


async def mx_problem(provider: DnsProvider, spec: DnsCutoverSpec) -> Problem | None:
    """Before the MX swap: every new MX host must have an address. In the managed zone the provider
    says so authoritatively; elsewhere only a definite NXDOMAIN counts (MAILFERRY_SPF_RESOLVE=0: skipped)."""
    zone = provider.zone
    resolve = settings.current().spf_resolve
    for i, mx in enumerate(spec.records.mx):
        host = fqdn(mx.host)
        if dns_checks.in_zone(host, zone):
            for rtype in ("A", "AAAA", "CNAME"):
                if await provider.get(host, rtype) is not None:
                    break
            else:
                return Problem(
                    "MxHostUnresolvable",
                    f"spec.records.mx[{i}].host {host} has no A, AAAA or CNAME record in zone {zone}: "
                    "mail would bounce after the MX switch; publish its address first",
                )
        elif resolve and await _nxdomain(host):
            return Problem(
                "MxHostUnresolvable",
                f"spec.records.mx[{i}].host {host} does not exist (NXDOMAIN): mail would bounce after the "
                "MX switch; check the name",
            )
    return None


def _report_domain(uri: str) -> str | None:
    """The domain of a mailto: report address (other URI schemes carry no authorization record)."""
    address = uri.removeprefix("mailto:") if ":" in uri else uri
    if ":" in address or "@" not in address:
        return None
    return address.rpartition("@")[2].split("!")[0].lower().rstrip(".")


async def rua_problem(spec: DnsCutoverSpec) -> Problem | None:
    """RFC 7489 §7.1: reports for example.com sent to another domain need that domain's consent,
    `example.com._report._dmarc.<other> TXT "v=DMARC1"`; receivers drop the address otherwise."""
    domain = spec.domain.lower().rstrip(".")
    for uri in spec.records.dmarc.rua:
        other = _report_domain(uri)
        if other is None or other == domain or other.endswith("." + domain):
            continue
        name = f"{domain}._report._dmarc.{other}"
        try:
            found = await spf_lookup(name)
        except spflib.LookupUnavailable:
            continue  # no answer now: not proof of a missing record
        if not any(v.replace(" ", "").lower().startswith("v=dmarc1") for v in found or []):
            return Problem(
                "DmarcReportUnauthorized",
                f'spec.records.dmarc.rua {uri} is outside {domain} and {name} has no "v=DMARC1" TXT record '
                "(RFC 7489 §7.1): receivers would drop the reports; ask that domain to publish it",
            )
    return None
