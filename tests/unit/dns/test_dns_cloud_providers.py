"""Cloudflare (API v4) and Route 53 (2013-04-01) adapters against their documented request and
response shapes, recorded with respx (the only fakes allowed: no such service runs here).

The rollback tests drive a whole DnsCutover (the pure step of test_dns_step.py's World, observe ->
decide.step -> apply) against the stateful zones of fixtures/cloud_dns.py and compare every record the
zone holds before the cutover and after the rollback to Planned."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import httpx
import pytest
import respx
from test_dns_step import D, World, spec

from fixtures.cloud_dns import CloudflareZone, Route53Zone
from mailferry_api.dnscutover import RRset
from mailferry_operator.dns import phases as ph
from mailferry_operator.dns.providers.base import DnsProvider, ProviderError, RetryPolicy
from mailferry_operator.dns.providers.cloudflare import CloudflareProvider
from mailferry_operator.dns.providers.route53 import NS, Route53Provider
from mailferry_operator.dns.rrset import rrset_equal, split_txt, txt_value, with_ttl
from mailferry_operator.dnscutover import decide
from mailferry_operator.dnscutover import draft as dc

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


async def walk(w: World, prov: DnsProvider, target: str) -> None:
    """The handler's loop with `prov` as the zone: observe (provider.get of every managed RRset and every
    snapshotted one), decide.step, apply the writes through provider.replace - until the step says stop."""
    w.spec = spec(targetPhase=target, records=w.spec.records.to_api())
    for _ in range(60):
        keys = {*ph.managed_keys(w.spec), *((r.name, r.type) for s in w.status.snapshots for r in s.rrsets)}
        w.zone = {k: await prov.get(*k) for k in sorted(keys)}
        d = decide.step(w.snapshot())
        for a in d.actions:
            if isinstance(a, dc.WriteRRset):
                await prov.replace(a.rrset)
        w.status = d.status
        if not d.again:
            break
        w.now += timedelta(seconds=1)
    assert w.status.phase == target


RECORDS = {
    "mx": [{"host": "mx1.dest.test", "priority": 10}],
    "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"]},
    "dmarc": {"rua": ["dmarc@example.test"]},
    "dkim": {"selectors": [{"name": "dest1", "source": "cname", "cnameTarget": "dest1.dkim.dest.test"}]},
}
SPF = '"v=spf1 include:spf.old.test ~all"'
DMARC = '"v=DMARC1; p=none; rua=mailto:dmarc@example.test"'
GOOGLE = '"google-site-verification=xyz"'


def cf_zone() -> CloudflareZone:
    """A zone with what a rollback must give back: per-record TTLs (one "automatic"), comments, tags,
    proxied records with settings at names mailferry never manages."""
    return CloudflareZone(
        "example.test",
        ZID,
        [
            {
                "name": "example.test",
                "type": "MX",
                "content": "mx.old.test",
                "priority": 10,
                "ttl": 3600,
                "comment": "old provider, primary",
                "tags": ["owner:mail"],
            },
            {"name": "example.test", "type": "MX", "content": "mx2.old.test", "priority": 20, "ttl": 1},
            {
                "name": "example.test",
                "type": "TXT",
                "content": SPF,
                "ttl": 3600,
                "comment": "SPF of the old provider",
                "tags": ["owner:mail", "ticket:OPS-12"],
            },
            {
                "name": "example.test",
                "type": "TXT",
                "content": '"MS=ms1234"',
                "ttl": 1,
                "comment": "Microsoft 365 verification",
                "tags": ["owner:it"],
            },
            {"name": "_dmarc.example.test", "type": "TXT", "content": DMARC, "ttl": 1800, "comment": "DMARC"},
            {
                "name": "www.example.test",
                "type": "CNAME",
                "content": "shop.example.net",
                "ttl": 1,
                "proxied": True,
                "settings": {"flatten_cname": True},
                "comment": "shop",
            },
            {
                "name": "api.example.test",
                "type": "A",
                "content": "192.0.2.10",
                "ttl": 1,
                "proxied": True,
                "settings": {"ipv4_only": True},
                "tags": ["env:prod"],
            },
            {
                "name": "old1._domainkey.example.test",
                "type": "TXT",
                "content": '"v=DKIM1; k=rsa; p=MIGf"',
                "ttl": 300,
            },
        ],
    )


def by_value(zone: CloudflareZone) -> dict[tuple[str, str, str, object], dict[str, object]]:
    return {(r["name"], r["type"], r["content"], r.get("priority")): r for r in zone.records}


@respx.mock
async def test_cloudflare_forward_to_enforced_and_rollback_is_byte_exact() -> None:
    """Forward to Enforced, then back to Planned: every record is as it was, field for field, but for
    what Cloudflare sets itself (ids and timestamps of the records mailferry deleted and posted again);
    records mailferry never changed keep their id; a TXT added at the apex mid-cutover keeps its id,
    comment and tags; names mailferry does not manage are never written."""
    zone = cf_zone()
    zone.mount(respx.mock)
    before = by_value(zone)
    untouched = {
        r["id"]: dict(r) for r in zone.records if r["name"] in ("www.example.test", "api.example.test")
    }
    untouched |= {r["id"]: dict(r) for r in zone.records if r["name"].startswith("old1.")}
    ms_id = zone.find("example.test", "TXT", '"MS=ms1234"')["id"]
    prov = CloudflareProvider("tok-123", "example.test", retry=FAST)
    w = World(spec(targetPhase="Planned", records=RECORDS))
    snap = await prov.get(D, "TXT")
    assert snap is not None and sorted(snap.record_ttls) == [300, 3600]  # "automatic" is served 300 s
    assert {a.record: (a.comment, a.auto_ttl) for a in snap.record_attrs} == {
        SPF: ("SPF of the old provider", False),
        '"MS=ms1234"': ("Microsoft 365 verification", True),
    }
    await walk(w, prov, "Staged")
    google = zone.add(
        {
            "name": "example.test",
            "type": "TXT",
            "content": GOOGLE,
            "ttl": 60,
            "comment": "Workspace",
            "tags": ["owner:it"],
        }
    )
    await walk(w, prov, "Enforced")
    apex = zone.find("example.test", "MX", "mx1.dest.test")
    assert apex["ttl"] == 3600 and apex["comment"] is None
    assert not any(r["content"] == SPF for r in zone.records)  # the old include removed at Enforced
    await walk(w, prov, "Planned")
    await prov.aclose()

    after = by_value(zone)
    assert set(after) == set(before) | {("example.test", "TXT", GOOGLE, None)}
    for k, rec in before.items():
        assert CloudflareZone.user_fields(after[k]) == CloudflareZone.user_fields(rec), k
    for rid, rec in untouched.items():
        assert next(r for r in zone.records if r["id"] == rid) == rec  # byte for byte, id and timestamps too
    assert zone.find("example.test", "TXT", '"MS=ms1234"')["id"] == ms_id  # its TTL patched, never re-created
    kept = zone.find("example.test", "TXT", GOOGLE)
    assert (kept["id"], kept["comment"], kept["tags"]) == (google["id"], "Workspace", ["owner:it"])
    written = {
        p["name"] for b in zone.batches for p in b.get("posts", []) + b.get("patches", []) if "name" in p
    }
    assert written <= {"example.test", "_dmarc.example.test", "dest1._domainkey.example.test"}
    deleted = {d["id"] for b in zone.batches for d in b.get("deletes", [])}
    assert not deleted & (set(untouched) | {ms_id, google["id"]})


@respx.mock
async def test_cloudflare_lowering_patches_ttls_and_rollback_restores_each_records_own() -> None:
    """Lowering changes only TTLs, so it patches them (the records, their ids and comments stay); the
    rollback patches each back to its own TTL, "automatic" (1) included."""
    zone = cf_zone()
    zone.mount(respx.mock)
    prov = CloudflareProvider("tok-123", "example.test", retry=FAST)
    snapshot = await prov.get("example.test", "MX")
    assert snapshot is not None and snapshot.record_ttls == [3600, 300]
    assert not rrset_equal(snapshot, snapshot.model_copy(update={"record_ttls": [3600, 3600]}))
    before = zone.state()
    await prov.replace(with_ttl(snapshot, 60))
    await prov.replace(snapshot)
    await prov.replace(snapshot)  # already so: nothing sent
    await prov.aclose()
    assert [sorted(b) for b in zone.batches] == [["patches"], ["patches"]]
    assert [(p["ttl"]) for p in zone.batches[0]["patches"]] == [60, 60]
    assert sorted(p["ttl"] for p in zone.batches[1]["patches"]) == [1, 3600]
    after = zone.state()
    assert set(after) == set(before)  # same ids
    assert all(CloudflareZone.user_fields(after[i]) == CloudflareZone.user_fields(before[i]) for i in before)


@respx.mock
async def test_cloudflare_rollback_posts_a_removed_record_with_its_attributes() -> None:
    zone = cf_zone()
    zone.mount(respx.mock)
    prov = CloudflareProvider("tok-123", "example.test", retry=FAST)
    snapshot = await prov.get("example.test", "MX")
    assert snapshot is not None
    await prov.replace(RRset(name=D, type="MX", ttl=300, records=["10 mx1.dest.test."]))
    assert zone.batches[-1]["posts"] == [
        {"name": "example.test", "type": "MX", "ttl": 300, "priority": 10, "content": "mx1.dest.test"}
    ]
    await prov.replace(snapshot)
    await prov.aclose()
    posts = sorted(zone.batches[-1]["posts"], key=lambda p: p["priority"])
    assert posts == [
        {
            "name": "example.test",
            "type": "MX",
            "ttl": 3600,
            "priority": 10,
            "content": "mx.old.test",
            "comment": "old provider, primary",
            "tags": ["owner:mail"],
        },
        {"name": "example.test", "type": "MX", "ttl": 1, "priority": 20, "content": "mx2.old.test"},
    ]


def r53_set(
    name: str, rtype: str, ttl: int | None, values: list[str], policy: str = "", tail: str = ""
) -> str:
    """One ResourceRecordSet as ListResourceRecordSets gives it, its elements in the documented order:
    `policy` (SetIdentifier, Weight, Region...) before the TTL, `tail` (AliasTarget, HealthCheckId) after."""
    rrs = "".join(f"<ResourceRecord><Value>{v}</Value></ResourceRecord>" for v in values)
    body = (f"<TTL>{ttl}</TTL>" if ttl is not None else "") + (
        f"<ResourceRecords>{rrs}</ResourceRecords>" if rrs else ""
    )
    return (
        f"<ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type>{policy}{body}{tail}</ResourceRecordSet>"
    )


ALIAS = (
    "<AliasTarget><HostedZoneId>Z2FDTNDATAQYW2</HostedZoneId><DNSName>d111111abcdef8.cloudfront.net.</DNSName>"
    "<EvaluateTargetHealth>false</EvaluateTargetHealth></AliasTarget>"
)
R53_BEFORE = [
    r53_set(D, "NS", 172800, ["ns-1.awsdns-01.org."]),
    r53_set(D, "MX", 3600, ["10 mx.old.test.", "20 mx2.old.test."]),
    r53_set(D, "TXT", 3600, [SPF, '"MS=ms1234" "second string"']),
    r53_set(f"_dmarc.{D}", "TXT", 1800, [DMARC]),
    r53_set(D, "A", None, [], tail=ALIAS),
    r53_set(
        f"www.{D}",
        "A",
        60,
        ["192.0.2.1"],
        "<SetIdentifier>blue</SetIdentifier><Weight>70</Weight>",
        "<HealthCheckId>abcdef11-2222-3333-4444-555555fedcba</HealthCheckId>",
    ),
    r53_set(f"www.{D}", "A", 60, ["192.0.2.2"], "<SetIdentifier>green</SetIdentifier><Weight>30</Weight>"),
]


def r53_zone(sets: list[str] = R53_BEFORE) -> Route53Zone:
    """Simple record sets mailferry manages beside ones it must never touch: weighted and health-checked,
    an alias at the apex, NS."""
    return Route53Zone(D, "Z0123456789ABC", sets)


def r53_provider() -> Route53Provider:
    return Route53Provider(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG",
        "example.test",
        "Z0123456789ABC",
        retry=FAST,
        insync_poll=0.001,
    )


def sorted_values(xml: str) -> str:
    """A record set with its values in a fixed order (an RRset is a set: RFC 2181 5)."""
    rrs = ET.fromstring(xml)
    rr = rrs.find(f"{{{NS}}}ResourceRecords")
    if rr is not None:
        rr[:] = sorted(rr, key=lambda v: v.findtext(f"{{{NS}}}Value") or "")
    return ET.canonicalize(ET.tostring(rrs, encoding="unicode"))


@respx.mock
async def test_route53_forward_to_enforced_and_rollback_is_byte_exact() -> None:
    """Forward to Enforced and back to Planned: every record set is as it was (name, type, TTL, values;
    weighted, health-checked and alias ones never written), the TXT added mid-cutover kept, and every
    change waited to INSYNC."""
    zone = r53_zone()
    zone.mount(respx.mock)
    before = zone.state()
    prov = r53_provider()
    w = World(spec(targetPhase="Planned", records=RECORDS))
    await walk(w, prov, "Staged")
    apex = await prov.get(D, "TXT")
    assert apex is not None
    zone.record_sets = [r for r in zone.record_sets if Route53Zone.key(r) != (D, "TXT", "")] + [
        Route53Zone.parse(r53_set(D, "TXT", apex.ttl, [*apex.records, GOOGLE]))
    ]  # someone adds a verification TXT at the apex
    await walk(w, prov, "Enforced")
    mx = await prov.get(D, "MX")
    assert mx == RRset(name=D, type="MX", ttl=3600, records=["10 mx1.dest.test."])
    await walk(w, prov, "Planned")
    await prov.aclose()

    after = zone.state()
    apex_before = next(x for x in before if ">TXT<" in x and f"<Name>{D}</Name>" in x)
    want = [x for x in before if x != apex_before] + [
        apex_before.replace(
            "</ResourceRecords>",
            f"<ResourceRecord><Value>{GOOGLE}</Value></ResourceRecord></ResourceRecords>",
        )
    ]
    assert sorted(map(sorted_values, after)) == sorted(map(sorted_values, want))
    assert len(zone.changes) >= 8
    names = {c.findtext(f".//{{{NS}}}Name") for c in zone.changes}
    assert names == {D, f"_dmarc.{D}", f"dest1._domainkey.{D}"}
    assert all(n == 2 for n in zone._polls.values())  # each change polled PENDING, then INSYNC


def weighted(i: str) -> str:
    return f"<SetIdentifier>{i}</SetIdentifier><Weight>10</Weight>"


@pytest.mark.parametrize(
    ("instead", "kind"),
    [
        (
            [
                r53_set(D, "MX", 300, ["10 mx.a.test."], weighted("a")),
                r53_set(D, "MX", 300, ["10 mx.b.test."], weighted("b")),
            ],
            "weighted",
        ),
        (
            [
                r53_set(
                    f"_dmarc.{D}",
                    "TXT",
                    None,
                    [],
                    tail=ALIAS.replace("d111111abcdef8.cloudfront.net", "_dmarc.example.org"),
                )
            ],
            "an alias record",
        ),
        (
            [
                r53_set(
                    D,
                    "TXT",
                    300,
                    ['"v=spf1 -all"'],
                    "<SetIdentifier>eu</SetIdentifier><Region>eu-west-1</Region>",
                )
            ],
            "latency-based",
        ),
    ],
)
@respx.mock
async def test_route53_record_set_with_a_routing_policy_is_refused_not_clobbered(
    instead: list[str], kind: str
) -> None:
    """A managed name/type that is an alias or has a routing policy cannot be written back as it was: the
    reconcile stops with RecordSetNotManageable (a Problem: Stalled with that reason and message) before
    any change, and the zone is untouched."""
    replaced = {Route53Zone.key(Route53Zone.parse(x))[:2] for x in instead}
    zone = r53_zone(
        [x for x in R53_BEFORE if Route53Zone.key(Route53Zone.parse(x))[:2] not in replaced] + instead
    )
    zone.mount(respx.mock)
    before = zone.state()
    prov = r53_provider()
    with pytest.raises(ProviderError) as info:
        await walk(World(spec(targetPhase="Planned", records=RECORDS)), prov, "Enforced")
    await prov.aclose()
    assert info.value.reason == "RecordSetNotManageable" and not info.value.transient
    assert (
        kind in info.value.message and "wJalr" not in info.value.message and "AKID" not in info.value.message
    )
    assert zone.changes == [] and zone.state() == before


@respx.mock
async def test_route53_lists_every_weighted_record_set_across_pages() -> None:
    """Weighted record sets of one name and type may span listing pages (maxitems): all are read."""
    zone = r53_zone([r53_set(D, "MX", 300, [f"10 mx{i}.test."], weighted(f"s{i:03d}")) for i in range(150)])
    zone.mount(respx.mock)
    listing = respx.mock.routes[0]
    prov = r53_provider()
    with pytest.raises(ProviderError, match=r"weighted \(150 record sets"):
        await prov.get(D, "MX")
    await prov.aclose()
    assert listing.call_count == 2
    assert listing.calls[1].request.url.params["identifier"] == "s100"
