"""DnsCutover checks beyond the schema (dns/spec_checks.py), the RFC 2136 provider's refusal of unusable
TSIG settings, and the prometheus gate on rejected queries / several series (all pure)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import ValidationError

from mailferry_api.dnscutover import DnsCutoverSpec, Gate
from mailferry_operator.dns import spec_checks as sc
from mailferry_operator.dns.providers.base import ProviderError
from mailferry_operator.dns.providers.rfc2136 import Rfc2136Provider
from mailferry_operator.gates import evaluate as ev


def _spec(**records: Any) -> DnsCutoverSpec:
    body: dict[str, Any] = {
        "domain": "example.test",
        "provider": {"type": "powerdns", "secretRef": {"name": "p"}, "powerdns": {"apiUrl": "http://x:8081"}},
        "records": {"mx": [{"host": "mx.new.test", "priority": 10}], **records},
    }
    return DnsCutoverSpec.model_validate(body)


def _rsa_pub(bits: int) -> str:
    if bits < 1024:  # cryptography will not generate one; the public numbers are enough here
        key = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 0xF1).public_key()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def test_zone_must_contain_the_domain_on_a_label_boundary() -> None:
    spec = _spec()
    spec.provider.zone = "ample.test"  # "example.test".endswith("ample.test") but not a parent zone
    found = sc.spec_problem(spec)
    assert (
        found is not None and "spec.domain example.test is not inside provider.zone ample.test." in found[1]
    )
    spec.provider.zone = "example.test"
    assert sc.spec_problem(spec) is None


def test_public_suffixes_are_refused_as_domain_and_as_zone() -> None:
    """co.uk, github.io and bare TLDs are shared by many registrants: never a DnsCutover's to switch."""
    for domain in ("co.uk", "github.io", "com"):
        spec = _spec()
        spec.domain, spec.provider.zone = domain, None
        found = sc.spec_problem(spec)
        assert found is not None and found[0] == "PublicSuffix" and f"spec.domain {domain} " in found[1]
    spec = _spec()
    spec.provider.zone = "test"  # the parent of example.test, but a top-level label
    found = sc.spec_problem(spec)
    assert found is not None and found[0] == "PublicSuffix" and "spec.provider.zone test " in found[1]
    spec.domain, spec.provider.zone = "example.co.uk", None
    assert sc.zone_problem(spec) is None


def test_dkim_public_keys() -> None:
    good = _rsa_pub(2048)
    ed = base64.b64encode(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    ok = [
        {"name": "s1", "source": "txt", "publicKey": good},
        {"name": "s2", "source": "txt", "publicKey": f"v=DKIM1; k=rsa; p={good}"},
        {"name": "s3", "source": "txt", "algorithm": "ed25519", "publicKey": ed},
    ]
    assert sc.spec_problem(_spec(dkim={"selectors": ok})) is None
    for key, words in [
        ("not base64!!", "is not base64"),
        (base64.b64encode(b"hello world").decode(), "is not an RSA public key"),
        (_rsa_pub(512), "512-bit RSA key"),
        ("v=DKIM1; k=rsa; p=", "p= is empty"),
    ]:
        found = sc.spec_problem(
            _spec(dkim={"selectors": [{"name": "s1", "source": "txt", "publicKey": key}]})
        )
        assert found is not None and found[0] == "InvalidDkimKey", (key, found)
        assert "spec.records.dkim.selectors[0] (s1).publicKey" in found[1] and words in found[1]


def test_dkim_cname_loop() -> None:
    sels = [
        {"name": "a", "source": "cname", "cnameTarget": "b._domainkey.example.test"},
        {"name": "b", "source": "cname", "cnameTarget": "a._domainkey.example.test."},
    ]
    found = sc.spec_problem(_spec(dkim={"selectors": sels}))
    assert found is not None and "CNAME loop" in found[1] and "a._domainkey.example.test." in found[1]
    self_loop = [{"name": "a", "source": "cname", "cnameTarget": "a._domainkey.example.test"}]
    assert sc.spec_problem(_spec(dkim={"selectors": self_loop})) is not None
    fine = [{"name": "a", "source": "cname", "cnameTarget": "a._domainkey.esp.test"}]
    assert sc.spec_problem(_spec(dkim={"selectors": fine})) is None


def test_spf_include_and_remove_and_report_addresses() -> None:
    found = sc.spec_problem(_spec(spf={"include": ["spf.new.test"], "removeInclude": ["SPF.new.test."]}))
    assert found is not None and "spf.new.test is in both include and removeInclude" in found[1]
    for rua in (["dmarc"], ["https://reports.test/x"], ["mailto:dmarc"]):
        found = sc.spec_problem(_spec(dmarc={"rua": rua}))
        assert found is not None and "spec.records.dmarc.rua[0]" in found[1], rua
    for rua in (["a@b.test; p=none"], ["mailto:a@b.test,mailto:c@d.test"]):  # the schema refuses these
        with pytest.raises(ValidationError):
            _spec(dmarc={"rua": rua})
    assert sc.spec_problem(_spec(dmarc={"rua": ["dmarc@r.test", "mailto:x@r.test!10m"]})) is None
    found = sc.spec_problem(_spec(tlsRpt={"rua": ["ftp://x.test"]}))
    assert found is not None and "spec.records.tlsRpt.rua[0]" in found[1]
    assert sc.spec_problem(_spec(tlsRpt={"rua": ["https://r.test/tls", "t@r.test"]})) is None


def test_dns_record_gate_fields() -> None:
    def with_gate(dns_record: dict[str, Any]) -> DnsCutoverSpec:
        spec = _spec()
        spec.gates.switched = [
            Gate.model_validate({"name": "g", "type": "dnsRecord", "dnsRecord": dns_record})
        ]
        return spec

    found = sc.spec_problem(with_gate({"nameservers": ["127.0.0.1:99999"]}))
    assert found is not None and found[0] == "InvalidGate"
    assert "spec.gates.switched[0] (g).dnsRecord.nameservers[0]" in found[1]
    found = sc.spec_problem(with_gate({"name": "example.test", "type": "MX", "value": "mx.new.test"}))
    assert found is not None and "dnsRecord.value 'mx.new.test' is not a valid MX record" in found[1]
    assert (
        sc.spec_problem(
            with_gate(
                {
                    "name": "example.test",
                    "type": "MX",
                    "value": "10 mx.new.test.",
                    "nameservers": ["[::1]:53"],
                }
            )
        )
        is None
    )


@pytest.mark.parametrize(
    ("name", "secret", "reason"),
    [
        ("key..name", base64.b64encode(b"x" * 32).decode(), "InvalidSpec"),
        ("k1", "not base64 ***", "InvalidCredentials"),
    ],
)
def test_rfc2136_unusable_tsig_settings_are_provider_errors(name: str, secret: str, reason: str) -> None:
    with pytest.raises(ProviderError) as info:
        Rfc2136Provider("127.0.0.1", 53, "example.test", name, secret)
    assert info.value.reason == reason
    assert secret not in info.value.message


def _prom_gate() -> Gate:
    return Gate.model_validate(
        {
            "name": "bounces",
            "type": "prometheus",
            "prometheus": {"address": "http://p:9090", "query": "x", "thresholdRange": {"max": 0.02}},
        }
    )


def test_prometheus_rejected_query_fails_and_several_series_are_named() -> None:
    gate, now = _prom_gate(), datetime.now(UTC)
    st = ev.prometheus(
        gate,
        ev.fresh(gate, "Switched"),
        ev.PromObservation(error="HTTP 400 bad_data: parse error", invalid=True),
        now,
    )
    assert st.result == "Failed" and "Prometheus rejected prometheus.query" in st.message
    st = ev.prometheus(gate, ev.fresh(gate, "Switched"), ev.PromObservation(values=[0.01, 0.5, 0.0]), now)
    assert st.result == "Failed" and "3 series: 0.01,0.5,0" in st.message
    st = ev.prometheus(gate, ev.fresh(gate, "Switched"), ev.PromObservation(error="cannot reach x"), now)
    assert st.result == "Inconclusive"
