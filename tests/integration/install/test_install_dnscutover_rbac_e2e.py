"""A DnsCutover driven forward and rolled back by the operator running with the chart's ServiceAccount token.

Exercises the grants only the DNS side uses: reading the DNS-provider Secret, creating the DKIM key Secret,
creating and patching the MTA-STS policy ConfigMap, patching dnscutovers/status, posting Events. Real
PowerDNS (REST API), real API server with RBAC; the harness of tests/e2e/test_dnscutover_*.py.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from installlib import namespaced_release, unexpected_denials

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dns"))

from dnscutover_harness import (
    Operator,
    PolicyMirror,
    cutover_manifest,
    in_phase,
    patch_spec,
    pdns_secret,
    powerdns_provider,
    rolled_back,
    wait_dc,
    zone_rrsets,
)

from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS

pytestmark = pytest.mark.timeout(420)
START = [
    ("@", "MX", 600, ["10 mx1.old.test."]),
    ("@", "TXT", 300, ["v=spf1 include:spf.old.test ~all"]),
    ("_dmarc", "TXT", 60, ["v=DMARC1; p=none"]),
]


@pytest.fixture
def release(kube: KubeAPI) -> Iterator[dict[str, str]]:
    with namespaced_release(kube, "mfd", "dns", "dnscutovers.mailferry.io") as rel:
        yield rel


def cutover(zone: str, pdns: PowerDNS, policy_url: str) -> dict[str, Any]:
    served = {"name": "served", "type": "dnsRecord", "dnsRecord": {"nameservers": [f"127.0.0.1:{pdns.port}"]}}
    records = {
        "mx": [{"host": "mx1.dest.test", "priority": 10}],
        "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"]},
        "dkim": {"selectors": [{"name": "mf2026", "algorithm": "rsa"}]},
        "dmarc": {"rua": ["dmarc@reports.dest.test"]},
        "mtaSts": {"maxAgeSeconds": 86400, "policyUrl": policy_url, "policyConfigMap": "cut-mta-sts"},
    }
    return cutover_manifest(
        "cut",
        zone,
        powerdns_provider(pdns.api_url, serverId="localhost"),
        "Enforced",
        records,
        ttl={"lowered": 30, "normal": 3600},
        gates={"staged": [served], "switched": [served], "enforced": [served]},
    )


def test_dnscutover_forward_and_rollback_under_chart_rbac(
    kube: KubeAPI, powerdns: PowerDNS, release: dict[str, str], tmp_path: Path
) -> None:
    ns = release["ns"]
    op_kc = kube.service_account_kubeconfig(release["sys"], f"{release['fullname']}-operator")
    zone = f"rbac{secrets.token_hex(2)}.test."
    powerdns.create_zone(zone, START)
    before = zone_rrsets(powerdns, zone)
    pdns_secret(kube, ns, "dns-creds", {"api-key": powerdns.api_key})
    mirror = PolicyMirror(kube, ns, "cut-mta-sts", tmp_path)
    op = Operator(kube, ns, tmp_path, env={"KUBECONFIG": str(op_kc)}).start()
    try:
        kube.apply(cutover(zone, powerdns, mirror.url), ns)
        obj = wait_dc(
            kube,
            ns,
            "cut",
            in_phase("Enforced"),
            "Enforced and Ready under the chart's RBAC",
            180,
            operator=op,
        )
        assert obj["status"]["mtaSts"]["mode"] == "enforce"
        secret = kube.get("secret", "cut-dkim-mf2026", ns)
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "DnsCutover"
        assert "mode: enforce" in mirror.fetch()
        assert powerdns.answer(zone, "MX") == ["10 mx1.dest.test."]

        patch_spec(kube, ns, "cut", '{"spec": {"targetPhase": "Planned"}}')
        wait_dc(
            kube, ns, "cut", in_phase("Planned", "RolledBack"), "rolled back to Planned", 180, operator=op
        )
        assert rolled_back(powerdns, zone, before)  # exactly, but for _mta-sts kept in mode none
    finally:
        op.stop()
        mirror.close()
    unexpected = unexpected_denials(op.log_text())
    assert not unexpected, "\n".join(unexpected[:20])
    events = kube.get("events", namespace=ns)["items"]
    assert any(e["involvedObject"]["kind"] == "DnsCutover" for e in events)
