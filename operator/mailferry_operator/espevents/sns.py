"""Amazon SES events through Amazon SNS: message signature, signing certificate, subscription.

As AWS documents it: build the string to sign from the message's fields (Notification: Message,
MessageId, Subject if present, Timestamp, TopicArn, Type; (Un)SubscriptionConfirmation: Message,
MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type), each as "name\\nvalue\\n"; the Signature
(base64) is RSA PKCS#1 v1.5 with SHA1 (SignatureVersion 1) or SHA256 (2) by the key of the certificate
at SigningCertURL. That URL is fetched only over HTTPS (TLS verified) and only from a host matching
sns.certHostPattern (by default sns.<region>.amazonaws.com), else a forged message could bring its own
certificate. The certificate must be valid now and name sns.certSubject. Certificates are cached by URL.
A SubscriptionConfirmation with a good signature for an allowed topic is confirmed by GETting its
SubscribeURL (same host rule).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .config import Endpoint, SnsSettings
from .verify import EventType, Inbound, Rejected, ReplayCache, json_body

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
MAX_CERTS = 32


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    fields = NOTIFICATION_FIELDS if message.get("Type") == "Notification" else CONFIRMATION_FIELDS
    out = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise Rejected("malformed", 400)
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def ses_types(notification: Any) -> list[EventType]:
    """SES event publishing (eventType) or feedback notifications (notificationType): one per recipient."""
    if not isinstance(notification, dict):
        return ["other"]
    kind = notification.get("eventType") or notification.get("notificationType")
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        t: EventType = "bounced" if bounce.get("bounceType") == "Permanent" else "deferred"
        return [t] * max(1, len(bounce.get("bouncedRecipients") or ()))
    if kind == "Complaint":
        return ["complained"] * max(
            1, len((notification.get("complaint") or {}).get("complainedRecipients") or ())
        )
    if kind == "Delivery":
        return ["delivered"] * max(1, len((notification.get("delivery") or {}).get("recipients") or ()))
    if kind == "DeliveryDelay":
        return ["deferred"]
    return ["other"]


class SnsVerifier:
    def __init__(self, settings: SnsSettings, timeout: float = 10.0) -> None:
        self.settings = settings
        self._hosts = re.compile(settings.cert_host_pattern)
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        self._http = httpx.AsyncClient(verify=context, timeout=timeout, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    def allowed(self, url: Any) -> bool:
        if not isinstance(url, str):
            return False
        parts = urlsplit(url)
        return parts.scheme == "https" and bool(self._hosts.match(parts.hostname or ""))

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        key = self._certs.get(url)
        if key is not None:
            return key
        content = await self._fetch(url, "cert_invalid")
        try:
            cert = x509.load_pem_x509_certificate(content)
        except ValueError:
            raise Rejected("cert_invalid", 502) from None
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Rejected("cert_invalid", 502)
        if self.settings.cert_subject not in _names(cert):
            raise Rejected("cert_invalid", 502)
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise Rejected("cert_invalid", 502)
        if len(self._certs) >= MAX_CERTS:
            self._certs.pop(next(iter(self._certs)))
        self._certs[url] = public
        return public

    async def verify(self, ep: Endpoint, req: Inbound, replay: ReplayCache) -> list[EventType]:
        message = json_body(req.body)
        if not isinstance(message, dict):
            raise Rejected("malformed", 400)
        if not message.get("Signature") or not message.get("SigningCertURL"):
            raise Rejected("unsigned")
        algorithm: hashes.HashAlgorithm
        version = str(message.get("SignatureVersion"))
        if version == "1":
            algorithm = hashes.SHA1()
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise Rejected("bad_signature")
        if not self.allowed(message["SigningCertURL"]):
            raise Rejected("cert_not_allowed")
        signed = string_to_sign(message)
        key = await self._key(message["SigningCertURL"])
        try:
            key.verify(
                base64.b64decode(message["Signature"], validate=True), signed, padding.PKCS1v15(), algorithm
            )
        except (InvalidSignature, binascii.Error, ValueError):
            raise Rejected("bad_signature") from None
        if message.get("TopicArn") not in ep.topic_arns:
            raise Rejected("topic_not_allowed", 403)
        try:
            sent = datetime.fromisoformat(str(message["Timestamp"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise Rejected("malformed", 400) from None
        if abs(req.now - sent) > self.settings.max_age_seconds:
            raise Rejected("stale")
        replay.check_and_add("sns" + str(message.get("MessageId")), req.now)
        if message.get("Type") == "SubscriptionConfirmation":
            await self._confirm(message.get("SubscribeURL"))
            return []
        if message.get("Type") != "Notification":
            return []
        return ses_types(json_body(str(message.get("Message", "")).encode()))

    async def _confirm(self, url: Any) -> None:
        if not self.allowed(url):
            raise Rejected("cert_not_allowed")
        await self._fetch(url, "subscribe_failed")

    async def _fetch(self, url: str, reason: str) -> bytes:
        """GET an allowed https URL (never redirected); anything but a 200 is `reason`."""
        try:
            resp = await self._http.get(url)
        except httpx.HTTPError:
            raise Rejected(reason, 502) from None
        if resp.status_code != 200:
            raise Rejected(reason, 502)
        return resp.content


def _names(cert: x509.Certificate) -> set[str]:
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    with contextlib.suppress(x509.ExtensionNotFound):
        names |= set(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName
            )
        )
    return names
