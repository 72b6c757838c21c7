"""Probes: the I/O behind the gates (DNS queries to every authoritative nameserver, the Prometheus
HTTP API, the MTA-STS policy over HTTP(S)). Each returns an observation for gates/evaluate.py.

dnsRecord asks each authoritative server directly with recursion off, the way cert-manager checks
DNS01: no resolver cache sits in between, so no negative answer is cached (RFC 2308) and mailferry
only ever asks for names of the phase it has already written.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import httpx

from mailferry_api import egress
from mailferry_api.dnscutover import RRset

from .. import settings
from ..dns.rrset import parse_record, txt_value
from ..mtasts import policy as mtasts
from .evaluate import DnsObservation, PromObservation

MAX_CNAME_HOPS = 8
# Prometheus' documented errorType values: the only words of an error answer that reach status.
PROMETHEUS_ERROR_TYPES = frozenset(
    {"timeout", "canceled", "execution", "bad_data", "internal", "unavailable", "not_found", "not_acceptable"}
)


@dataclass
class Expectation:
    name: str
    type: str
    values: set[str]  # comparable values; empty = the RRset must not exist
    any_of: bool = False  # explicit gate value: it must be among the served ones

    @classmethod
    def of(cls, rrset: RRset) -> Expectation:
        return cls(rrset.name, rrset.type, {comparable(rrset.type, r) for r in rrset.records})


def comparable(rtype: str, record: str) -> str:
    """TXT strings joined; other types lower-cased canonical text."""
    if rtype.upper() == "TXT":
        return txt_value(record)
    return parse_record(rtype, record).to_text().lower()


def parse_nameserver(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


async def _ip(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    for rtype in ("A", "AAAA"):
        try:
            ans = await dns.asyncresolver.resolve(host, rtype, lifetime=5)
            return str(ans[0])
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
    raise LookupError(f"nameserver {host} has no A or AAAA record")


async def discover_nameservers(zone: str) -> list[tuple[str, int]]:
    """The zone's authoritative servers: its NS RRset, via the system resolver.

    Not the SOA MNAME: it often names a hidden primary that answers nobody (or does not resolve), and
    resolvers never ask it, so a gate waiting on it would never pass."""
    ns = await dns.asyncresolver.resolve(zone, "NS", lifetime=5)
    names = sorted({str(r.target) for r in ns})
    return [(await _ip(n), 53) for n in names]


async def resolve_nameservers(explicit: list[str], zone: str) -> list[tuple[str, int]]:
    if explicit:
        out = []
        for item in explicit:
            host, port = parse_nameserver(item)
            out.append((await _ip(host), port))
        return out
    return await discover_nameservers(zone)


async def _ask(server: tuple[str, int], name: str, rtype: str, timeout: float) -> dns.message.Message:
    q = dns.message.make_query(name, dns.rdatatype.from_text(rtype))
    q.flags &= ~dns.flags.RD
    resp = await dns.asyncquery.udp(q, server[0], port=server[1], timeout=timeout)
    if resp.flags & dns.flags.TC:
        resp = await dns.asyncquery.tcp(q, server[0], port=server[1], timeout=timeout)
    return resp


class NotAuthoritative(Exception):
    """The server answered without the AA flag: it is not (or no longer) authoritative for the zone."""


async def served(server: tuple[str, int], name: str, rtype: str, timeout: float = 3.0) -> set[str] | None:
    """Comparable values `server` serves at name/type, CNAMEs followed; None = rcode problem."""
    want = dns.rdatatype.from_text(rtype)
    current = dns.name.from_text(name)
    for _ in range(MAX_CNAME_HOPS):
        resp = await _ask(server, current.to_text(), rtype, timeout)
        if resp.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise RuntimeError(dns.rcode.to_text(resp.rcode()))
        if not resp.flags & dns.flags.AA:
            raise NotAuthoritative(current.to_text())
        by_name = {(r.name, r.rdtype): r for r in resp.answer}
        hops = 0
        while (
            (current, want) not in by_name
            and (current, dns.rdatatype.CNAME) in by_name
            and hops < MAX_CNAME_HOPS
        ):
            current = by_name[(current, dns.rdatatype.CNAME)][0].target
            hops += 1
        if (current, want) in by_name:
            return {comparable(rtype, rd.to_text()) for rd in by_name[(current, want)]}
        if hops == 0 or want == dns.rdatatype.CNAME:
            return set()
        # the chain leaves what this server answered: ask the next name (in-zone or not) again
        if not current.is_subdomain(dns.name.from_text(name).parent()):
            try:
                ans = await dns.asyncresolver.resolve(current, rtype, lifetime=timeout)
                return {comparable(rtype, rd.to_text()) for rd in ans}
            except dns.exception.DNSException:
                return set()
    return set()


async def probe_dns(
    expectations: list[Expectation], nameservers: list[tuple[str, int]], timeout: float = 3.0
) -> DnsObservation:
    obs = DnsObservation(checked=len(expectations))
    if not nameservers:
        obs.error = "no authoritative nameservers found"
        return obs

    async def one(server: tuple[str, int]) -> None:
        label = f"{server[0]}:{server[1]}"
        problems: list[str] = []
        try:
            for exp in expectations:
                try:
                    got = await served(server, exp.name, exp.type, timeout)
                except NotAuthoritative:
                    problems.append(f"{exp.name} {exp.type} answered without the AA flag (not authoritative)")
                    continue
                got = got or set()
                if exp.any_of:
                    if not exp.values <= got:
                        problems.append(f"{exp.name} {exp.type} lacks the expected value")
                elif got != exp.values:
                    what = "missing" if not got else ("still present" if not exp.values else "differs")
                    problems.append(f"{exp.name} {exp.type} {what}")
        except (dns.exception.DNSException, OSError, RuntimeError) as exc:
            obs.unreachable[label] = str(exc) or type(exc).__name__
            return
        obs.problems[label] = problems

    await asyncio.gather(*(one(s) for s in nameservers))
    return obs


async def probe_prometheus(address: str, query: str, timeout: float = 10.0) -> PromObservation:
    """One instant query at `address` + the fixed path /api/v1/query, when the installation allows the
    address (mailferry_api.egress). Only the status code and Prometheus' errorType reach status."""
    refused = egress.url_problem(address, settings.current().egress_allow, "prometheus.address")
    if refused is not None:
        return PromObservation(refused=refused.message)
    url = address.rstrip("/") + "/api/v1/query"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.get(url, params={"query": query})
    except httpx.HTTPError as exc:
        return PromObservation(error=f"cannot reach {url} ({type(exc).__name__})")
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or "status" not in data:
        kind = resp.headers.get("content-type", "no content type").split(";")[0]
        return PromObservation(
            error=f"{url} answered HTTP {resp.status_code} ({kind}), not a Prometheus API answer: "
            "check prometheus.address"
        )
    if resp.status_code != 200 or data.get("status") != "success":
        error_type = data.get("errorType")
        detail = f"errorType {error_type}" if error_type in PROMETHEUS_ERROR_TYPES else "an error"
        # bad_data = the query does not parse or cannot run: asking again will not help
        return PromObservation(
            error=f"HTTP {resp.status_code} {detail}", invalid=data.get("errorType") == "bad_data"
        )
    result = data.get("data", {})
    rtype, res = result.get("resultType"), result.get("result")
    try:
        if rtype == "vector":
            return PromObservation(values=[float(s["value"][1]) for s in res])
        if rtype == "scalar":
            return PromObservation(values=[float(res[1])])
        if rtype == "matrix":
            return PromObservation(values=[float(s["values"][-1][1]) for s in res if s.get("values")])
    except (KeyError, IndexError, TypeError, ValueError):
        return PromObservation(error="unexpected result shape")
    return PromObservation(error=f"unsupported result type {rtype}")


async def fetch_policy(url: str, timeout: float = 10.0) -> tuple[str | None, str | None]:
    """(policy text, error). RFC 8461 forbids following redirects."""
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            resp = await client.get(url)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__} fetching {url}"
    if resp.status_code != 200:
        return None, f"HTTP {resp.status_code} from {url}"
    return resp.text, None


def compare_policy(expected: str, got: str | None) -> list[str]:
    if got is None:
        return ["MTA-STS policy not served"]
    return (
        [] if mtasts.same_policy(expected, got) else ["MTA-STS policy served differs from the published one"]
    )
