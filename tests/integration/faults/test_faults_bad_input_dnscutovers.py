"""Semantically wrong DnsCutovers (the schema accepts every one) against the running operator
(`mailferry-operator` as a process, real API server, real PowerDNS with its REST API and RFC 2136, real
Prometheus): each ends with a condition whose type, status and reason are asserted and whose message
names the field or object to fix; none of them changes a record it should not; the operator stays up
(liveness answers), its RSS stays bounded, and good DnsCutovers created after them (PowerDNS REST and
RFC 2136 with TSIG) reach their target. The table of results is printed (`-s`) for docs/reliability.md."""

from __future__ import annotations

import base64
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fixtures._proc import free_port
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "dns"))
import demolib as d
from dnscutover_harness import FAST_ENV, condition

pytestmark = pytest.mark.timeout(600)

Obj = dict[str, Any]
RSS_GROWTH_LIMIT_MB = 150


@dataclass
class Case:
    name: str
    input: str
    cond: str  # condition type expected True: Stalled (a problem / a failed gate) or Paused (inconclusive)
    reason: str
    words: tuple[str, ...]
    body: Obj


def _secret(name: str, ns: str, data: dict[str, str], consent: bool = True) -> Obj:
    labels = {"mailferry.io/credentials": "true"} if consent else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _short_rsa_key() -> str:
    key = rsa.RSAPublicNumbers(65537, (1 << 511) | 0xF1).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture
def env_operator(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> Iterator[d.OperatorProcess]:
    env = {
        **FAST_ENV,
        "MAILFERRY_DNS_RETRIES": "2",
        # follow names through the test's PowerDNS (it answers NXDOMAIN in its zones, REFUSED elsewhere)
        "MAILFERRY_SPF_RESOLVE": "1",
        "MAILFERRY_SPF_NAMESERVERS": f"127.0.0.1:{powerdns.port}",
    }
    op = d.OperatorProcess(kube, [namespace], tmp_path, extra_env=env).start()
    try:
        yield op
    finally:
        op.stop()


def test_semantically_bad_dnscutovers(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, prometheus: Prometheus, env_operator: d.OperatorProcess
) -> None:
    ns, op = namespace, env_operator
    tag = ns[-6:]
    zone, esp = f"bi{tag}.test", f"esp{tag}.test"
    old_mx = ["10 mx.old.test."]
    powerdns.create_zone(zone + ".", [("@", "MX", 60, old_mx), ("@", "TXT", 60, ["v=spf1 -all"])])
    powerdns.create_zone(esp + ".", [("mx", "A", 60, ["192.0.2.25"])])
    tsig = powerdns.create_tsig_key(f"mf-{tag}.", "hmac-sha256")
    powerdns.allow_dnsupdate(zone, tsig)
    other_key = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    prometheus.set("mf_bad_input_ratio", 0.1, {"provider": "a"})
    prometheus.set("mf_bad_input_ratio", 0.9, {"provider": "b"})
    prometheus.wait_for("count(mf_bad_input_ratio) == 2")
    other_ns = f"{ns[:50]}-other"
    kube.kubectl("create", "namespace", other_ns)
    imap = {"host": "imap.old.example.test", "auth": {"secretRef": {"name": "imap"}}}
    imap_dst = {"host": "imap.new.example.test", "auth": {"secretRef": {"name": "imap"}}}
    mig = {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailMigration",
        "spec": {"source": imap, "destination": imap_dst, "inventoryRef": {"name": "inventory"}},
    }
    d.apply(
        kube,
        _secret("pdns", ns, {"api-key": powerdns.api_key}),
        _secret("pdns-wrong", ns, {"api-key": "not-the-key"}),
        _secret("tsig", ns, {"tsig-secret": tsig.secret}),
        _secret("tsig-other", ns, {"tsig-secret": other_key}),
        _secret("tsig-garbage", ns, {"tsig-secret": "this is not base64!"}),
        _secret("loop-dkim-creds", ns, {"api-key": powerdns.api_key}),
        _secret("imap", ns, {"x": "y"}),
        d.inventory_manifest("inventory", ns, "alice@old.example.test\n"),
        {**mig, "metadata": {"name": "mail", "namespace": ns}},
        {**mig, "metadata": {"name": "elsewhere", "namespace": other_ns}},
        verb=("create",),
    )

    pdns = {
        "type": "powerdns",
        "secretRef": {"name": "pdns"},
        "zone": zone,
        "powerdns": {"apiUrl": powerdns.api_url},
    }

    def rfc2136(**cfg: Any) -> Obj:
        base = {"server": "127.0.0.1", "port": powerdns.port, "tsigKeyName": tsig.name}
        return {
            "type": "rfc2136",
            "secretRef": {"name": cfg.pop("secret", "tsig")},
            "zone": zone,
            "rfc2136": {**base, **cfg},
        }

    def prom_gate(**cfg: Any) -> Obj:
        return {
            "ttlLowered": [
                {
                    "name": "ratio",
                    "type": "prometheus",
                    "prometheus": {
                        "address": prometheus.url,
                        "query": "mf_bad_input_ratio",
                        "thresholdRange": {"max": 0.5},
                        **cfg,
                    },
                }
            ]
        }

    def body(
        sub: str,
        target: str = "TTLLowered",
        provider: Obj | None = None,
        records: Obj | None = None,
        **spec: Any,
    ) -> Obj:
        rec = {"mx": [{"host": "mx1.dest.test", "priority": 10}], **(records or {})}
        return {
            "domain": f"{sub}.{zone}",
            "provider": provider or pdns,
            "targetPhase": target,
            "records": rec,
            **spec,
        }

    closed = free_port()
    cases = [
        # --- references: missing, other namespace, loops through shared objects
        Case(
            "ref-missing",
            "migrationRef to a MailMigration that does not exist",
            "Stalled",
            "MigrationNotFound",
            ("spec.migrationRef: MailMigration nope not found", ns),
            body("a", migrationRef={"name": "nope"}),
        ),
        Case(
            "ref-other-namespace",
            "migrationRef to a MailMigration that exists only in another namespace",
            "Stalled",
            "MigrationNotFound",
            ("MailMigration elsewhere not found in namespace", "its own namespace"),
            body("b", migrationRef={"name": "elsewhere"}),
        ),
        Case(
            "dkim-cname-loop",
            "DKIM selectors whose CNAMEs point at each other",
            "Stalled",
            "InvalidSpec",
            ("CNAME loop", "s1._domainkey"),
            body(
                "c",
                records={
                    "dkim": {
                        "selectors": [
                            {"name": "s1", "source": "cname", "cnameTarget": f"s2._domainkey.c.{zone}"},
                            {"name": "s2", "source": "cname", "cnameTarget": f"s1._domainkey.c.{zone}"},
                        ]
                    }
                },
            ),
        ),
        Case(
            "loop",
            "DKIM key Secret name (<name>-dkim-<selector>) = the provider's own Secret",
            "Stalled",
            "DkimSecretConflict",
            ("Secret loop-dkim-creds", "own provider Secret", "do not delete it"),
            body(
                "d",
                "Staged",
                {**pdns, "secretRef": {"name": "loop-dkim-creds"}},
                records={"dkim": {"selectors": [{"name": "creds"}]}},
            ),
        ),
        Case(
            "mtasts-into-inventory",
            "mtaSts.policyConfigMap = the MailMigration's inventory ConfigMap",
            "Stalled",
            "ConfigMapConflict",
            ("ConfigMap inventory (records.mtaSts.policyConfigMap)", "keys: mailboxes"),
            body(
                "e",
                "Staged",
                records={"mtaSts": {"policyConfigMap": "inventory"}},
                migrationRef={"name": "mail"},
            ),
        ),
        # --- provider: RFC 2136
        Case(
            "tsig-wrong-secret",
            "TSIG secret that is not the server's",
            "Stalled",
            "ProviderAuthFailed",
            ("did not accept TSIG key", "tsigAlgorithm and the secret"),
            body("f", provider=rfc2136(secret="tsig-other")),
        ),
        Case(
            "tsig-wrong-algorithm",
            "TSIG algorithm hmac-sha512 for an hmac-sha256 key",
            "Stalled",
            "ProviderAuthFailed",
            ("TSIG key",),
            body("g", provider=rfc2136(tsigAlgorithm="hmac-sha512")),
        ),
        Case(
            "tsig-unknown-key",
            "TSIG key name the server does not know",
            "Stalled",
            "ProviderAuthFailed",
            ("TSIG key nokey",),
            body("h", provider=rfc2136(tsigKeyName="nokey.")),
        ),
        Case(
            "tsig-not-base64",
            "TSIG secret that is not base64",
            "Stalled",
            "InvalidCredentials",
            ("is not base64",),
            body("i", provider=rfc2136(secret="tsig-garbage")),
        ),
        Case(
            "rfc2136-host-unresolvable",
            "rfc2136 server name that does not resolve",
            "Stalled",
            "ProviderUnreachable",
            ("provider.rfc2136.server 'ns.does-not-exist.invalid' does not resolve",),
            body("j", provider=rfc2136(server="ns.does-not-exist.invalid")),
        ),
        Case(
            "rfc2136-closed-port",
            "rfc2136 server port with nothing listening",
            "Stalled",
            "ProviderUnreachable",
            (f"127.0.0.1:{closed}",),
            body("k", provider=rfc2136(port=closed)),
        ),
        Case(
            "rfc2136-zone-not-served",
            "zone the rfc2136 server is not authoritative for",
            "Stalled",
            "ZoneNotFound",
            ("is not authoritative for not-here.test.",),
            {**body("l", provider={**rfc2136(), "zone": "not-here.test"}), "domain": "l.not-here.test"},
        ),
        # --- provider: PowerDNS REST
        Case(
            "powerdns-not-powerdns",
            "powerdns apiUrl pointing at another HTTP server (Prometheus)",
            "Stalled",
            "ProviderError",
            ("not a PowerDNS API answer", "provider.powerdns.apiUrl"),
            body("m", provider={**pdns, "powerdns": {"apiUrl": prometheus.url}}),
        ),
        Case(
            "powerdns-wrong-server-id",
            "powerdns serverId that does not exist",
            "Stalled",
            "ProviderError",
            ("serverId 'nope' not found", "localhost"),
            body("n", provider={**pdns, "powerdns": {"apiUrl": powerdns.api_url, "serverId": "nope"}}),
        ),
        Case(
            "powerdns-wrong-key",
            "powerdns API key that is wrong",
            "Stalled",
            "ProviderAuthFailed",
            ("HTTP 401", "check the credentials"),
            body("o", provider={**pdns, "secretRef": {"name": "pdns-wrong"}}),
        ),
        Case(
            "zone-boundary",
            "domain that only ends like the zone (x<zone>)",
            "Stalled",
            "InvalidSpec",
            (f"spec.domain x{zone} is not inside provider.zone {zone}.",),
            {**body("p"), "domain": f"x{zone}"},
        ),
        # --- records
        Case(
            "dkim-bad-key",
            "DKIM selector with a public key that is not base64",
            "Stalled",
            "InvalidDkimKey",
            ("selectors[0] (s1).publicKey is not base64",),
            body(
                "q",
                records={
                    "dkim": {"selectors": [{"name": "s1", "source": "txt", "publicKey": "MIIB not base64!"}]}
                },
            ),
        ),
        Case(
            "dkim-short-key",
            "DKIM selector with a 512-bit RSA key",
            "Stalled",
            "InvalidDkimKey",
            ("512-bit RSA key",),
            body(
                "r",
                records={
                    "dkim": {"selectors": [{"name": "s1", "source": "txt", "publicKey": _short_rsa_key()}]}
                },
            ),
        ),
        Case(
            "dmarc-rua-not-address",
            "DMARC rua that is not an address (`dmarc`)",
            "Stalled",
            "InvalidSpec",
            ("spec.records.dmarc.rua[0]", "is not a report address"),
            body("s", records={"dmarc": {"rua": ["dmarc"]}}),
        ),
        Case(
            "spf-include-and-remove",
            "one host in SPF include and removeInclude, spelled differently (exact duplicates: schema)",
            "Stalled",
            "InvalidSpec",
            ("spf.dest.test is in both include and removeInclude",),
            body("t", records={"spf": {"include": ["spf.dest.test"], "removeInclude": ["SPF.Dest.Test."]}}),
        ),
        Case(
            "mx-in-zone-no-address",
            "MX host inside the zone with no A/AAAA",
            "Stalled",
            "MxHostUnresolvable",
            (f"spec.records.mx[0].host mx.u.{zone}. has no A, AAAA or CNAME record", "would bounce"),
            body("u", "Switched", records={"mx": [{"host": f"mx.u.{zone}", "priority": 10}]}),
        ),
        Case(
            "mx-nxdomain",
            "MX host that does not exist (NXDOMAIN)",
            "Stalled",
            "MxHostUnresolvable",
            (f"mx-typo.{esp}. does not exist (NXDOMAIN)",),
            body("v", "Switched", records={"mx": [{"host": f"mx-typo.{esp}", "priority": 10}]}),
        ),
        # --- gates
        Case(
            "gate-bad-value",
            "dnsRecord gate value that is not a valid MX record",
            "Stalled",
            "InvalidGate",
            ("dnsRecord.value 'mx.new.test' is not a valid MX record",),
            body(
                "w",
                gates={
                    "ttlLowered": [
                        {
                            "name": "mx",
                            "type": "dnsRecord",
                            "dnsRecord": {"name": f"w.{zone}", "type": "MX", "value": "mx.new.test"},
                        }
                    ]
                },
            ),
        ),
        Case(
            "gate-bad-nameserver",
            "dnsRecord gate nameserver with port 99999",
            "Stalled",
            "InvalidGate",
            ("dnsRecord.nameservers[0] '127.0.0.1:99999' is not host or host:port",),
            body(
                "x",
                gates={
                    "ttlLowered": [
                        {
                            "name": "mx",
                            "type": "dnsRecord",
                            "dnsRecord": {"nameservers": ["127.0.0.1:99999"]},
                        }
                    ]
                },
            ),
        ),
        Case(
            "gate-ns-unreachable",
            "dnsRecord gate nameserver that does not answer",
            "Paused",
            "GatesInconclusive",
            ("nameservers did not answer", f"127.0.0.1:{closed}"),
            body(
                "y",
                gates={
                    "ttlLowered": [
                        {
                            "name": "ns",
                            "type": "dnsRecord",
                            "dnsRecord": {"nameservers": [f"127.0.0.1:{closed}"]},
                        }
                    ]
                },
            ),
        ),
        Case(
            "prom-unreachable",
            "prometheus gate address with nothing listening",
            "Paused",
            "GatesInconclusive",
            ("cannot reach", f"127.0.0.1:{closed}/api/v1/query"),
            body("z", gates=prom_gate(address=f"http://127.0.0.1:{closed}")),
        ),
        Case(
            "prom-garbage",
            "prometheus gate address answering HTML/text (PowerDNS webserver)",
            "Paused",
            "GatesInconclusive",
            ("not a Prometheus API answer", "prometheus.address"),
            body("aa", gates=prom_gate(address=f"http://127.0.0.1:{powerdns.webserver_port}")),
        ),
        Case(
            "prom-no-series",
            "prometheus query with no series (onNoData inconclusive)",
            "Paused",
            "GatesInconclusive",
            ("returned no data",),
            body("ab", gates=prom_gate(query="mf_bad_input_absent_metric")),
        ),
        Case(
            "prom-several-series",
            "prometheus query returning 2 series, one out of range",
            "Stalled",
            "GateFailed",
            ("2 series: ",),
            body("ac", gates=prom_gate()),
        ),
        Case(
            "prom-invalid-query",
            "prometheus query that does not parse",
            "Stalled",
            "GateFailed",
            ("Prometheus rejected prometheus.query", "bad_data"),
            body("ad", gates=prom_gate(query="sum(mf_bad_input_ratio")),
        ),
    ]
    assert len({c.name for c in cases}) == len(cases)
    time.sleep(2)
    rss_before, _ = op.memory_mb()
    d.apply(
        kube,
        *(
            {
                "apiVersion": "mailferry.io/v1alpha1",
                "kind": "DnsCutover",
                "metadata": {"name": c.name, "namespace": ns},
                "spec": c.body,
            }
            for c in cases
        ),
        verb=("create",),
    )
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}

    def settled() -> bool:
        by_name = {c.name: c for c in cases}
        for item in d.get(kube, "dnscutovers.mailferry.io", ns)["items"]:
            c = by_name.get(item["metadata"]["name"])
            if c is not None:
                results[c.name] = {**condition(item, c.cond), "type": c.cond}
                if results[c.name].get("status") != "True":  # show what it says instead
                    stalled = condition(item, "Stalled")
                    if stalled.get("status") == "True":
                        results[c.name] = {**stalled, "type": "Stalled"}
        return all(
            results.get(c.name, {}).get("status") == "True" and results[c.name].get("reason") == c.reason
            for c in cases
        )

    with contextlib.suppress(AssertionError):  # reported case by case below
        d.wait_for(settled, 240, "the expected condition on every bad DnsCutover")
    elapsed = time.monotonic() - t0
    failures = []
    print("\n| # | input | condition | reason | message |\n|---|---|---|---|---|")
    for i, c in enumerate(cases, 1):
        got = results.get(c.name, {})
        message = got.get("message", "")
        print(
            f"| {i} | {c.input} | {got.get('type', c.cond)}=True | `{got.get('reason')}` | {message[:230]} |"
        )
        if (
            got.get("status") != "True"
            or got.get("reason") != c.reason
            or not all(w in message for w in c.words)
        ):
            failures.append((c.name, got))
    print(f"\nall {len(cases)} settled {elapsed:.1f}s after creation")
    assert not failures, failures
    # A stalled cutover is retried on every gate pass: Ready stays False through the retries, never
    # Unknown while one runs. Sampled until each case was seen retried twice (a new lastError time or gate
    # evaluation), every sample Ready=False.
    names = {c.name for c in cases}
    marks: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    flaps: list[tuple[str, dict[str, Any]]] = []
    samples = 0

    def retried_twice() -> bool:
        nonlocal samples
        samples += 1
        for item in d.get(kube, "dnscutovers.mailferry.io", ns)["items"]:
            n, st = item["metadata"]["name"], item.get("status") or {}
            if n not in names:
                continue
            if condition(item, "Ready").get("status") != "False":
                flaps.append((n, condition(item, "Ready")))
            assert powerdns.api_key not in str(st) and tsig.secret not in str(st)
            gates = max((g.get("lastEvaluated") or "" for g in st.get("gates") or []), default="")
            mark = ((st.get("lastError") or {}).get("time") or "", gates)
            if not marks[n] or marks[n][-1] != mark:
                marks[n].append(mark)
        return all(len(m) >= 3 for m in marks.values())

    d.wait_for(retried_twice, 120, "every bad DnsCutover retried twice")
    print(f"Ready sampled {samples} times across >= 2 retries of each: {len(flaps)} sample(s) not False")
    assert flaps == [], flaps[:5]
    assert powerdns.answer(zone + ".", "MX") == old_mx  # nothing switched the zone's MX
    assert "Traceback" not in op.log.read_text(errors="replace")
    assert op.alive(), "the operator died"
    rss_after, hwm = op.memory_mb()
    print(f"operator RSS before {rss_before:.0f} MB, after {rss_after:.0f} MB, peak {hwm:.0f} MB")
    assert hwm - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, hwm)

    # good ones after the bad ones: PowerDNS REST and RFC 2136 with the right TSIG key
    serial = powerdns.query(zone + ".", "SOA").answer[0][0].serial
    goods = {"good-rest": body("good1"), "good-rfc2136": body("good2", provider=rfc2136())}
    d.apply(
        kube,
        *(
            {
                "apiVersion": "mailferry.io/v1alpha1",
                "kind": "DnsCutover",
                "metadata": {"name": n, "namespace": ns},
                "spec": b,
            }
            for n, b in goods.items()
        ),
    )
    for name in goods:
        obj = d.wait_for(
            lambda n=name: (
                (o := d.get(kube, "dnscutovers.mailferry.io", ns, n))
                and condition(o, "Ready").get("status") == "True"
                and o
            ),
            90,
            f"{name} Ready at TTLLowered",
        )
        print(f"{name}: phase {obj['status']['phase']}, Ready=True")
        assert obj["status"]["phase"] == "TTLLowered"
    after = powerdns.query(zone + ".", "SOA").answer[0][0].serial
    print(f"SOA serial before the good ones {serial}, after {after}")
    assert op.alive()
    kube.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)


def test_two_dnscutovers_for_one_domain_in_two_namespaces(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    """The same-namespace case is in test_faults_bad_input.py; across namespaces the operator finds the
    older one in its in-memory index of every DnsCutover it watches (no cluster-wide list)."""
    other = f"{namespace[:50]}-b"
    kube.kubectl("create", "namespace", other)
    zone = f"twins{namespace[-6:]}.test"
    powerdns.create_zone(zone + ".", [("@", "MX", 60, ["10 mx.old.test."])])
    op = d.OperatorProcess(kube, [namespace, other], tmp_path, extra_env=FAST_ENV).start()
    try:
        for ns in (namespace, other):
            d.apply(kube, _secret("pdns", ns, {"api-key": powerdns.api_key}))

        def cutover(ns: str) -> Obj:
            return {
                "apiVersion": "mailferry.io/v1alpha1",
                "kind": "DnsCutover",
                "metadata": {"name": "twin", "namespace": ns},
                "spec": {
                    "domain": zone,
                    "provider": {
                        "type": "powerdns",
                        "secretRef": {"name": "pdns"},
                        "powerdns": {"apiUrl": powerdns.api_url},
                    },
                    "targetPhase": "TTLLowered",
                    "records": {"mx": [{"host": "mx1.dest.test", "priority": 10}]},
                },
            }

        def get(ns: str) -> Obj:
            return dict(d.get(kube, "dnscutovers.mailferry.io", ns, "twin"))

        d.apply(kube, cutover(namespace))
        d.wait_for(
            lambda: condition(get(namespace), "Ready").get("status") == "True", 60, "the first one Ready"
        )
        time.sleep(1.1)  # creationTimestamp has a one-second resolution: the second one is younger
        d.apply(kube, cutover(other))
        c = d.wait_for(
            lambda: (s := condition(get(other), "Stalled")).get("reason") == "DomainConflict" and s,
            60,
            "DomainConflict on the DnsCutover in the other namespace",
        )
        print(f"{other}/twin: Stalled=True reason={c['reason']} message={c['message']!r}")
        assert c["status"] == "True" and f"DnsCutover {namespace}/twin (another namespace)" in c["message"]
        assert condition(get(namespace), "Ready").get("status") == "True"  # the older one is unaffected
        kube.kubectl("delete", "dnscutover", "twin", "-n", namespace, "--wait=true", "--timeout=60s")
        d.wait_for(
            lambda: condition(get(other), "Ready").get("status") == "True",
            60,
            "the other one proceeds once the first is deleted",
        )
        print(f"{other}/twin: Ready once {namespace}/twin was deleted")
        assert op.alive()
    finally:
        op.stop()
        kube.kubectl("delete", "namespace", other, "--wait=false", check=False)
