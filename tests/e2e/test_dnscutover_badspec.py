"""Bad DnsCutover specs: what the CRD schema rejects at apply time, and what the operator reports
as a condition with a reason and an actionable message (never a crash)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures._proc import CommandFailed, wait_until
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import (
    Operator,
    condition,
    condition_true,
    cutover_manifest,
    pdns_secret,
    powerdns_provider,
    wait_dc,
)


def _now_rfc3339() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def good(
    name: str, domain: str, api_url: str, secret: str = "dns-creds", zone: str | None = None
) -> dict[str, Any]:
    provider = powerdns_provider(api_url, secret)
    if zone:
        provider["zone"] = zone
    return cutover_manifest(
        name, domain, provider, "TTLLowered", {"mx": [{"host": "mx1.dest.test", "priority": 10}]}
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["provider"].update(type="bind9"), 'Unsupported value: "bind9"'),
        (lambda s: s["records"].update(mx=[]), "spec.records.mx"),
        (lambda s: s["records"].update(mx=[{"priority": 10}]), 'omits all key fields ["host"]'),
        (
            lambda s: s["records"].update(dmarc={"stages": [{"policy": "reject"}, {"policy": "quarantine"}]}),
            "DMARC stages must not weaken",
        ),
        (lambda s: s["provider"].pop("powerdns"), "provider.powerdns is required when type is powerdns"),
        (lambda s: s.update(targetPhase="Done"), "spec.targetPhase"),
        (
            lambda s: s["records"].update(dkim={"selectors": [{"name": "x", "source": "cname"}]}),
            "cnameTarget is required",
        ),
    ],
    ids=[
        "unknown-provider",
        "mx-without-hosts",
        "mx-host-missing",
        "dmarc-reversed",
        "provider-config-missing",
        "unknown-phase",
        "dkim-cname-without-target",
    ],
)
def test_schema_rejects(kube: KubeAPI, namespace: str, mutate: Any, message: str) -> None:
    obj = copy.deepcopy(good("bad", "bad.test", "http://127.0.0.1:1"))
    mutate(obj["spec"])
    with pytest.raises(CommandFailed) as info:
        kube.apply(obj, namespace)
    assert message in info.value.stderr


def test_problems_the_schema_cannot_see_become_conditions(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    powerdns.create_zone(
        "badspec.test.",
        [
            ("@", "MX", 60, ["10 mx.old.test."]),
            ("@", "TXT", 60, ["v=spf1 include:a.old.test ~all"]),
            ("spf1", "TXT", 60, ["v=spf1 include:a.old.test ~all"]),
            ("spf2", "TXT", 60, ["v=spf1 include:a.old.test ~all"]),
        ],
    )
    # a destination whose SPF include has 9 includes of its own: 1 + 1 + 9 = 11 lookups, followed via DNS
    powerdns.create_zone(
        "big-esp.test.",
        [("spf", "TXT", 60, "v=spf1 " + " ".join(f"include:s{i}.big-esp.test" for i in range(9)) + " ~all")]
        + [(f"s{i}", "TXT", 60, f"v=spf1 ip4:192.0.2.{i} -all") for i in range(9)],
    )
    pdns_secret(kube, namespace, "dns-creds", {"api-key": powerdns.api_key})
    pdns_secret(kube, namespace, "wrong-key", {"token": "x"})
    api = powerdns.api_url
    specs = {
        # one domain per DnsCutover (several in one zone): two for one domain conflict, see "dup-*"
        "missing-secret": good("missing-secret", "badspec.test", api, secret="nope"),
        "missing-key": good("missing-key", "mk.badspec.test", api, secret="wrong-key", zone="badspec.test"),
        "unknown-zone": good("unknown-zone", "not-served.test", api),
        "unreachable": good(
            "unreachable", "un.badspec.test", "http://127.0.0.1:9/api/v1", zone="badspec.test"
        ),
        "spf-too-long": good("spf-too-long", "spf1.badspec.test", api, zone="badspec.test"),
        "ed25519-alone": good("ed25519-alone", "ed.badspec.test", api, zone="badspec.test"),
        "spf-nested": good("spf-nested", "spf2.badspec.test", api, zone="badspec.test"),
        "dup-first": good("dup-first", "dup.badspec.test", api, zone="badspec.test"),
        "at-target": good("at-target", "p.badspec.test", api, secret="nope2", zone="badspec.test"),
    }
    specs["at-target"]["spec"]["targetPhase"] = "Planned"  # a problem is reported even with nothing to do
    specs["spf-nested"]["spec"]["targetPhase"] = "Staged"
    specs["spf-nested"]["spec"]["records"]["spf"] = {"include": ["spf.big-esp.test"]}
    specs["spf-too-long"]["spec"]["targetPhase"] = "Staged"
    specs["spf-too-long"]["spec"]["records"]["spf"] = {"include": [f"i{i}.dest.test" for i in range(10)]}
    specs["ed25519-alone"]["spec"]["records"]["dkim"] = {
        "selectors": [{"name": "e1", "algorithm": "ed25519"}]
    }
    for obj in specs.values():
        kube.apply(obj, namespace)
    wait_until(
        lambda: (
            kube.get("dnscutover", "dup-first", namespace)["metadata"]["creationTimestamp"] < _now_rfc3339()
        ),
        timeout=5,
        what="a later creationTimestamp for the second one",
    )
    specs["dup-second"] = good("dup-second", "dup.badspec.test", api, zone="badspec.test")
    kube.apply(specs["dup-second"], namespace)
    env = {
        "MAILFERRY_DNS_RETRIES": "2",
        "MAILFERRY_SPF_RESOLVE": "1",
        "MAILFERRY_SPF_NAMESERVERS": f"127.0.0.1:{powerdns.port}",
    }
    op = Operator(kube, namespace, tmp_path, env=env).start()
    expect = {
        "missing-secret": ("SecretNotFound", "Secret nope (provider.secretRef) not found"),
        "missing-key": ("SecretKeyMissing", "has no key 'api-key'"),
        "unknown-zone": ("ZoneNotFound", "zone not-served.test. not found"),
        "unreachable": ("ProviderUnreachable", "powerdns: GET zone"),
        "spf-too-long": ("SpfLimitExceeded", "SPF needs 11 DNS lookups; RFC 7208 allows 10"),
        "ed25519-alone": ("InvalidSpec", "needs an rsa selector"),
        "spf-nested": ("SpfLimitExceeded", "SPF needs 11 DNS lookups"),
        "at-target": ("SecretNotFound", "Secret nope2 (provider.secretRef) not found"),
        "dup-second": (
            "DomainConflict",
            "DnsCutover dup-first in this namespace already manages dup.badspec.test",
        ),
    }
    try:
        for name, (reason, text) in expect.items():
            obj = wait_dc(
                kube,
                namespace,
                name,
                lambda o, r=reason: condition(o, "Stalled").get("reason") == r,
                f"{name}: Stalled {reason}",
                operator=op,
            )
            st = condition(obj, "Stalled")
            assert st["status"] == "True" and text in st["message"], st
            assert condition(obj, "Ready")["status"] == "False"
            assert obj["status"]["lastError"]["reason"] == reason
            assert powerdns.api_key not in str(obj["status"])
        # nothing was written for any of them
        assert powerdns.query("badspec.test.", "MX").answer[0].ttl == 60
        # fixing the spec clears the condition: create the missing Secret
        pdns_secret(kube, namespace, "nope", {"api-key": powerdns.api_key})
        ready = condition_true("Ready")
        obj = wait_dc(kube, namespace, "missing-secret", ready, "missing-secret recovers", operator=op)
        assert condition(obj, "Stalled")["status"] == "False" and obj["status"]["phase"] == "TTLLowered"
        assert op.proc is not None and op.proc.running()
        # the older of two DnsCutovers for one domain is not affected by the younger one
        first = wait_dc(kube, namespace, "dup-first", ready, "dup-first Ready", operator=op)
        assert condition(first, "Stalled")["status"] == "False"
        assert "Traceback" not in op.log_text()
    finally:
        op.stop()
