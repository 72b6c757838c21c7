"""The DNS half of `make demo`: a local PowerDNS serving the demo domain as its authoritative nameserver
(found from the zone's own NS RRset), the DnsCutover that walks its phases after the mail copy, and the
lines the live view shows for it.

DEMO TIMINGS, not for production: the built-in gates run with their real rules, but the minimum dwell
per phase is seconds (default 24 h), the drain after the MX swap 15 s (default 1 h) and the zone's old
TTLs 10 s, so the whole cutover takes about a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import demolib as d

from fixtures.powerdns import PowerDNS

OLD_TTL = 10
DEMO_SAFETY = {
    "minDwell": {"ttlLowered": "0s", "staged": "4s", "switched": "4s", "enforced": "2s"},
    "drainMinimum": "15s",
}
DEMO_LABEL = (
    "DEMO TIMINGS (not for production): dwell 4 s per phase (default 24 h), drain 15 s (default 1 h), "
    f"old TTL {OLD_TTL} s"
)


def start_zone(work: Path, domain: str) -> PowerDNS:
    """PowerDNS on 127.0.0.1 with the domain as its old provider left it (and a verification string)."""
    (work / "powerdns").mkdir()
    pdns = PowerDNS(work / "powerdns", "demo").start()
    zone = domain.rstrip(".") + "."
    pdns.create_zone(
        zone,
        [
            ("ns1", "A", 3600, ["127.0.0.1"]),
            ("ns2", "A", 3600, ["127.0.0.1"]),
            ("@", "MX", OLD_TTL, ["10 mx.old-provider.test."]),
            (
                "@",
                "TXT",
                OLD_TTL,
                ["v=spf1 include:spf.old-provider.test ~all", "google-site-verification=demo"],
            ),
            ("_dmarc", "TXT", OLD_TTL, [f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}"]),
        ],
        soa=f"ns1.{zone} hostmaster.{zone} 1 3600 600 86400 5",
    )
    return pdns


def operator_env() -> dict[str, str]:
    # gates every 2 s instead of 15; no Internet here, so SPF includes are counted, not resolved
    return {"MAILFERRY_DNS_GATE_INTERVAL": "2", "MAILFERRY_SPF_RESOLVE": "0"}


def manifests(name: str, namespace: str, domain: str, pdns: PowerDNS) -> list[dict[str, Any]]:
    cutover = {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "DnsCutover",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": domain,
            "provider": {
                "type": "powerdns",
                "secretRef": {"name": f"{name}-dns"},
                "powerdns": {"apiUrl": pdns.api_url},
            },
            "migrationRef": {"name": name},
            "targetPhase": "Enforced",
            "records": {
                "mx": [{"host": "mx1.new-provider.test", "priority": 10}],
                "spf": {"include": ["spf.new-provider.test"], "removeInclude": ["spf.old-provider.test"]},
                "dkim": {
                    "selectors": [
                        {"name": "new1", "source": "cname", "cnameTarget": "new1.dkim.new-provider.test"}
                    ]
                },
                "dmarc": {"rua": [f"dmarc@{domain}"]},
            },
            "ttl": {"lowered": 30, "normal": 3600},
            "safety": {**DEMO_SAFETY, "nameserverPort": pdns.port},
        },
    }
    return [d.secret_manifest(f"{name}-dns", namespace, {"api-key": pdns.api_key}), cutover]


def cutover(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The DnsCutover, or None before it is applied."""
    try:
        return dict(d.get(kube, "dnscutovers.mailferry.io", namespace, name))
    except Exception:  # kubectl: not found (yet)
        return None


def lines(obj: dict[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    st = obj.get("status") or {}
    phase, target = st.get("phase") or "Planned", obj["spec"]["targetPhase"]
    stage = f" (DMARC stage {st['dmarcStage'] + 1})" if st.get("dmarcStage") is not None else ""
    out = [f"  DnsCutover {obj['metadata']['name']}: {phase}{stage} -> {target}   [{DEMO_LABEL}]"]
    gates = "  ".join(f"{g['name']}={g['result']}" for g in st.get("gates") or [])
    if gates:
        out.append(f"    gates: {gates}")
    if st.get("switchedAt"):
        out.append(
            f"    MX switched at {st['switchedAt']}; the migration's final round after {st.get('drainUntil')}"
        )
    return out
