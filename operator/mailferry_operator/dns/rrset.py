"""RRset helpers (pure): names, canonical comparison, TXT string handling.

Everywhere in mailferry an RRset is `mailferry_api.dnscutover.RRset` with an absolute,
lower-case name (trailing dot) and records in DNS presentation format (TXT quoted,
MX "10 host."). An RRset with no records means "absent".
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mailferry_api.dnscutover import RRset

TXT_CHUNK = 255


def fqdn(name: str, zone: str | None = None) -> str:
    """Absolute lower-case name; a relative name is taken relative to `zone` ("@" is the apex)."""
    name = name.strip().lower()
    if zone is not None:
        zone_abs = fqdn(zone)
        if name in ("@", ""):
            return zone_abs
        if not name.endswith(".") and not (name + ".").endswith("." + zone_abs) and name + "." != zone_abs:
            return f"{name}.{zone_abs}"
    return name if name.endswith(".") else name + "."


def key(rrset: RRset) -> tuple[str, str]:
    return (rrset.name, rrset.type.upper())


def parse_record(rtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text, origin=dns.name.root, relativize=False
    )


def canonical_record(rtype: str, text: str) -> str:
    """Presentation text normalised by dnspython (names lower-cased for comparison only)."""
    return parse_record(rtype, text).to_text()


def record_digest(rtype: str, text: str) -> bytes:
    return parse_record(rtype, text).to_digestable(dns.name.root)


def records_equal(rtype: str, a: Iterable[str], b: Iterable[str]) -> bool:
    return {record_digest(rtype, r) for r in a} == {record_digest(rtype, r) for r in b}


def record_ttls(rrset: RRset) -> list[int]:
    """Each record's TTL (the RRset's own unless the provider keeps one per record)."""
    if len(rrset.record_ttls) == len(rrset.records):
        return list(rrset.record_ttls)
    return [rrset.ttl] * len(rrset.records)


def rrset_equal(a: RRset | None, b: RRset | None) -> bool:
    """Same records and, when present, the same TTL (per record where a provider keeps them apart).
    Absent == no records."""
    a_recs = a.records if a else []
    b_recs = b.records if b else []
    if not a_recs and not b_recs:
        return True
    if not a_recs or not b_recs:
        return False
    assert a is not None and b is not None
    if a.record_ttls or b.record_ttls:
        pairs_a = {(record_digest(a.type, r), t) for r, t in zip(a_recs, record_ttls(a), strict=True)}
        pairs_b = {(record_digest(b.type, r), t) for r, t in zip(b_recs, record_ttls(b), strict=True)}
        return pairs_a == pairs_b
    return a.ttl == b.ttl and records_equal(a.type, a_recs, b_recs)


def absent(name: str, rtype: str) -> RRset:
    return RRset(name=name, type=rtype.upper(), ttl=0, records=[])


def split_txt(value: str) -> str:
    """One TXT record in presentation format, split into strings of at most 255 bytes."""
    raw = value.encode()
    chunks = [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)] or [b""]
    return " ".join(quote_txt(c.decode()) for c in chunks)


def quote_txt(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def txt_value(record: str) -> str:
    """The joined strings of one TXT record in presentation format."""
    rd = parse_record("TXT", record)
    return b"".join(rd.strings).decode(errors="replace")  # type: ignore[attr-defined]


def txt_values(rrset: RRset | None) -> list[str]:
    if rrset is None:
        return []
    return [txt_value(r) for r in rrset.records]


def with_ttl(rrset: RRset, ttl: int) -> RRset:
    """Every record at `ttl` (per-record TTLs dropped)."""
    return rrset.model_copy(update={"ttl": ttl, "record_ttls": []})


def mx_hosts(rrset: RRset | None) -> list[str]:
    if rrset is None:
        return []
    hosts = []
    for r in rrset.records:
        rd = parse_record("MX", r)
        hosts.append(rd.exchange.to_text(omit_final_dot=True).lower())  # type: ignore[attr-defined]
    return hosts
