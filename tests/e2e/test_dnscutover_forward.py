"""DnsCutover end to end: real API server, real PowerDNS (REST and RFC 2136 with TSIG), the operator
as a subprocess. Forward to Enforced with every record checked by DNS queries, then rollback to
Planned restoring the zone exactly."""

from __future__ import annotations

import base64
import itertools
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS
from mailferry_operator.mtasts import policy as mtasts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import (
    Operator,
    PolicyMirror,
    condition,
    cutover_manifest,
    in_phase,
    patch_spec,
    pdns_secret,
    powerdns_provider,
    wait_dc,
    zone_rrsets,
)

_n = itertools.count()
START = [
    ("@", "MX", 600, ["10 mx1.old.test.", "20 mx2.old.test."]),
    ("@", "TXT", 300, ["v=spf1 include:spf.old.test ~all", "site-verification=xyz"]),
    ("_dmarc", "TXT", 60, ["v=DMARC1; p=none; rua=mailto:old-reports@example.test"]),
    ("www", "A", 3600, ["192.0.2.10"]),
    ("old1._domainkey", "TXT", 3600, ["v=DKIM1; k=rsa; p=OLDKEY"]),
]


def cutover(name: str, zone: str, provider: dict[str, Any], ns: str, policy_url: str) -> dict[str, Any]:
    dns_gate = {"name": "served", "type": "dnsRecord", "dnsRecord": {"nameservers": [ns]}}
    records = {
        "mx": [{"host": "mx1.dest.test", "priority": 10}, {"host": "mx2.dest.test", "priority": 20}],
        "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"], "all": "-all"},
        "dkim": {
            "selectors": [
                {"name": "mf2026", "algorithm": "rsa"},
                {"name": "mf2026e", "algorithm": "ed25519"},
                {"name": "dest1", "source": "cname", "cnameTarget": "dest1.dkim.dest.test"},
            ],
            "keepSelectors": ["old1"],
        },
        "dmarc": {"rua": ["dmarc@reports.dest.test"]},
        "mtaSts": {"maxAgeSeconds": 86400, "policyUrl": policy_url},
        "tlsRpt": {"rua": ["tlsrpt@reports.dest.test"]},
    }
    gates = {
        "staged": [dns_gate],
        "switched": [dns_gate],
        "enforced": [dns_gate, {"name": "soak", "type": "minDuration", "duration": "1s"}],
    }
    ttl = {"lowered": 30, "normal": 3600}
    return cutover_manifest(name, zone, provider, "Enforced", records, ttl=ttl, gates=gates)


def provider_for(kind: str, pdns: PowerDNS, zone: str, kube: KubeAPI, namespace: str) -> dict[str, Any]:
    if kind == "powerdns":
        pdns_secret(kube, namespace, "dns-creds", {"api-key": pdns.api_key})
        return powerdns_provider(pdns.api_url, serverId="localhost")
    key = pdns.create_tsig_key(f"mailferry-{next(_n)}")
    pdns.allow_dnsupdate(zone, key)
    pdns_secret(kube, namespace, "dns-creds", {"tsig-secret": key.secret})
    return {
        "type": "rfc2136",
        "secretRef": {"name": "dns-creds"},
        "rfc2136": {
            "server": pdns.host,
            "port": pdns.port,
            "tsigKeyName": key.name,
            "tsigAlgorithm": key.algorithm,
        },
    }


@pytest.mark.parametrize("kind", ["powerdns", "rfc2136"])
def test_forward_to_enforced_then_rollback_to_planned(
    kind: str, kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    zone = f"fwd{next(_n)}-{kind}.test."
    powerdns.create_zone(zone, START)
    before = zone_rrsets(powerdns, zone)
    provider = provider_for(kind, powerdns, zone, kube, namespace)
    mirror = PolicyMirror(kube, namespace, "cut-mta-sts", tmp_path)
    op = Operator(kube, namespace, tmp_path).start()
    try:
        kube.apply(cutover("cut", zone, provider, f"127.0.0.1:{powerdns.port}", mirror.url), namespace)
        obj = wait_dc(kube, namespace, "cut", in_phase("Enforced"), "Enforced and Ready", 120, operator=op)
        st = obj["status"]
        assert st["dmarcStage"] == 2 and st["observedGeneration"] == obj["metadata"]["generation"]
        assert [h["toPhase"] for h in st["history"]] == [
            "TTLLowered",
            "Staged",
            "Switched",
            "Enforced",
            "Enforced",
            "Enforced",
        ]
        assert {s["phase"] for s in st["snapshots"]} == {"TTLLowered", "Staged", "Switched", "Enforced"}

        q = powerdns.answer
        # MX swapped, TTLs restored to normal
        assert sorted(q(zone, "MX")) == ["10 mx1.dest.test.", "20 mx2.dest.test."]
        assert powerdns.query(zone, "MX").answer[0].ttl == 3600
        # SPF: new include, old include removed, other TXT kept
        assert sorted(q(zone, "TXT")) == ["site-verification=xyz", "v=spf1 include:spf.dest.test -all"]
        # DMARC at the last stage (reject), rua of both old and new
        assert q("_dmarc." + zone, "TXT") == [
            "v=DMARC1; p=reject; rua=mailto:old-reports@example.test,mailto:dmarc@reports.dest.test"
        ]
        # DKIM: TXT of the generated keys (private key in a Secret owned by the cutover), the CNAME
        for sel, alg in (("mf2026", "rsa"), ("mf2026e", "ed25519")):
            secret = kube.get("secret", f"cut-dkim-{sel}", namespace)
            assert secret["metadata"]["ownerReferences"][0]["kind"] == "DnsCutover"
            pem = base64.b64decode(secret["data"]["private.pem"])
            key = serialization.load_pem_private_key(pem, password=None)
            if alg == "rsa":
                der = key.public_key().public_bytes(
                    serialization.Encoding.DER,  # type: ignore[union-attr]
                    serialization.PublicFormat.SubjectPublicKeyInfo,
                )
                assert key.key_size == 2048  # type: ignore[union-attr]
            else:
                der = key.public_key().public_bytes(
                    serialization.Encoding.Raw,  # type: ignore[union-attr]
                    serialization.PublicFormat.Raw,
                )
            assert q(f"{sel}._domainkey.{zone}", "TXT") == [
                f"v=DKIM1; k={alg}; p={base64.b64encode(der).decode()}"
            ]
        rsa_txt = powerdns.query(f"mf2026._domainkey.{zone}", "TXT").answer[0][0]
        assert len(rsa_txt.strings) == 2 and len(rsa_txt.strings[0]) == 255
        assert q(f"dest1._domainkey.{zone}", "CNAME") == ["dest1.dkim.dest.test."]
        assert q(f"old1._domainkey.{zone}", "TXT") == ["v=DKIM1; k=rsa; p=OLDKEY"]  # old selector kept
        # MTA-STS enforce, id matches the served policy; TLS-RPT
        policy = mirror.fetch()
        assert "mode: enforce" in policy and "mx: mx1.dest.test" in policy
        # the switch drains for an hour (spec.safety.drainMinimum): the old MX stay in the policy until then
        drain_until = datetime.fromisoformat(st["drainUntil"].replace("Z", "+00:00"))
        assert "mx: mx1.old.test" in policy and drain_until > datetime.now(UTC) + timedelta(minutes=30)
        assert q("_mta-sts." + zone, "TXT") == [f"v=STSv1; id={mtasts.policy_id(policy)}"]
        assert st["mtaSts"]["mode"] == "enforce" and st["mtaSts"]["id"] == mtasts.policy_id(policy)
        assert q("_smtp._tls." + zone, "TXT") == ["v=TLSRPTv1; rua=mailto:tlsrpt@reports.dest.test"]
        assert q("www." + zone, "A") == ["192.0.2.10"]  # untouched
        samples = {
            (sm.name, tuple(sorted(sm.labels.items()))): sm.value
            for fam in text_string_to_metric_families(op.metrics())
            for sm in fam.samples
        }
        me = {"namespace": namespace, "dnscutover": "cut", "domain": zone.rstrip(".")}

        def metric(name: str, **extra: str) -> float | None:
            return samples.get((name, tuple(sorted({**me, **extra}.items()))))

        assert metric("mailferry_dnscutover_phase_index") == 4.0
        assert metric("mailferry_dnscutover_phase", phase="Enforced") == 1.0
        assert metric("mailferry_dnscutover_phase", phase="Switched") == 0.0
        assert metric("mailferry_dnscutover_transitions_total", direction="forward") == 4.0
        assert metric("mailferry_dnscutover_condition", condition="Ready") == 1.0
        writes = samples.get(
            ("mailferry_dns_record_writes_total", (("provider", kind), ("result", "success")))
        )
        assert writes is not None and writes >= 11

        # Rollback by reverting the spec: walks back phase by phase to the exact starting zone, but for
        # _mta-sts: a sender may still cache the enforce policy, so the TXT stays and announces, under a
        # new id, the `mode: none` policy now served (RFC 8461 §8.3).
        patch_spec(kube, namespace, "cut", '{"spec": {"targetPhase": "Planned"}}')
        obj = wait_dc(kube, namespace, "cut", in_phase("Planned"), "rolled back to Planned", 60, operator=op)
        after = zone_rrsets(powerdns, zone)
        kept = after.pop(("_mta-sts." + zone, "TXT"))
        assert after == before

        def served_none() -> str | None:
            served = mirror.fetch()
            return served if "mode: none" in served else None

        none = wait_until(served_none, timeout=30, what="the mode none policy served")
        assert kept == (30, (f'"v=STSv1; id={mtasts.policy_id(none)}"',))
        assert mtasts.policy_id(none) != mtasts.policy_id(policy)
        assert obj["status"]["mtaSts"]["mode"] == "none"
        assert sorted(q(zone, "MX")) == ["10 mx1.old.test.", "20 mx2.old.test."]
        assert condition(obj, "RolledBack")["status"] == "True"
        back = [
            (h["fromPhase"], h["toPhase"]) for h in obj["status"]["history"] if h["reason"] == "RolledBack"
        ]
        assert back == [
            ("Enforced", "Switched"),
            ("Switched", "Staged"),
            ("Staged", "TTLLowered"),
            ("TTLLowered", "Planned"),
        ]
        assert obj["status"].get("snapshots", []) == []

        def reasons() -> set[str]:
            items = yaml.safe_load(kube.kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout)[
                "items"
            ]
            return {e["reason"] for e in items}

        # Kopf posts events asynchronously
        wait_until(
            lambda: {"PhaseChanged", "RolledBack", "DkimKeyGenerated"} <= reasons(),
            timeout=30,
            what="PhaseChanged, RolledBack and DkimKeyGenerated events",
        )

        # Deleting the DnsCutover never changes DNS.
        patch_spec(kube, namespace, "cut", '{"spec": {"targetPhase": "TTLLowered"}}')
        wait_dc(kube, namespace, "cut", in_phase("TTLLowered"), "TTLLowered again", operator=op)
        lowered = zone_rrsets(powerdns, zone)
        assert lowered[(zone, "MX")][0] == 30 and lowered[(zone, "TXT")][0] == 30
        assert lowered[("_dmarc." + zone, "TXT")][0] == 30
        kube.kubectl("delete", "dnscutover", "cut", "-n", namespace, "--wait=true", "--timeout=30s")
        assert zone_rrsets(powerdns, zone) == lowered
    finally:
        op.stop()
        mirror.close()
