"""Amazon Route 53 REST API (2013-04-01) over httpx, requests signed with botocore's SigV4 signer.

A change batch is transactional, so one UPSERT (or one DELETE naming the current values)
replaces an RRset atomically. Route 53 answers PENDING and propagates to its nameservers afterwards
(usually within 60 s): replace() returns only once GetChange says INSYNC, so the next phase's gates
start from a change every Route 53 nameserver has.

mailferry writes simple record sets only (Name, Type, one TTL, ResourceRecords). A record set at a name and
type it manages that is anything else - an alias (AliasTarget), one of several with a routing policy
(SetIdentifier with Weight, Region, Failover, GeoLocation, MultiValueAnswer, CidrRoutingConfig,
GeoProximityLocation), one with a HealthCheckId or made by a traffic policy - cannot be written back as it
was, so get() refuses it (RecordSetNotManageable) and nothing at that name and type is ever changed."""

from __future__ import annotations

import asyncio
import re
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mailferry_api.dnscutover import RRset

from ..rrset import canonical_record, fqdn, rrset_equal
from .base import Keep, ProviderError, RetryPolicy, to_write, with_retries
from .http import request

NS = "https://route53.amazonaws.com/doc/2013-04-01/"
TRANSIENT_CODES = {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "ServiceUnavailable"}


def _unescape_name(name: str) -> str:
    """Route 53 returns octal escapes for some characters (e.g. \\052 for '*')."""
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name)


def _find(el: ET.Element, path: str) -> ET.Element | None:
    return el.find(path.replace("{ns}", "{" + NS + "}"))


def _findall(el: ET.Element, path: str) -> list[ET.Element]:
    return el.findall(path.replace("{ns}", "{" + NS + "}"))


def _text(el: ET.Element, path: str) -> str | None:
    found = _find(el, path)
    return found.text if found is not None else None


def _is(el: ET.Element, name: str, rtype: str, tags: tuple[str, str] = ("Name", "Type")) -> bool:
    """`el` is at name/type: a ResourceRecordSet, or (tags NextRecordName/NextRecordType) where a
    truncated listing goes on."""
    n, t = _text(el, "{ns}" + tags[0]), _text(el, "{ns}" + tags[1])
    return bool(n) and fqdn(_unescape_name(n or "")) == name and t == rtype


# The elements of a simple record set: what change_batch_xml writes back.
SIMPLE = {"Name", "Type", "TTL", "ResourceRecords"}
NEXT = ("NextRecordName", "NextRecordType")
LIST_PAGE = 100
MAX_PAGES = 10
_POLICIES = {
    "AliasTarget": "an alias record",
    "Weight": "weighted",
    "Region": "latency-based",
    "Failover": "failover",
    "GeoLocation": "geolocation",
    "GeoProximityLocation": "geoproximity",
    "CidrRoutingConfig": "IP-based",
    "MultiValueAnswer": "multivalue answer",
    "TrafficPolicyInstanceId": "made by a traffic policy",
    "HealthCheckId": "health-checked",
}


def _what(extra: list[str], count: int) -> str:
    """The record set's kind in words, e.g. "weighted (2 record sets: SetIdentifier, Weight)"."""
    kinds = [_POLICIES[e] for e in extra if e in _POLICIES] or ["not a simple record set"]
    sets = f"{count} record sets" if count > 1 else "1 record set"
    return f"{' and '.join(kinds)} ({sets}: {', '.join(extra[:6])})"


def change_batch_xml(action: str, rrset: RRset) -> bytes:
    records = "".join(
        f"<ResourceRecord><Value>{escape(canonical_record(rrset.type, r))}</Value></ResourceRecord>"
        for r in rrset.records
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ChangeResourceRecordSetsRequest xmlns="{NS}"><ChangeBatch>'
        "<Comment>mailferry</Comment><Changes><Change>"
        f"<Action>{action}</Action><ResourceRecordSet><Name>{escape(rrset.name)}</Name><Type>{rrset.type}</Type>"
        f"<TTL>{rrset.ttl}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet>"
        "</Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
    ).encode()


class Route53Provider:
    kind = "route53"

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        zone: str,
        hosted_zone_id: str,
        region: str = "us-east-1",
        endpoint: str | None = None,
        session_token: str | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        insync_poll: float = 2.0,
        insync_timeout: float = 180.0,
    ) -> None:
        self.insync_poll = insync_poll
        self.insync_timeout = insync_timeout
        self.zone = fqdn(zone)
        self.hosted_zone_id = hosted_zone_id.split("/")[-1]
        self.region = region
        self.endpoint = (endpoint or "https://route53.amazonaws.com").rstrip("/")
        self.retry = retry or RetryPolicy()
        self._creds = Credentials(access_key_id, secret_access_key, session_token)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _signed(self, method: str, url: str, body: bytes | None) -> dict[str, str]:
        headers = {"Content-Type": "application/xml"} if body else {}
        req = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(self._creds, "route53", self.region).add_auth(req)
        return {k: str(v) for k, v in req.headers.items()}

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        attempts: int | None = None,
        write: bool = False,
    ) -> ET.Element:
        url = f"{self.endpoint}{path}" + (f"?{urlencode(params)}" if params else "")

        async def once() -> ET.Element:
            headers = self._signed(method, url, body)
            resp = await request(
                self.kind, lambda: self._http.request(method, url, content=body, headers=headers), what
            )
            try:
                root = ET.fromstring(resp.content) if resp.content else ET.Element("empty")
            except ET.ParseError:
                root = ET.Element("unparsable")
            if resp.status_code >= 400:
                code_el = _find(root, ".//{ns}Code")
                msg_el = _find(root, ".//{ns}Message")
                code = code_el.text if code_el is not None and code_el.text else str(resp.status_code)
                msg = msg_el.text if msg_el is not None and msg_el.text else ""
                if code in TRANSIENT_CODES:
                    raise ProviderError("ProviderThrottled", f"route53: {what}: {code}", transient=True)
                if code in ("NoSuchHostedZone",) or resp.status_code == 404:
                    raise ProviderError(
                        "ZoneNotFound", f"route53: hosted zone {self.hosted_zone_id} not found"
                    )
                raise ProviderError("ProviderRejected", f"route53: {what}: {code}: {msg[:300]}")
            return root

        policy = self.retry if attempts is None else RetryPolicy(attempts=attempts)
        return await with_retries(self.kind, what, once, policy, write=write)

    async def check_zone(self) -> None:
        root = await self._call("GET", f"/2013-04-01/hostedzone/{self.hosted_zone_id}", "GetHostedZone")
        name_el = _find(root, ".//{ns}HostedZone/{ns}Name")
        if name_el is not None and name_el.text and fqdn(_unescape_name(name_el.text)) != self.zone:
            raise ProviderError(
                "ZoneNotFound",
                f"route53: hosted zone {self.hosted_zone_id} is {name_el.text}, not {self.zone}",
            )

    async def _record_sets(self, name: str, rtype: str) -> list[ET.Element]:
        """Every record set named `name` of type `rtype` (several with a routing policy), page by page."""
        found: list[ET.Element] = []
        params = {"name": name, "type": rtype, "maxitems": str(LIST_PAGE)}
        for _ in range(MAX_PAGES):
            root = await self._call(
                "GET",
                f"/2013-04-01/hostedzone/{self.hosted_zone_id}/rrset",
                f"ListResourceRecordSets {name} {rtype}",
                params=params,
            )
            found += [
                rrs
                for rrs in _findall(root, ".//{ns}ResourceRecordSets/{ns}ResourceRecordSet")
                if _is(rrs, name, rtype)
            ]
            if _text(root, "{ns}IsTruncated") != "true" or not _is(root, name, rtype, NEXT):
                break  # the listing went past name/type
            params = {"name": name, "type": rtype, "maxitems": str(LIST_PAGE)}
            if ident := _text(root, "{ns}NextRecordIdentifier"):
                params["identifier"] = ident
        return found

    async def get(self, name: str, rtype: str) -> RRset | None:
        name, rtype = fqdn(name), rtype.upper()
        found = await self._record_sets(name, rtype)
        for rrs in found:
            extra = sorted({el.tag.split("}")[-1] for el in rrs} - SIMPLE)
            if extra:
                raise ProviderError(
                    "RecordSetNotManageable",
                    f"route53: {name} {rtype} is {_what(extra, len(found))}: mailferry writes simple "
                    "record sets only and leaves this one untouched; make it one simple record set (or take "
                    "the name out of the DnsCutover) to go on",
                )
        if not found:
            return None
        rrs = found[0]
        values = [v.text or "" for v in _findall(rrs, "{ns}ResourceRecords/{ns}ResourceRecord/{ns}Value")]
        if not values:
            return None
        ttl_el = _find(rrs, "{ns}TTL")
        ttl = int(ttl_el.text) if ttl_el is not None and ttl_el.text else 0
        return RRset(name=name, type=rtype, ttl=ttl, records=values)

    async def replace(self, rrset: RRset, keep: Keep | None = None) -> RRset:
        """One UPSERT (no conditional write: what someone writes between the read and it is overwritten)."""
        name, rtype = fqdn(rrset.name), rrset.type.upper()
        asked = rrset.model_copy(update={"name": name, "type": rtype})
        want = asked

        async def once() -> Any:
            nonlocal want
            current = await self.get(name, rtype)  # re-read: an earlier attempt may have gone through
            want = to_write(asked, keep, current)
            if rrset_equal(current, want):
                return None
            if want.records:
                body = change_batch_xml("UPSERT", want)
            else:
                assert current is not None
                body = change_batch_xml("DELETE", current)
            return await self._call(
                "POST",
                f"/2013-04-01/hostedzone/{self.hosted_zone_id}/rrset",
                f"ChangeResourceRecordSets {name} {rtype}",
                body=body,
                attempts=1,
                write=True,
            )

        answer = await with_retries(self.kind, f"ChangeResourceRecordSets {name} {rtype}", once, self.retry)
        if answer is not None:
            await self._wait_insync(answer, f"{name} {rtype}")
        return want

    async def _wait_insync(self, answer: ET.Element, what: str) -> None:
        """Poll GetChange until the change is INSYNC on every Route 53 nameserver."""
        id_el, status_el = (
            _find(answer, ".//{ns}ChangeInfo/{ns}Id"),
            _find(answer, ".//{ns}ChangeInfo/{ns}Status"),
        )
        if id_el is None or not id_el.text:
            return
        change_id = id_el.text.split("/")[-1]
        status = status_el.text if status_el is not None else "PENDING"
        deadline = time.monotonic() + self.insync_timeout
        while status != "INSYNC":
            if time.monotonic() > deadline:
                raise ProviderError(
                    "ChangeNotInSync",
                    f"route53: change {change_id} ({what}) still {status} after {self.insync_timeout:.0f}s",
                    transient=True,
                )
            await asyncio.sleep(self.insync_poll)
            root = await self._call("GET", f"/2013-04-01/change/{change_id}", f"GetChange {change_id}")
            found = _find(root, ".//{ns}ChangeInfo/{ns}Status")
            status = found.text if found is not None and found.text else "PENDING"
