"""RFC 2136 dynamic updates with dnspython and TSIG.

One UPDATE message per RRset: a prerequisite that the RRset is exactly what was read (RFC 2136
§2.4.2 value-dependent "RRset exists", or §2.4.3 "RRset does not exist"), then delete + add.
The server applies the whole message or none of it, so an RRset is never half-replaced and a
concurrent change makes the prerequisite fail instead of being overwritten (we re-read and retry).

DNS UPDATE sees only what is served. A server that keeps more per RRset loses it when the RRset is
rewritten: PowerDNS rebuilds an updated RRset from its enabled records, so its disabled records and its
comments in that RRset are gone after a change (seen on PowerDNS 4.x; the PowerDNS API provider keeps
both, see tests/integration/dns/test_dns_providers_powerdns.py). Use provider.type powerdns there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from mailferry_api.dnscutover import RRset

from ..rrset import fqdn, parse_record
from .base import Keep, ProviderError, RetryPolicy, to_write, with_retries

TRANSIENT_RCODES = {
    dns.rcode.REFUSED,
    dns.rcode.SERVFAIL,
    dns.rcode.NXRRSET,
    dns.rcode.YXRRSET,
    dns.rcode.NXDOMAIN,
    dns.rcode.YXDOMAIN,
}


def _as_rrset(name: str, rtype: str, rds: dns.rdataset.Rdataset | None) -> RRset | None:
    if rds is None or len(rds) == 0:
        return None
    return RRset(name=name, type=rtype, ttl=rds.ttl, records=[rd.to_text() for rd in rds])


class Rfc2136Provider:
    kind = "rfc2136"

    def __init__(
        self,
        server: str,
        port: int,
        zone: str,
        tsig_name: str | None = None,
        tsig_secret: str | None = None,
        tsig_algorithm: str = "hmac-sha256",
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.server = server
        self.port = port
        self.zone = fqdn(zone)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._keyring = None
        self._keyname: dns.name.Name | None = None
        self._alg = dns.name.from_text(tsig_algorithm)
        self._address: str | None = None
        if tsig_name and tsig_secret:
            try:
                self._keyname = dns.name.from_text(tsig_name)
            except dns.exception.DNSException as exc:
                raise ProviderError(
                    "InvalidSpec",
                    f"rfc2136: provider.rfc2136.tsigKeyName {tsig_name[:80]!r} is not a DNS name: {exc}",
                ) from exc
            try:
                base64.b64decode(tsig_secret, validate=True)
                self._keyring = dns.tsigkeyring.from_text({tsig_name: (tsig_algorithm, tsig_secret)})
            except (binascii.Error, ValueError, dns.exception.DNSException) as exc:
                # never the value itself in the message
                raise ProviderError(
                    "InvalidCredentials",
                    "rfc2136: the TSIG secret (provider.rfc2136.tsigSecretKey in the provider Secret) "
                    "is not base64 (as `tsig-keygen`/`pdnsutil generate-tsig-key` print it)",
                ) from exc

    async def _server(self) -> str:
        """provider.rfc2136.server as an address (dnspython sends to addresses only)."""
        if self._address is not None:
            return self._address
        try:
            ipaddress.ip_address(self.server)
            self._address = self.server
        except ValueError:
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(self.server, self.port, type=socket.SOCK_STREAM),
                    self.timeout,
                )
            except (OSError, TimeoutError, UnicodeError) as exc:
                raise ProviderError(
                    "ProviderUnreachable",
                    f"rfc2136: provider.rfc2136.server {self.server!r} does not resolve "
                    f"({type(exc).__name__})",
                    transient=True,
                ) from exc
            self._address = str(infos[0][4][0])
        return self._address

    async def aclose(self) -> None:
        return None

    async def _exchange(self, msg: dns.message.Message, what: str) -> dns.message.Message:
        """One message over TCP; a timeout or a connection failure is a transient ProviderError.
        A signed message whose answer is unsigned or badly signed is a rejected TSIG key."""
        try:
            return await dns.asyncquery.tcp(msg, await self._server(), port=self.port, timeout=self.timeout)
        except dns.exception.Timeout as exc:
            raise ProviderError("ProviderTimeout", f"rfc2136: {what} timed out", transient=True) from exc
        except OSError as exc:
            raise ProviderError(
                "ProviderUnreachable",
                f"rfc2136: {what}: {self.server}:{self.port}: {exc.strerror or exc}",
                transient=True,
            ) from exc
        except (dns.exception.FormError, dns.tsig.PeerError) as exc:
            # e.g. an unsigned NOTAUTH answer to a signed UPDATE: the server did not accept our key
            raise ProviderError(
                "ProviderAuthFailed",
                f"rfc2136: {what}: the server did not accept TSIG key {self._keyname} "
                f"({type(exc).__name__}): check provider.rfc2136.tsigKeyName, tsigAlgorithm and the secret",
            ) from exc

    async def _query(self, name: str, rtype: str) -> dns.message.Message:
        q = dns.message.make_query(name, dns.rdatatype.from_text(rtype))
        q.flags &= ~dns.flags.RD
        return await self._exchange(q, f"query {name} {rtype}")

    async def check_zone(self) -> None:
        async def once() -> None:
            resp = await self._query(self.zone, "SOA")
            rc = resp.rcode()
            if rc == dns.rcode.SERVFAIL:
                raise ProviderError("ProviderError", f"rfc2136: SOA {self.zone}: SERVFAIL", transient=True)
            if rc != dns.rcode.NOERROR or not (resp.flags & dns.flags.AA) or not resp.answer:
                raise ProviderError(
                    "ZoneNotFound",
                    f"rfc2136: {self.server}:{self.port} is not authoritative for "
                    f"{self.zone} ({dns.rcode.to_text(rc)})",
                )

        await with_retries(self.kind, "SOA", once, self.retry)
        if self._keyring is not None:
            await with_retries(self.kind, "signed no-op UPDATE", self._check_key, self.retry)

    async def _check_key(self) -> None:
        """A signed UPDATE whose only content is the prerequisite "the apex SOA exists": it changes
        nothing, but the server checks the TSIG key and the zone's update policy, so a wrong key,
        secret or algorithm is reported before any phase starts (not halfway through one)."""
        upd = dns.update.UpdateMessage(
            self.zone, keyring=self._keyring, keyname=self._keyname, keyalgorithm=self._alg
        )
        upd.present(self.zone, dns.rdatatype.SOA)
        resp = await self._exchange(upd, "signed no-op UPDATE")
        rc = resp.rcode()
        if rc == dns.rcode.NOERROR:
            return
        if rc in (dns.rcode.NOTAUTH, dns.rcode.REFUSED):
            raise ProviderError(
                "ProviderAuthFailed",
                f"rfc2136: the server refused updates to {self.zone} with TSIG key {self._keyname} "
                f"({dns.rcode.to_text(rc)}): check the key, its algorithm and the zone's update policy",
            )
        if rc == dns.rcode.SERVFAIL:
            raise ProviderError("ProviderError", "rfc2136: signed UPDATE: SERVFAIL", transient=True)
        raise ProviderError("ProviderRejected", f"rfc2136: signed no-op UPDATE: {dns.rcode.to_text(rc)}")

    async def _read(self, name: str, rtype: str) -> dns.rdataset.Rdataset | None:
        resp = await self._query(name, rtype)
        rc = resp.rcode()
        if rc in (dns.rcode.REFUSED, dns.rcode.SERVFAIL):
            raise ProviderError(
                "ProviderError", f"rfc2136: query {name} {rtype}: {dns.rcode.to_text(rc)}", transient=True
            )
        want = dns.rdatatype.from_text(rtype)
        for rrs in resp.answer:
            if rrs.name == dns.name.from_text(name) and rrs.rdtype == want:
                return dns.rdataset.Rdataset(rrs.rdclass, rrs.rdtype, ttl=rrs.ttl) | rrs  # copy
        return None

    async def get(self, name: str, rtype: str) -> RRset | None:
        name, rtype = fqdn(name), rtype.upper()

        async def once() -> RRset | None:
            return _as_rrset(name, rtype, await self._read(name, rtype))

        return await with_retries(self.kind, f"query {name} {rtype}", once, self.retry)

    async def replace(self, rrset: RRset, keep: Keep | None = None) -> RRset:
        """One UPDATE whose prerequisite is the RRset as read just before it: a change someone makes in
        between fails it (NXRRSET), and the next attempt reads again (and `keep` sees the change)."""
        name, rtype = fqdn(rrset.name), rrset.type.upper()
        rdtype = dns.rdatatype.from_text(rtype)
        asked = rrset

        async def once() -> None:
            nonlocal rrset
            current = await self._read(name, rtype)
            rrset = to_write(asked, keep, _as_rrset(name, rtype, current))
            wanted = [parse_record(rtype, r) for r in rrset.records]
            if (
                current is not None
                and len(current)
                and rrset.records
                and current.ttl == rrset.ttl
                and ({rd.to_digestable() for rd in current} == {rd.to_digestable() for rd in wanted})
            ):
                return  # a previous attempt went through
            if current is None and not rrset.records:
                return
            upd = dns.update.UpdateMessage(
                self.zone, keyring=self._keyring, keyname=self._keyname, keyalgorithm=self._alg
            )
            if current is not None and len(current):
                # RFC 2136 §2.4.2: value-dependent prerequisite, TTL must be 0
                prereq = dns.rdataset.Rdataset(current.rdclass, current.rdtype, ttl=0)
                for rd in current:
                    prereq.add(rd)
                upd.present(name, prereq)
            else:
                upd.absent(name, rdtype)
            if wanted:
                upd.replace(name, rrset.ttl, *wanted)
            else:
                upd.delete(name, rdtype)
            resp = await self._exchange(upd, f"UPDATE {name} {rtype}")
            rc = resp.rcode()
            if rc == dns.rcode.NOERROR:
                return
            text = dns.rcode.to_text(rc)
            if rc in TRANSIENT_RCODES:
                raise ProviderError(
                    "ProviderError", f"rfc2136: UPDATE {name} {rtype}: {text}", transient=True
                )
            if rc == dns.rcode.NOTAUTH:
                raise ProviderError(
                    "ProviderAuthFailed",
                    f"rfc2136: UPDATE {name} {rtype}: NOTAUTH (check TSIG key and the zone's update policy)",
                )
            if rc == dns.rcode.NOTZONE:
                raise ProviderError("ZoneNotFound", f"rfc2136: {name} is not in zone {self.zone}")
            raise ProviderError("ProviderRejected", f"rfc2136: UPDATE {name} {rtype}: {text}")

        await with_retries(self.kind, f"UPDATE {name} {rtype}", once, self.retry, write=True)
        return rrset
