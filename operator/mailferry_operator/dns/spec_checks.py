"""DnsCutover checks the CRD schema cannot express (pure). Each returns the first problem as
(reason, message naming the field), or None; the handler reports it as Stalled and writes nothing."""

from __future__ import annotations

import base64
import binascii
import re

import dns.exception
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailferry_api.dnscutover import DkimSelector, DnsCutoverSpec

from ..gates.probes import parse_nameserver
from .public_suffix import is_public_suffix
from .rrset import fqdn, parse_record

MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept shorter keys
Problem = tuple[str, str]


def in_zone(name: str, zone: str) -> bool:
    """`name` is the zone apex or below it (label boundary: notexample.test is not in example.test)."""
    n, z = fqdn(name), fqdn(zone)
    return n == z or n.endswith("." + z)


def zone_problem(spec: DnsCutoverSpec) -> Problem | None:
    zone = fqdn(spec.provider.zone or spec.domain)
    for field, name in (("spec.domain", spec.domain), ("spec.provider.zone", zone)):
        if is_public_suffix(name):
            return (
                "PublicSuffix",
                f"{field} {name.rstrip('.')} is a public suffix (Public Suffix List): it is shared by "
                "many registrants and mailferry never changes its records; name your own domain below it",
            )
    if not in_zone(spec.domain, zone):
        return (
            "InvalidSpec",
            f"spec.domain {spec.domain} is not inside provider.zone {zone}: the zone must be the domain "
            "or one of its parents",
        )
    return None


def _public_key_problem(field: str, sel: DkimSelector) -> str | None:
    """None when `publicKey` (bare base64 or a whole `v=DKIM1; ...; p=...` value) holds a usable key."""
    text = (sel.public_key or "").strip()
    algorithm = sel.algorithm
    if text.lower().startswith("v=dkim1"):
        tags = {}
        for part in text.split(";"):
            k, _, v = part.partition("=")
            tags[k.strip().lower()] = v.strip()
        algorithm = "ed25519" if tags.get("k", "rsa").lower() == "ed25519" else "rsa"
        text = tags.get("p", "")
    text = "".join(text.split())
    if not text:
        return f"{field}.publicKey has no key (p= is empty: that revokes the selector)"
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return f"{field}.publicKey is not base64"
    if algorithm == "ed25519":
        return (
            None if len(raw) == 32 else f"{field}.publicKey is not a 32-byte Ed25519 key ({len(raw)} bytes)"
        )
    try:
        key = serialization.load_der_public_key(raw)
    except ValueError:
        return f"{field}.publicKey is not an RSA public key (base64 DER SubjectPublicKeyInfo)"
    if not isinstance(key, rsa.RSAPublicKey):
        return f"{field}.publicKey is not an RSA key"
    if key.key_size < MIN_RSA_BITS:
        return (
            f"{field}.publicKey is a {key.key_size}-bit RSA key; receivers ignore keys under {MIN_RSA_BITS}"
        )
    return None


def dkim_problem(spec: DnsCutoverSpec) -> Problem | None:
    cfg = spec.records.dkim
    if cfg is None:
        return None
    domain = fqdn(spec.domain)
    owners = {fqdn(f"{s.name}._domainkey.{domain}"): s for s in cfg.selectors}
    for i, sel in enumerate(cfg.selectors):
        field = f"spec.records.dkim.selectors[{i}] ({sel.name})"
        if sel.source == "txt":
            problem = _public_key_problem(field, sel)
            if problem:
                return "InvalidDkimKey", problem
        if sel.source == "cname" and sel.cname_target:
            # follow the chain through this spec's own selectors: a loop is never resolvable
            seen = [fqdn(f"{sel.name}._domainkey.{domain}")]
            target = fqdn(sel.cname_target)
            while target in owners:
                nxt = owners[target]
                if target in seen:
                    chain = " -> ".join([*seen, target])
                    return "InvalidSpec", f"{field}.cnameTarget makes a CNAME loop: {chain}"
                seen.append(target)
                if nxt.source != "cname" or not nxt.cname_target:
                    break
                target = fqdn(nxt.cname_target)
    return None


def spf_problem(spec: DnsCutoverSpec) -> Problem | None:
    both = sorted(
        {fqdn(h) for h in spec.records.spf.include} & {fqdn(h) for h in spec.records.spf.remove_include}
    )
    if both:
        return (
            "InvalidSpec",
            f"spec.records.spf: {both[0].rstrip('.')} is in both include and removeInclude",
        )
    return None


_ADDRESS = re.compile(r"^[^\s,;!@\"<>]+@[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")
_SIZE_LIMIT = re.compile(r"![0-9]+[kmgtKMGT]?$")
_HTTPS = re.compile(r"^https://[^\s,;]+$")


def _report_uri_ok(uri: str, https: bool) -> bool:
    """A bare address (mailto: is added), `mailto:addr[!size]`, or for TLS-RPT an https: URL. No ',' ';'
    or spaces: they would end the tag and let the rest be read as other tags of the record."""
    if https and _HTTPS.match(uri):
        return True
    address = uri[7:] if uri.lower().startswith("mailto:") else uri
    if ":" in address:
        return False
    return bool(_ADDRESS.match(_SIZE_LIMIT.sub("", address)))


def rua_problem(spec: DnsCutoverSpec) -> Problem | None:
    for i, uri in enumerate(spec.records.dmarc.rua):
        if not _report_uri_ok(uri, https=False):
            return (
                "InvalidSpec",
                f"spec.records.dmarc.rua[{i}] {uri[:80]!r} is not a report address "
                f"(dmarc@{spec.domain} or mailto:dmarc@{spec.domain})",
            )
    if spec.records.tls_rpt is not None:
        for i, uri in enumerate(spec.records.tls_rpt.rua):
            if not _report_uri_ok(uri, https=True):
                return (
                    "InvalidSpec",
                    f"spec.records.tlsRpt.rua[{i}] {uri[:80]!r} is neither a report address "
                    "(mailto:) nor an https: URL (RFC 8460)",
                )
    return None


def gate_problem(spec: DnsCutoverSpec) -> Problem | None:
    groups = {
        "ttlLowered": spec.gates.ttl_lowered,
        "staged": spec.gates.staged,
        "switched": spec.gates.switched,
        "enforced": spec.gates.enforced,
    }
    for phase, gates in groups.items():
        for i, gate in enumerate(gates):
            field = f"spec.gates.{phase}[{i}] ({gate.name})"
            cfg = gate.dns_record
            if gate.type != "dnsRecord" or cfg is None:
                continue
            for j, ns in enumerate(cfg.nameservers):
                try:
                    host, port = parse_nameserver(ns)
                    ok = bool(host) and 0 < port < 65536
                except ValueError:
                    ok = False
                if not ok:
                    return (
                        "InvalidGate",
                        f"{field}.dnsRecord.nameservers[{j}] {ns[:80]!r} is not host or host:port",
                    )
            if cfg.value is not None:
                rtype = (cfg.type or "TXT").upper()
                if rtype != "TXT":
                    try:
                        parse_record(rtype, cfg.value)
                    except (dns.exception.DNSException, ValueError) as exc:
                        return (
                            "InvalidGate",
                            f"{field}.dnsRecord.value {cfg.value[:80]!r} is not a valid {rtype} record: "
                            f"{str(exc) or type(exc).__name__}",
                        )
    return None


def spec_problem(spec: DnsCutoverSpec) -> Problem | None:
    for check in (zone_problem, dkim_problem, spf_problem, rua_problem, gate_problem):
        found = check(spec)
        if found is not None:
            return found
    return None
