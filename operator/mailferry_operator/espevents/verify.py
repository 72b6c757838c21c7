"""Signature checks and event mapping for SendGrid, Mailgun, Postmark and the generic shape (SNS: sns.py).

Each `verify_*` takes the endpoint, the raw request and the replay cache, and returns the event types
in the payload, or raises `Rejected(reason)`. The schemes, as the providers document them:
- SendGrid (Signed Event Webhook): ECDSA P-256/SHA-256 over `timestamp + raw body`; headers
  X-Twilio-Email-Event-Webhook-Signature (base64 DER) and -Timestamp; the public key is base64 DER
  SubjectPublicKeyInfo. The body is a JSON array of events.
- Mailgun: in the body, `signature: {timestamp, token, signature}`; signature = hex HMAC-SHA256 of
  `timestamp + token` under the webhook signing key. The token is single-use (replay cache).
- Postmark signs nothing: HTTP basic auth in the webhook URL, or a custom header with a shared secret.
  A replay is told apart from nothing but its body, so identical bodies count once.
- generic: header X-Mailferry-Signature `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
  (the Stripe shape), body `{"events": [{"type": "delivered|bounced|complained|deferred"}, ...]}`.
Secrets are compared in constant time and never put into a message, log line or metric.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .config import Endpoint

EventType = Literal["delivered", "bounced", "complained", "deferred", "other"]
EVENT_TYPES: tuple[EventType, ...] = ("delivered", "bounced", "complained", "deferred", "other")
REASONS = (
    "unknown_endpoint",
    "oversized",
    "unsigned",
    "bad_signature",
    "stale",
    "replayed",
    "malformed",
    "cert_not_allowed",
    "cert_invalid",
    "topic_not_allowed",
    "subscribe_failed",
)
MAX_EVENTS_PER_REQUEST = 10_000


class Rejected(Exception):
    """A request refused, with the reason counted in mailferry_esp_rejected_total."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Inbound:
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes
    now: float


class ReplayCache:
    """Keys seen within `ttl` seconds; at most `limit` (the oldest go first). A key is kept at least as
    long as its timestamp would pass the freshness check, so a replay is either stale or seen."""

    def __init__(self, ttl: float, limit: int = 200_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def check_and_add(self, key: str | bytes, now: float) -> None:
        digest = hashlib.blake2b(key.encode() if isinstance(key, str) else key, digest_size=16).digest()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > now - self.ttl and len(self._seen) < self.limit:
                break
            del self._seen[oldest]
        if digest in self._seen:
            raise Rejected("replayed", 409)
        self._seen[digest] = now

    def __len__(self) -> int:
        return len(self._seen)


def fresh(timestamp: Any, now: float, tolerance: float) -> None:
    try:
        ts = float(timestamp)
    except (TypeError, ValueError):
        raise Rejected("malformed", 400) from None
    if abs(now - ts) > tolerance:
        raise Rejected("stale")


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Rejected("malformed", 400) from None


def _limited(items: Iterable[EventType]) -> list[EventType]:
    out = list(items)
    if len(out) > MAX_EVENTS_PER_REQUEST:
        raise Rejected("oversized", 413)
    return out


# ----------------------------------------------------------------------------------------- SendGrid
_SENDGRID = {"delivered": "delivered", "spamreport": "complained", "deferred": "deferred"}
_ec_keys: dict[str, ec.EllipticCurvePublicKey] = {}


def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    key = _ec_keys.get(text)
    if key is None:
        der = base64.b64decode("".join(line for line in text.splitlines() if "-----" not in line))
        loaded = serialization.load_der_public_key(der)
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise ValueError("the SendGrid verification key is not an EC key")
        key = _ec_keys[text] = loaded
    return key


def sendgrid_type(event: Mapping[str, Any]) -> EventType:
    name = event.get("event")
    if name == "bounce":  # type "blocked" is SendGrid's soft bounce
        return "deferred" if event.get("type") == "blocked" else "bounced"
    return _SENDGRID.get(str(name), "other")  # type: ignore[return-value]


def verify_sendgrid(ep: Endpoint, req: Inbound, replay: ReplayCache, tolerance: float) -> list[EventType]:
    signature = req.headers.get("X-Twilio-Email-Event-Webhook-Signature")
    timestamp = req.headers.get("X-Twilio-Email-Event-Webhook-Timestamp")
    if not signature or not timestamp:
        raise Rejected("unsigned")
    fresh(timestamp, req.now, tolerance)
    try:
        der = base64.b64decode(signature, validate=True)
        _sendgrid_key(ep.public_key).verify(der, timestamp.encode() + req.body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected("bad_signature") from None
    replay.check_and_add(b"sg" + der, req.now)
    events = json_body(req.body)
    if not isinstance(events, list):
        raise Rejected("malformed", 400)
    return _limited(sendgrid_type(e) if isinstance(e, dict) else "other" for e in events)


# ------------------------------------------------------------------------------------------ Mailgun
def mailgun_type(data: Mapping[str, Any]) -> EventType:
    name = data.get("event")
    if name == "delivered":
        return "delivered"
    if name == "complained":
        return "complained"
    if name == "failed":
        return "bounced" if data.get("severity") == "permanent" else "deferred"
    return "other"


def verify_mailgun(ep: Endpoint, req: Inbound, replay: ReplayCache, tolerance: float) -> list[EventType]:
    payload = json_body(req.body)
    sig = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(sig, dict) or not all(
        isinstance(sig.get(k), str | int) for k in ("timestamp", "token")
    ):
        raise Rejected("unsigned")
    timestamp, token, given = str(sig["timestamp"]), str(sig["token"]), str(sig.get("signature") or "")
    expected = hmac.new(ep.signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Rejected("bad_signature")
    fresh(timestamp, req.now, tolerance)
    replay.check_and_add("mg" + token, req.now)
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise Rejected("malformed", 400)
    return [mailgun_type(data)]


# ----------------------------------------------------------------------------------------- Postmark
def postmark_type(record: Mapping[str, Any]) -> EventType:
    kind = record.get("RecordType")
    if kind == "Delivery":
        return "delivered"
    if kind == "SpamComplaint" or record.get("Type") == "SpamComplaint":
        return "complained"
    if kind == "Bounce":
        if record.get("Type") in ("HardBounce", "BadEmailAddress") or record.get("TypeCode") == 1:
            return "bounced"
        return "deferred" if record.get("Type") in ("SoftBounce", "Transient", "DnsError") else "other"
    return "other"


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def verify_postmark(ep: Endpoint, req: Inbound, replay: ReplayCache, tolerance: float) -> list[EventType]:
    if ep.username:
        given = _basic(req.headers.get("Authorization") or "")
        if given is None:
            raise Rejected("unsigned")
        ok = hmac.compare_digest(given[0].encode(), ep.username.encode())
        ok &= hmac.compare_digest(given[1].encode(), ep.password.encode())
    else:
        value = req.headers.get(ep.header)
        if value is None:
            raise Rejected("unsigned")
        ok = hmac.compare_digest(value.encode(), ep.secret.encode())
    if not ok:
        raise Rejected("bad_signature")
    record = json_body(req.body)
    if not isinstance(record, dict):
        raise Rejected("malformed", 400)
    replay.check_and_add(b"pm" + req.body, req.now)
    return [postmark_type(record)]


# ------------------------------------------------------------------------------------------ generic
GENERIC_HEADER = "X-Mailferry-Signature"


def generic_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value for `body` (senders and tests use this too)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_generic(ep: Endpoint, req: Inbound, replay: ReplayCache, tolerance: float) -> list[EventType]:
    header = req.headers.get(GENERIC_HEADER)
    if not header:
        raise Rejected("unsigned")
    parts = dict(p.strip().partition("=")[::2] for p in header.split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp or not given:
        raise Rejected("unsigned")
    expected = generic_signature(ep.secret, timestamp, req.body).rpartition("v1=")[2]
    if not hmac.compare_digest(expected, given.lower()):
        raise Rejected("bad_signature")
    fresh(timestamp, req.now, tolerance)
    replay.check_and_add("gn" + given, req.now)
    payload = json_body(req.body)
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise Rejected("malformed", 400)
    kinds = set(EVENT_TYPES)
    return _limited(e["type"] if isinstance(e, dict) and e.get("type") in kinds else "other" for e in events)
