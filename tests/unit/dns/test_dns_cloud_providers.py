"""Cloudflare (API v4) and Route 53 (2013-04-01) adapters against their documented request and
response shapes, recorded with respx (the only fakes allowed: no such service runs here)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import httpx
import pytest
import respx

from mailferry_api.dnscutover import RRset
from mailferry_operator.dns.providers.base import ProviderError, RetryPolicy
from mailferry_operator.dns.providers.cloudflare import CloudflareProvider
from mailferry_operator.dns.providers.route53 import NS, Route53Provider
from mailferry_operator.dns.rrset import rrset_equal, split_txt, txt_value, with_ttl

CF = "https://api.cloudflare.com/client/v4"
ZID = "023e105f4ecef8ad9ca31a8372d0c353"
FAST = RetryPolicy(attempts=3, base_delay=0.01)


def cf_ok(result: object) -> dict[str, object]:
    return {"success": True, "errors": [], "messages": [], "result": result}


def cf_record(
    rid: str, name: str, rtype: str, content: str, ttl: int = 3600, **extra: object
) -> dict[str, object]:
    return {
        "id": rid,
        "zone_id": ZID,
        "zone_name": "example.com",
        "name": name,
        "type": rtype,
        "content": content,
        "proxiable": False,
        "proxied": False,
        "ttl": ttl,
        "locked": False,
        "meta": {},
        **extra,
    }


@respx.mock
async def test_cloudflare_finds_zone_reads_and_replaces_rrset_in_one_batch() -> None:
    zones = respx.get(f"{CF}/zones", params={"name": "example.com"}).mock(
        return_value=httpx.Response(200, json=cf_ok([{"id": ZID, "name": "example.com", "status": "active"}]))
    )
    listing = respx.get(f"{CF}/zones/{ZID}/dns_records").mock(
        side_effect=[
            httpx.Response(
                200,
                json=cf_ok(
                    [
                        cf_record("r1", "example.com", "MX", "mx.old.com", priority=10),
                        cf_record("r2", "example.com", "MX", "mx2.old.com", priority=20),
                    ]
                ),
            ),
            httpx.Response(
                200,
                json=cf_ok(
                    [
                        cf_record("r1", "example.com", "MX", "mx.old.com", priority=10),
                        cf_record("r2", "example.com", "MX", "mx2.old.com", priority=20),
                    ]
                ),
            ),
        ]
    )
    batch = respx.post(f"{CF}/zones/{ZID}/dns_records/batch").mock(
        return_value=httpx.Response(
            200,
            json=cf_ok(
                {
                    "deletes": [{"id": "r1"}, {"id": "r2"}],
                    "posts": [cf_record("r3", "example.com", "MX", "mx1.dest.com", 300, priority=10)],
                }
            ),
        )
    )
    prov = CloudflareProvider("tok-123", "example.com", retry=FAST)
    got = await prov.get("example.com", "MX")
    assert got == RRset(
        name="example.com.", type="MX", ttl=3600, records=["10 mx.old.com.", "20 mx2.old.com."]
    )
    await prov.replace(RRset(name="example.com.", type="MX", ttl=300, records=["10 mx1.dest.com."]))
    await prov.aclose()
    assert zones.call_count == 1
    req = listing.calls[0].request
    assert req.url.params["name"] == "example.com" and req.url.params["type"] == "MX"
    assert req.headers["Authorization"] == "Bearer tok-123"
    body = json.loads(batch.calls[0].request.content)
    assert body == {
        "deletes": [{"id": "r1"}, {"id": "r2"}],
        "posts": [
            {"name": "example.com", "type": "MX", "ttl": 300, "priority": 10, "content": "mx1.dest.com"}
        ],
    }


@respx.mock
async def test_cloudflare_txt_long_value_and_retry_on_500() -> None:
    respx.get(f"{CF}/zones/{ZID}/dns_records").mock(
        side_effect=[
            httpx.Response(200, json=cf_ok([])),
            httpx.Response(200, json=cf_ok([])),
            httpx.Response(200, json=cf_ok([])),
        ]
    )
    batch = respx.post(f"{CF}/zones/{ZID}/dns_records/batch").mock(
        side_effect=[
            httpx.Response(500, json={"success": False, "errors": [{"code": 10000, "message": "internal"}]}),
            httpx.Response(200, json=cf_ok({"posts": []})),
        ]
    )
    prov = CloudflareProvider("t", "example.com", zone_id=ZID, retry=FAST)
    value = "v=DKIM1; k=rsa; p=" + "A" * 400
    await prov.replace(
        RRset(name="s1._domainkey.example.com.", type="TXT", ttl=300, records=[split_txt(value)])
    )
    assert batch.call_count == 2
    post = json.loads(batch.calls[1].request.content)["posts"][0]
    assert post["name"] == "s1._domainkey.example.com" and "deletes" not in json.loads(
        batch.calls[1].request.content
    )
    assert txt_value(post["content"]) == value and post["content"].count('" "') == 1


@respx.mock
async def test_cloudflare_unquoted_txt_content_and_errors() -> None:
    respx.get(f"{CF}/zones/{ZID}/dns_records").mock(
        return_value=httpx.Response(
            200, json=cf_ok([cf_record("r1", "example.com", "TXT", "v=spf1 include:_spf.old.com ~all")])
        )
    )
    prov = CloudflareProvider("tok-secret-xyz", "example.com", zone_id=ZID, retry=FAST)
    got = await prov.get("example.com", "TXT")
    assert got is not None and got.records == ['"v=spf1 include:_spf.old.com ~all"']
    respx.get(f"{CF}/zones", params={"name": "nope.com"}).mock(
        return_value=httpx.Response(200, json=cf_ok([]))
    )
    missing = CloudflareProvider("t", "nope.com", retry=FAST)
    with pytest.raises(ProviderError) as info:
        await missing.check_zone()
    assert info.value.reason == "ZoneNotFound"
    respx.get(f"{CF}/zones/{ZID}").mock(
        return_value=httpx.Response(
            403,
            json={
                "success": False,
                "errors": [{"code": 9109, "message": "Unauthorized to access requested resource"}],
            },
        )
    )
    with pytest.raises(ProviderError) as info:
        await prov.check_zone()
    assert info.value.reason == "ProviderAuthFailed" and "tok-secret-xyz" not in info.value.message


R53 = "https://route53.amazonaws.com/2013-04-01/hostedzone/Z0123456789ABC"
CHANGE = "https://route53.amazonaws.com/2013-04-01/change/C2682N5HXP0BZ4"


def r53_list(name: str, rtype: str, ttl: int, values: list[str]) -> str:
    rrs = "".join(f"<ResourceRecord><Value>{v}</Value></ResourceRecord>" for v in values)
    return (
        f'<?xml version="1.0"?>\n<ListResourceRecordSetsResponse xmlns="{NS}"><ResourceRecordSets>'
        f"<ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type><TTL>{ttl}</TTL>"
        f"<ResourceRecords>{rrs}</ResourceRecords></ResourceRecordSet></ResourceRecordSets>"
        "<IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>"
    )


CHANGE_OK = (
    f'<?xml version="1.0"?>\n<ChangeResourceRecordSetsResponse xmlns="{NS}"><ChangeInfo>'
    "<Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2026-11-25T14:00:00.000Z"
    "</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>"
)


@respx.mock
async def test_route53_signed_list_and_upsert() -> None:
    listing = respx.get(f"{R53}/rrset").mock(
        side_effect=[
            httpx.Response(200, text=r53_list("example.com.", "MX", 3600, ["10 mx.old.com."])),
            httpx.Response(200, text=r53_list("example.com.", "MX", 3600, ["10 mx.old.com."])),
        ]
    )
    change = respx.post(f"{R53}/rrset").mock(return_value=httpx.Response(200, text=CHANGE_OK))
    respx.get(CHANGE).mock(return_value=httpx.Response(200, text=r53_change("INSYNC")))
    prov = Route53Provider(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "example.com", "/hostedzone/Z0123456789ABC", retry=FAST
    )
    got = await prov.get("example.com.", "MX")
    assert got == RRset(name="example.com.", type="MX", ttl=3600, records=["10 mx.old.com."])
    req = listing.calls[0].request
    assert req.url.params["name"] == "example.com." and req.url.params["type"] == "MX"
    auth = req.headers["Authorization"]
    assert re.match(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-east-1/route53/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$",
        auth,
    )
    assert "x-amz-date" in req.headers and "wJalr" not in auth
    await prov.replace(
        RRset(name="example.com.", type="MX", ttl=300, records=["10 mx1.dest.com.", "20 mx2.dest.com."])
    )
    body = ET.fromstring(change.calls[0].request.content)
    ns = {"r": NS}
    assert body.tag == f"{{{NS}}}ChangeResourceRecordSetsRequest"
    assert body.findtext(".//r:Change/r:Action", namespaces=ns) == "UPSERT"
    rrs = body.find(".//r:ResourceRecordSet", ns)
    assert rrs is not None
    assert (
        rrs.findtext("r:Name", namespaces=ns) == "example.com."
        and rrs.findtext("r:TTL", namespaces=ns) == "300"
    )
    assert [v.text for v in rrs.findall(".//r:Value", ns)] == ["10 mx1.dest.com.", "20 mx2.dest.com."]
    assert change.calls[0].request.headers["Content-Type"] == "application/xml"
    await prov.aclose()


@respx.mock
async def test_route53_delete_names_current_values_and_throttling_is_retried() -> None:
    respx.get(f"{R53}/rrset").mock(
        return_value=httpx.Response(
            200, text=r53_list("_dmarc.example.com.", "TXT", 300, ['"v=DMARC1; p=none"'])
        )
    )
    throttled = (
        f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type>'
        "<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId>"
        "</ErrorResponse>"
    )
    change = respx.post(f"{R53}/rrset").mock(
        side_effect=[httpx.Response(400, text=throttled), httpx.Response(200, text=CHANGE_OK)]
    )
    respx.get(CHANGE).mock(return_value=httpx.Response(200, text=r53_change("INSYNC")))
    prov = Route53Provider("AKID", "SECRET", "example.com", "Z0123456789ABC", retry=FAST)
    await prov.replace(RRset(name="_dmarc.example.com.", type="TXT", ttl=0, records=[]))
    assert change.call_count == 2
    body = ET.fromstring(change.calls[1].request.content)
    ns = {"r": NS}
    assert body.findtext(".//r:Action", namespaces=ns) == "DELETE"
    assert body.findtext(".//r:TTL", namespaces=ns) == "300"
    assert [v.text for v in body.findall(".//r:Value", ns)] == ['"v=DMARC1; p=none"']


@respx.mock
async def test_route53_invalid_change_batch_and_missing_zone() -> None:
    respx.get(f"{R53}/rrset").mock(
        return_value=httpx.Response(200, text=r53_list("other.example.com.", "A", 60, ["192.0.2.1"]))
    )
    bad = (
        f'<?xml version="1.0"?>\n<InvalidChangeBatch xmlns="{NS}"><Messages><Message>Tried to create '
        "resource record set but it already exists</Message></Messages></InvalidChangeBatch>"
    )
    respx.post(f"{R53}/rrset").mock(return_value=httpx.Response(400, text=bad))
    prov = Route53Provider("AKID", "SECRET", "example.com", "Z0123456789ABC", retry=FAST)
    assert await prov.get("example.com.", "MX") is None  # the listing starts at the next name
    with pytest.raises(ProviderError) as info:
        await prov.replace(RRset(name="example.com.", type="MX", ttl=60, records=["10 a.example.com."]))
    assert info.value.reason == "ProviderRejected" and not info.value.transient
    respx.get(R53).mock(
        return_value=httpx.Response(
            404,
            text=(
                f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type>'
                "<Code>NoSuchHostedZone</Code><Message>No hosted zone found with ID: Z0123456789ABC</Message>"
                "</Error></ErrorResponse>"
            ),
        )
    )
    with pytest.raises(ProviderError) as info:
        await prov.check_zone()
    assert info.value.reason == "ZoneNotFound"


def r53_change(status: str) -> str:
    return (
        f'<?xml version="1.0"?>\n<GetChangeResponse xmlns="{NS}"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id>'
        f"<Status>{status}</Status><SubmittedAt>2026-11-25T14:00:00.000Z</SubmittedAt></ChangeInfo>"
        "</GetChangeResponse>"
    )


@respx.mock
async def test_route53_rollback_is_byte_exact_and_waits_for_insync() -> None:
    """Forward then back to the snapshot: the second UPSERT carries exactly the values and TTL read
    first (a multi-string TXT RRset with two records); each replace returns only once INSYNC."""
    original = ['"v=spf1 include:spf.old.com ~all"', '"MS=ms123" "second string"']
    forward = ['"v=spf1 include:spf.old.com include:spf.dest.com ~all"', '"MS=ms123" "second string"']
    respx.get(f"{R53}/rrset").mock(
        side_effect=[
            httpx.Response(200, text=r53_list("example.com.", "TXT", 3600, original)),
            httpx.Response(200, text=r53_list("example.com.", "TXT", 3600, original)),
            httpx.Response(200, text=r53_list("example.com.", "TXT", 300, forward)),
        ]
    )
    change = respx.post(f"{R53}/rrset").mock(return_value=httpx.Response(200, text=CHANGE_OK))
    polls = respx.get(CHANGE).mock(
        side_effect=[
            httpx.Response(200, text=r53_change("PENDING")),
            httpx.Response(200, text=r53_change("INSYNC")),
            httpx.Response(200, text=r53_change("INSYNC")),
        ]
    )
    prov = Route53Provider("AKID", "SECRET", "example.com", "Z0123456789ABC", retry=FAST, insync_poll=0.01)
    snapshot = await prov.get("example.com.", "TXT")
    assert snapshot is not None
    await prov.replace(RRset(name="example.com.", type="TXT", ttl=300, records=forward))
    assert polls.call_count == 2  # PENDING, then INSYNC: replace() waited
    await prov.replace(snapshot)
    assert polls.call_count == 3
    ns = {"r": NS}
    back = ET.fromstring(change.calls[1].request.content)
    assert back.findtext(".//r:Action", namespaces=ns) == "UPSERT"
    assert back.findtext(".//r:TTL", namespaces=ns) == "3600"
    assert [v.text for v in back.findall(".//r:Value", ns)] == original
    await prov.aclose()


@respx.mock
async def test_route53_change_never_insync_is_reported() -> None:
    respx.get(f"{R53}/rrset").mock(
        return_value=httpx.Response(200, text=r53_list("example.com.", "MX", 60, []))
    )
    respx.post(f"{R53}/rrset").mock(return_value=httpx.Response(200, text=CHANGE_OK))
    respx.get(CHANGE).mock(return_value=httpx.Response(200, text=r53_change("PENDING")))
    prov = Route53Provider(
        "AKID", "SECRET", "example.com", "Z0123456789ABC", retry=FAST, insync_poll=0.01, insync_timeout=0.05
    )
    with pytest.raises(ProviderError, match="still PENDING") as caught:
        await prov.replace(RRset(name="example.com.", type="MX", ttl=60, records=["10 mx1.dest.com."]))
    assert caught.value.reason == "ChangeNotInSync"
    await prov.aclose()


@respx.mock
async def test_cloudflare_rollback_restores_each_records_own_ttl() -> None:
    """Cloudflare keeps a TTL per record: the snapshot keeps both, lowering sets one, the rollback posts
    each record again with its own TTL (byte-exact)."""
    respx.get(f"{CF}/zones", params={"name": "example.com"}).mock(
        return_value=httpx.Response(200, json=cf_ok([{"id": ZID, "name": "example.com", "status": "active"}]))
    )
    original = [
        cf_record("r1", "example.com", "MX", "mx.old.com", 300, priority=10),
        cf_record("r2", "example.com", "MX", "mx2.old.com", 7200, priority=20),
    ]
    lowered = [
        cf_record("r3", "example.com", "MX", "mx.old.com", 60, priority=10),
        cf_record("r4", "example.com", "MX", "mx2.old.com", 60, priority=20),
    ]
    respx.get(f"{CF}/zones/{ZID}/dns_records").mock(
        side_effect=[httpx.Response(200, json=cf_ok(r)) for r in (original, original, lowered)]
    )
    batch = respx.post(f"{CF}/zones/{ZID}/dns_records/batch").mock(
        return_value=httpx.Response(200, json=cf_ok({}))
    )
    prov = CloudflareProvider("tok-123", "example.com", retry=FAST)
    snapshot = await prov.get("example.com", "MX")
    assert snapshot is not None and snapshot.record_ttls == [300, 7200]
    assert not rrset_equal(snapshot, snapshot.model_copy(update={"record_ttls": [300, 300]}))
    await prov.replace(with_ttl(snapshot, 60))
    await prov.replace(snapshot)
    await prov.aclose()
    posts = [json.loads(c.request.content)["posts"] for c in batch.calls]
    assert [(p["content"], p["ttl"]) for p in posts[0]] == [("mx.old.com", 60), ("mx2.old.com", 60)]
    assert [(p["content"], p["ttl"]) for p in posts[1]] == [("mx.old.com", 300), ("mx2.old.com", 7200)]
