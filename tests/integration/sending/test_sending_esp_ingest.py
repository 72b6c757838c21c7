"""The ESP event endpoint (`mailferry-esp-events`, a real subprocess) with a real Prometheus scraping it.

Per provider: webhooks signed with test keys in the provider's documented scheme are accepted and
counted by type; unsigned, tampered, replayed, stale and oversized ones are refused with the reason
counted. SES via SNS: the signing certificate comes from a loopback HTTPS server with a test CA; a
SigningCertURL on a host outside the allowlist is never fetched. No key or payload reaches the log.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.esp import PROVIDERS, TOPIC, EspEndpoint, EspKeys
from fixtures.prometheus import Prometheus


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EspKeys]:
    k = EspKeys(tmp_path_factory.mktemp("esp-keys"))
    yield k
    k.close()


@pytest.fixture(scope="module")
def endpoint(keys: EspKeys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EspEndpoint]:
    ep = EspEndpoint(keys, tmp_path_factory.mktemp("esp")).start()
    yield ep
    ep.stop()


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, endpoint: EspEndpoint) -> Iterator[Prometheus]:
    p = Prometheus(tmp_path_factory.mktemp("esp-prometheus"), "esp").start()
    p.add_target(endpoint.metrics_target, job="esp")
    yield p
    p.close()


def tampered(body: bytes) -> bytes:
    """The same JSON with one value changed (a delivered event turned into something else)."""
    text = body.decode()
    for old, new in (("delivered", "deferred"), ("Delivery", "Open"), ("user@example.net", "user@evil.net")):
        if old in text:
            return text.replace(old, new, 1).encode()
    raise AssertionError("nothing to tamper with")


def strip_signature(provider: str, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    if provider == "mailgun":
        payload = json.loads(body)
        del payload["signature"]
        return headers, json.dumps(payload).encode()
    if provider == "ses":
        payload = json.loads(body)
        del payload["Signature"]
        return headers, json.dumps(payload).encode()
    drop = {
        "sendgrid": "X-Twilio-Email-Event-Webhook-Signature",
        "postmark": "Authorization",
        "generic": "X-Mailferry-Signature",
    }[provider]
    return {k: v for k, v in headers.items() if k != drop}, body


def rejected(prom: Prometheus, provider: str, reason: str, at_least: float) -> float | None:
    return prom.wait_for(
        f'sum(mailferry_esp_rejected_total{{provider="{provider}",reason="{reason}"}})',
        lambda v: v is not None and v >= at_least,
        timeout=30,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_events_counted_and_bad_ones_refused(
    provider: str, endpoint: EspEndpoint, keys: EspKeys, prom: Prometheus
) -> None:
    kinds = ["delivered"] * 5 + ["bounced", "complained", "deferred"]
    endpoint.send(provider, kinds)
    base = f'mailferry_esp_events_total{{provider="{provider}",domain="example.com",stream="transactional"'
    assert prom.wait_for(f'sum({base},type="delivered"}})', lambda v: v == 5, timeout=30) == 5
    for kind in ("bounced", "complained", "deferred"):
        assert prom.wait_for(f'sum({base},type="{kind}"}})', lambda v: v is not None, timeout=30) == 1, kind

    headers, body = keys.sign(provider, ["delivered"])
    assert endpoint.post(provider, *strip_signature(provider, headers, body)).status_code == 401
    if provider == "mailgun":
        # Mailgun signs timestamp + token only, not the event: a changed copy of a delivered request is
        # caught by its single-use token (TLS keeps anyone from changing it before it arrives)
        assert endpoint.post(provider, headers, body).status_code == 200
        assert endpoint.post(provider, headers, tampered(body)).status_code == 409
    elif provider == "postmark":
        # Postmark signs nothing: what it has is the credentials in the webhook URL
        wrong = {**headers, "Authorization": "Basic " + base64.b64encode(b"postmark:guess").decode()}
        assert endpoint.post(provider, wrong, body).status_code == 401
        assert endpoint.post(provider, headers, body).status_code == 200
    else:
        assert endpoint.post(provider, headers, tampered(body)).status_code == 401
        assert endpoint.post(provider, headers, body).status_code == 200
    assert endpoint.post(provider, headers, body).status_code == 409  # the same request again: a replay
    big_headers, big_body = keys.sign(provider, ["delivered"])
    padded = (
        big_body[:-1] + b', "pad": "' + b"x" * 70_000 + b'"}'
        if big_body.endswith(b"}")
        else big_body + b" " * 70_000
    )
    assert endpoint.post(provider, big_headers, padded).status_code == 413
    if provider != "postmark":  # Postmark's requests carry no time
        old_headers, old_body = keys.sign(provider, ["delivered"], now=time.time() - 3600)
        assert endpoint.post(provider, old_headers, old_body).status_code == 401

    assert rejected(prom, provider, "unsigned", 1)
    assert rejected(prom, provider, "replayed", 1)
    assert rejected(prom, provider, "oversized", 1)
    assert rejected(prom, provider, "replayed" if provider == "mailgun" else "bad_signature", 1)
    if provider != "postmark":
        assert rejected(prom, provider, "stale", 1)
    # the replayed and tampered requests counted nothing: 5 + the one good re-send
    assert prom.wait_for(f'sum({base},type="delivered"}})', lambda v: v == 6, timeout=30) == 6


def sns_message(keys: EspKeys, **changes: Any) -> dict[str, Any]:
    message = json.loads(keys.sign("ses", ["delivered"])[1])
    message.pop("Signature")
    message.update(changes)
    return message


def test_sns_certificate_rules(endpoint: EspEndpoint, keys: EspKeys, prom: Prometheus) -> None:
    hits = len(keys.certs.hits)
    # a certificate on a host outside the allowlist is never fetched
    foreign = sns_message(keys, SigningCertURL="https://127.0.0.1:1/cert.pem")
    assert endpoint.post("ses", {}, keys.sns_sign(foreign)).status_code == 401
    plain = sns_message(keys, SigningCertURL=keys.cert_url.replace("https://", "http://"))
    assert endpoint.post("ses", {}, keys.sns_sign(plain)).status_code == 401
    assert len(keys.certs.hits) == hits
    # served from the allowed host but not naming sns.amazonaws.com
    rogue = sns_message(keys, SigningCertURL=keys.certs.url("/rogue.pem"))
    assert endpoint.post("ses", {}, keys.sns_sign(rogue, keys.rogue_key)).status_code == 502
    # signed by another key than the certificate's
    assert endpoint.post("ses", {}, keys.sns_sign(sns_message(keys), keys.rogue_key)).status_code == 401
    # a good signature for a topic nobody configured
    other = sns_message(keys, TopicArn=TOPIC.replace("ses-events", "other"))
    assert endpoint.post("ses", {}, keys.sns_sign(other)).status_code == 403
    # SignatureVersion 1 (SHA1) still verifies
    assert endpoint.post("ses", {}, keys.sns_sign(sns_message(keys, SignatureVersion="1"))).status_code == 200
    # a subscription confirmation is confirmed by fetching its SubscribeURL
    confirm = sns_message(
        keys, Type="SubscriptionConfirmation", Token="t0k", SubscribeURL=keys.certs.url("/confirm")
    )
    assert endpoint.post("ses", {}, keys.sns_sign(confirm)).status_code == 200
    assert "/confirm" in keys.certs.hits
    for reason in ("cert_not_allowed", "cert_invalid", "bad_signature", "topic_not_allowed"):
        assert rejected(prom, "ses", reason, 1), reason


def test_unknown_paths_make_no_series(endpoint: EspEndpoint, keys: EspKeys, prom: Prometheus) -> None:
    headers, body = keys.sign("generic", ["delivered"])
    for path in ("/events/generic/evil.example/transactional", "/events/nope/example.com/transactional"):
        assert endpoint.post("generic", headers, body, path=path).status_code == 404
    prom.wait_for(
        'sum(mailferry_esp_rejected_total{reason="unknown_endpoint"})', lambda v: v is not None and v >= 2
    )
    assert not prom.query('mailferry_esp_rejected_total{domain="evil.example"}')
    assert not prom.query('mailferry_esp_rejected_total{provider="nope"}')


def test_no_secret_or_payload_in_the_log(endpoint: EspEndpoint, keys: EspKeys) -> None:
    endpoint.send("mailgun", ["delivered"])
    headers, body = keys.sign("postmark", ["delivered"])
    endpoint.post(
        "postmark", {**headers, "Authorization": "Basic " + base64.b64encode(b"x:y").decode()}, body
    )
    text = endpoint.log_text()
    assert "rejected a postmark webhook: bad_signature" in text  # the log is on (debug) and shows reasons
    for secret in keys.secret_values():
        assert secret not in text
    for payload_bit in ("user@example.net", "event-data", "RecordType", "Signature"):
        assert payload_bit not in text


def test_config_errors_name_the_entry_not_the_key(tmp_path: Path) -> None:
    from mailferry_operator.espevents.config import ConfigError, parse

    with pytest.raises(ConfigError, match=r"endpoints\[0\] \(mailgun\) needs signingKey"):
        parse({"endpoints": [{"provider": "mailgun", "domain": "example.com"}]})
    with pytest.raises(ConfigError) as info:
        parse({"endpoints": [{"provider": "postmark", "domain": "example.com", "username": "u"}]})
    assert "needs username+password" in str(info.value)
