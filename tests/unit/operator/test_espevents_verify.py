"""The ESP endpoint's pure parts: event mapping per provider, the replay cache, freshness, configuration."""

from __future__ import annotations

import pytest

from mailferry_operator.espevents.config import ConfigError, parse
from mailferry_operator.espevents.sns import ses_types, string_to_sign
from mailferry_operator.espevents.verify import (
    Rejected,
    ReplayCache,
    fresh,
    mailgun_type,
    postmark_type,
    sendgrid_type,
)


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"event": "delivered"}, "delivered"),
        ({"event": "bounce", "type": "bounce"}, "bounced"),
        ({"event": "bounce", "type": "blocked"}, "deferred"),  # SendGrid's soft bounce
        ({"event": "spamreport"}, "complained"),
        ({"event": "open"}, "other"),
    ],
)
def test_sendgrid_types(event: dict[str, str], kind: str) -> None:
    assert sendgrid_type(event) == kind


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"event": "failed", "severity": "permanent"}, "bounced"),
        ({"event": "failed", "severity": "temporary"}, "deferred"),
        ({"event": "complained"}, "complained"),
        ({"event": "opened"}, "other"),
    ],
)
def test_mailgun_types(data: dict[str, str], kind: str) -> None:
    assert mailgun_type(data) == kind


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        ({"RecordType": "Delivery"}, "delivered"),
        ({"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1}, "bounced"),
        ({"RecordType": "Bounce", "Type": "SoftBounce", "TypeCode": 4096}, "deferred"),
        ({"RecordType": "SpamComplaint", "Type": "SpamComplaint"}, "complained"),
        ({"RecordType": "Open"}, "other"),
    ],
)
def test_postmark_types(record: dict[str, object], kind: str) -> None:
    assert postmark_type(record) == kind


def test_ses_counts_recipients() -> None:
    bounce = {"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{}, {}]}}
    assert ses_types(bounce) == ["bounced", "bounced"]
    assert ses_types({"notificationType": "Bounce", "bounce": {"bounceType": "Transient"}}) == ["deferred"]
    assert ses_types({"notificationType": "Complaint"}) == ["complained"]
    assert (
        ses_types({"eventType": "Delivery", "delivery": {"recipients": ["a", "b", "c"]}}) == ["delivered"] * 3
    )
    assert ses_types("not an object") == ["other"]


def test_sns_string_to_sign_per_type() -> None:
    note = {"Type": "Notification", "Message": "m", "MessageId": "i", "Timestamp": "t", "TopicArn": "a"}
    assert (
        string_to_sign(note) == b"Message\nm\nMessageId\ni\nTimestamp\nt\nTopicArn\na\nType\nNotification\n"
    )
    with_subject = string_to_sign({**note, "Subject": "s"})
    assert b"MessageId\ni\nSubject\ns\nTimestamp" in with_subject
    confirm = {**note, "Type": "SubscriptionConfirmation", "SubscribeURL": "u", "Token": "k"}
    assert b"SubscribeURL\nu\nTimestamp\nt\nToken\nk\n" in string_to_sign(confirm)
    with pytest.raises(Rejected):
        string_to_sign({"Type": "SubscriptionConfirmation", "Message": "m"})


def test_replay_cache_expires_and_is_bounded() -> None:
    cache = ReplayCache(ttl=10, limit=3)
    cache.check_and_add("a", now=0)
    with pytest.raises(Rejected) as info:
        cache.check_and_add("a", now=5)
    assert info.value.reason == "replayed"
    cache.check_and_add("a", now=11)  # expired: seen again counts as new (and is stale by then anyway)
    for key in "bcd":
        cache.check_and_add(key, now=12)
    assert len(cache) <= 3


def test_freshness() -> None:
    fresh("1000", now=1200, tolerance=300)
    with pytest.raises(Rejected) as info:
        fresh("1000", now=1400, tolerance=300)
    assert info.value.reason == "stale"
    with pytest.raises(Rejected) as info:
        fresh("soon", now=1000, tolerance=300)
    assert info.value.reason == "malformed"


def test_config_refuses_repeats_and_bad_patterns() -> None:
    one = {"provider": "generic", "domain": "example.com", "secret": "k3y-s3cret"}
    with pytest.raises(ConfigError, match=r"repeats generic/example\.com/default"):
        parse({"endpoints": [one, one]})
    with pytest.raises(ConfigError, match="certHostPattern"):
        parse({"sns": {"certHostPattern": "("}, "endpoints": []})
    endpoint = parse({"endpoints": [one]}).endpoints[("generic", "example.com", "default")]
    assert endpoint.secret == "k3y-s3cret" and "k3y-s3cret" not in repr(endpoint)
