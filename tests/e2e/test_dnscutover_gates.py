"""Each DnsCutover gate blocking a phase, against real components: a MailMigration whose status the
test writes (syncLag), two authoritative PowerDNS servers (dnsRecord), the zone's old TTL
(ttlElapsed), a real Prometheus with test data (prometheus, above range and no data), and manual
approval. The operator runs as `kopf run -m mailferry_operator.dnscutover.handlers` so that no
MailMigration controller overwrites the status this test sets."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS, PowerDNSPair
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import (
    Operator,
    condition,
    cutover_manifest,
    in_phase,
    patch_spec,
    paused_for,
    pdns_secret,
    phase_is,
    powerdns_provider,
    wait_dc,
)

_n = itertools.count()


def base_zone(pdns: PowerDNS | PowerDNSPair, prefix: str, mx_ttl: int = 60) -> str:
    zone = f"{prefix}{next(_n)}.test."
    pdns.create_zone(zone, [("@", "MX", mx_ttl, ["10 mx.old.test."]), ("@", "TXT", 60, ["v=spf1 -all"])])
    return zone


def dc(zone: str, pdns: PowerDNS, target: str, gates: dict[str, Any], **extra: Any) -> dict[str, Any]:
    records = {
        "mx": [{"host": "mx1.dest.test", "priority": 10}],
        "spf": {"include": ["spf.dest.test"]},
        "dkim": {"selectors": [{"name": "mf1"}]},
    }
    provider = powerdns_provider(pdns.api_url)
    return cutover_manifest("cut", zone, provider, target, records, ttl={"lowered": 30}, gates=gates, **extra)


def start(kube: KubeAPI, namespace: str, pdns: PowerDNS, tmp_path: Path) -> Operator:
    pdns_secret(kube, namespace, "dns-creds", {"api-key": pdns.api_key})
    return Operator(kube, namespace, tmp_path, only_dnscutover=True).start()


def gate_status(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in obj["status"]["gates"] if g["name"] == name)


def stalled_by(gate: str) -> Any:
    def check(o: dict[str, Any]) -> bool:
        c = condition(o, "Stalled")
        return (
            c.get("status") == "True"
            and c.get("reason") == "GateFailed"
            and f"{gate}:" in c.get("message", "")
        )

    return check


def prometheus_gate(
    name: str, prometheus: Prometheus, query: str, most: float, **extra: Any
) -> dict[str, Any]:
    """A prometheus gate polling every second, failing above `most`."""
    spec = {
        "address": prometheus.url,
        "query": query,
        "thresholdRange": {"max": most},
        "interval": "1s",
        **extra,
    }
    return {"name": name, "type": "prometheus", "prometheus": spec}


def events(kube: KubeAPI, namespace: str) -> list[dict[str, Any]]:
    return yaml.safe_load(kube.kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout)["items"]


def set_lag(kube: KubeAPI, namespace: str, max_seconds: int, pending: int) -> None:
    """Write the MailMigration `mig`'s status.lag (no MailMigration controller runs here)."""
    lag = {"status": {"lag": {"maxSeconds": max_seconds, "pendingMessages": pending}}}
    kube.kubectl(
        "patch",
        "mailmigration",
        "mig",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(lag),
    )


def test_sync_lag_over_threshold_blocks_the_mx_switch(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    pdns_secret(kube, namespace, "imap", {"password": "secret-pw"})
    endpoint = {"host": "imap.example.test", "auth": {"secretRef": {"name": "imap"}}}
    kube.apply(
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "MailMigration",
            "metadata": {"name": "mig"},
            "spec": {
                "source": endpoint,
                "destination": endpoint,
                "mailboxes": [{"source": "a@example.test"}],
            },
        },
        namespace,
    )
    set_lag(kube, namespace, 3600, 12)
    zone = base_zone(powerdns, "lag")
    op = start(kube, namespace, powerdns, tmp_path)
    try:
        gates = {"switched": [{"name": "lag", "type": "syncLag", "syncLag": {"maxSeconds": 60}}]}
        kube.apply(dc(zone, powerdns, "Switched", gates, migrationRef={"name": "mig"}), namespace)
        obj = wait_dc(kube, namespace, "cut", stalled_by("lag"), "Stalled by the lag gate", operator=op)
        assert obj["status"]["phase"] == "Staged"
        g = gate_status(obj, "lag")
        assert g["result"] == "Failed" and g["phase"] == "Switched"
        assert g["measurements"][-1]["value"] == "lag 3600s, 12 pending"
        assert condition(obj, "GatesPassed")["status"] == "False"
        assert condition(obj, "Ready")["status"] == "False"
        assert powerdns.answer(zone, "MX") == ["10 mx.old.test."]  # not switched
        mx_change = next(c for c in obj["status"]["plan"]["changes"] if c["type"] == "MX")
        assert mx_change["after"]["records"] == ["10 mx1.dest.test."]
        warn = wait_until(
            lambda: [e for e in events(kube, namespace) if e["reason"] == "GateFailed"],
            timeout=30,
            what="a GateFailed event",
        )  # Kopf posts events asynchronously
        assert "lag 3600s" in warn[0]["message"] and warn[0]["type"] == "Warning"

        set_lag(kube, namespace, 5, 0)
        obj = wait_dc(
            kube, namespace, "cut", in_phase("Switched"), "Switched once the lag is small", operator=op
        )
        assert condition(obj, "Stalled")["status"] == "False"
        assert powerdns.answer(zone, "MX") == ["10 mx1.dest.test."]
    finally:
        op.stop()


def test_dkim_missing_on_one_of_two_authoritative_servers(
    kube: KubeAPI, namespace: str, powerdns_pair: PowerDNSPair, tmp_path: Path
) -> None:
    primary, secondary = powerdns_pair.primary, powerdns_pair.secondary
    zone = base_zone(powerdns_pair, "two")
    op = start(kube, namespace, primary, tmp_path)
    try:
        servers = [f"{s.host}:{s.port}" for s in powerdns_pair]
        gates = {
            "switched": [
                {
                    "name": "dkim",
                    "type": "dnsRecord",
                    "dnsRecord": {"name": "mf1._domainkey", "type": "TXT", "nameservers": servers},
                }
            ]
        }
        kube.apply(dc(zone, primary, "Switched", gates), namespace)
        obj = wait_dc(kube, namespace, "cut", stalled_by("dkim"), "Stalled: DKIM not on ns2", operator=op)
        assert obj["status"]["phase"] == "Staged"
        msg = gate_status(obj, "dkim")["message"]
        assert f"127.0.0.1:{secondary.port}" in msg and "mf1._domainkey" in msg and "missing" in msg
        assert f"127.0.0.1:{primary.port}:" not in msg
        dkim = primary.answer("mf1._domainkey." + zone, "TXT")
        assert dkim and dkim[0].startswith("v=DKIM1; k=rsa; p=")
        assert secondary.answer("mf1._domainkey." + zone, "TXT") == []

        # the second server catches up (as a secondary would after its transfer): the gate passes
        contents = primary.records(zone, "mf1._domainkey", "TXT")
        secondary.set_rrset(zone, "mf1._domainkey", "TXT", 30, contents)
        wait_dc(kube, namespace, "cut", phase_is("Switched"), "Switched after ns2 caught up", operator=op)
    finally:
        op.stop()


def test_ttl_not_elapsed_pauses_before_staging(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    zone = base_zone(powerdns, "ttl", mx_ttl=3600)
    op = start(kube, namespace, powerdns, tmp_path)
    try:
        kube.apply(
            dc(zone, powerdns, "Staged", {"staged": [{"name": "old-ttl", "type": "ttlElapsed"}]}), namespace
        )
        obj = wait_dc(kube, namespace, "cut", paused_for("WaitingForGates"), "Paused on the TTL", operator=op)
        assert obj["status"]["phase"] == "TTLLowered"
        assert powerdns.query(zone, "MX").answer[0].ttl == 30  # lowered ...
        g = gate_status(obj, "old-ttl")
        assert g["result"] == "Pending" and "for the old TTL (3600s)" in g["message"]
        assert condition(obj, "Paused")["status"] == "True" and condition(obj, "Stalled")["status"] == "False"
        assert powerdns.answer("mf1._domainkey." + zone, "TXT") == []  # ... but nothing staged
    finally:
        op.stop()


def test_prometheus_bounce_rate_above_range_stalls_then_recovers(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, prometheus: Prometheus, tmp_path: Path
) -> None:
    zone = base_zone(powerdns, "prom")
    labels = {"domain": zone.rstrip(".")}
    prometheus.set("mailferry_e2e_bounce_rate", 0.05, labels)
    query = f'mailferry_e2e_bounce_rate{{domain="{labels["domain"]}"}}'
    prometheus.wait_for(query, lambda v: v == 0.05)
    op = start(kube, namespace, powerdns, tmp_path)
    try:
        gate = prometheus_gate("bounces", prometheus, query, 0.02, count=1)
        kube.apply(dc(zone, powerdns, "TTLLowered", {"ttlLowered": [gate]}), namespace)
        obj = wait_dc(kube, namespace, "cut", stalled_by("bounces"), "Stalled on bounces", operator=op)
        g = gate_status(obj, "bounces")
        assert obj["status"]["phase"] == "Planned" and g["result"] == "Failed" and g["failures"] == 1
        assert g["measurements"][-1]["value"] == "0.05" and "outside [-inf, 0.02]" in g["message"]
        assert powerdns.query(zone, "MX").answer[0].ttl == 60

        # bounces drop; a failed analysis is final until the spec changes (here: count 2)
        prometheus.set("mailferry_e2e_bounce_rate", 0.01, labels)
        prometheus.wait_for(query, lambda v: v == 0.01)
        gate["prometheus"]["count"] = 2  # type: ignore[index]
        patch_spec(kube, namespace, "cut", json.dumps({"spec": {"gates": {"ttlLowered": [gate]}}}))
        obj = wait_dc(
            kube, namespace, "cut", in_phase("TTLLowered"), "TTLLowered after recovery", operator=op
        )
        hist = [h for h in obj["status"]["history"] if h["toPhase"] == "TTLLowered"]
        assert len(hist) == 1
    finally:
        op.stop()


def test_prometheus_no_data_is_inconclusive(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, prometheus: Prometheus, tmp_path: Path
) -> None:
    zone = base_zone(powerdns, "nodata")
    op = start(kube, namespace, powerdns, tmp_path)
    try:
        gate = prometheus_gate("complaints", prometheus, 'mailferry_e2e_absent_metric{x="y"}', 0.001)
        kube.apply(dc(zone, powerdns, "TTLLowered", {"ttlLowered": [gate]}), namespace)
        obj = wait_dc(kube, namespace, "cut", paused_for("GatesInconclusive"), "Paused: no data", operator=op)
        g = gate_status(obj, "complaints")
        assert g["result"] == "Inconclusive" and g["measurements"][-1]["value"] == "no data"
        assert obj["status"]["phase"] == "Planned" and condition(obj, "Stalled")["status"] == "False"
    finally:
        op.stop()


def test_manual_approval_and_dry_run(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    zone = base_zone(powerdns, "appr")
    op = start(kube, namespace, powerdns, tmp_path)
    try:
        gates = {"ttlLowered": [{"name": "ok", "type": "manualApproval"}]}
        kube.apply(dc(zone, powerdns, "TTLLowered", gates, dryRun=True), namespace)
        obj = wait_dc(
            kube, namespace, "cut", paused_for("WaitingForGates"), "waiting for approval", operator=op
        )
        assert "spec.approvedPhase" in gate_status(obj, "ok")["message"]
        patch_spec(kube, namespace, "cut", '{"spec": {"approvedPhase": "TTLLowered"}}')
        obj = wait_dc(kube, namespace, "cut", paused_for("DryRun"), "dry run stops at the plan", operator=op)
        changes = {(c["name"], c["type"]): c for c in obj["status"]["plan"]["changes"]}
        assert changes[(zone, "MX")]["before"]["ttl"] == 60 and changes[(zone, "MX")]["after"]["ttl"] == 30
        assert obj["status"]["phase"] == "Planned" and powerdns.query(zone, "MX").answer[0].ttl == 60
        patch_spec(kube, namespace, "cut", '{"spec": {"dryRun": false}}')
        wait_dc(kube, namespace, "cut", in_phase("TTLLowered"), "applied", operator=op)
        assert powerdns.query(zone, "MX").answer[0].ttl == 30
    finally:
        op.stop()


def test_existing_dkim_key_is_used_and_annotation_approves(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    """A DKIM Secret that already exists is never regenerated: its key is what gets published."""
    import base64

    from mailferry_operator.dns import dkim

    pem = dkim.generate_private_pem("rsa")
    _, pub = dkim.public_key_b64(pem)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cut-dkim-mf1", "labels": {"mailferry.io/credentials": "true"}},
            "data": {"private.pem": base64.b64encode(pem).decode()},
        },
        namespace,
    )
    before = kube.get("secret", "cut-dkim-mf1", namespace)
    zone = base_zone(powerdns, "dkim")
    op = start(kube, namespace, powerdns, tmp_path)
    try:
        approval = [{"name": "ok", "type": "manualApproval"}]
        obj = dc(zone, powerdns, "Staged", {"ttlLowered": approval, "staged": approval})
        obj["metadata"]["annotations"] = {"mailferry.io/approved-phase": "Staged"}
        kube.apply(obj, namespace)
        obj = wait_dc(kube, namespace, "cut", in_phase("Staged"), "Staged", operator=op)
        assert powerdns.answer("mf1._domainkey." + zone, "TXT") == [dkim.txt_value("rsa", pub)]
        assert obj["status"]["dkim"] == [
            {
                "selector": "mf1",
                "algorithm": "rsa",
                "secretName": "cut-dkim-mf1",
                "publicKeySha256": dkim.fingerprint(pub),
            }
        ]
        after = kube.get("secret", "cut-dkim-mf1", namespace)
        assert after["data"] == before["data"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    finally:
        op.stop()
