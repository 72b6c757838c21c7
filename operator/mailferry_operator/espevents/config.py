"""The ESP event endpoint's configuration: one YAML file, mounted from a Secret (it holds the keys).

    maxBodyBytes: 1048576          # larger requests are rejected (reason "oversized")
    toleranceSeconds: 300          # signed timestamps older or newer than this: "stale"
    sns:
      # hosts SigningCertURL and SubscribeURL may name:
      certHostPattern: '^sns\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$'
      certSubject: sns.amazonaws.com   # the signing certificate must name this (CN or DNS SAN)
      caFile: ''                       # CA bundle for fetching it (default: the system's)
      maxAgeSeconds: 3600              # SNS retries: its Timestamp may be older than toleranceSeconds
    # one per provider, domain and stream; POST /events/<provider>/<domain>/<stream>
    endpoints:
      - {provider: sendgrid, domain: example.com, stream: transactional, publicKey: <base64 DER>}
      - {provider: mailgun, domain: example.com, signingKey: <key>}
      - {provider: postmark, domain: example.com, username: <u>, password: <p>}   # or header + secret
      - {provider: ses, domain: example.com, topicArns: [arn:aws:sns:eu-west-1:123:ses-events]}
      - {provider: generic, domain: example.com, secret: <hmac key>}

Only configured endpoints exist: an unknown provider/domain/stream is a 404 counted without its labels,
so nobody can create metric series by posting to made-up paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark", "generic")
DEFAULT_SNS_HOSTS = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
_STREAM = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")


class ConfigError(ValueError):
    """The configuration file is unusable; the message names the entry (never a key's value)."""


@dataclass(frozen=True)
class Endpoint:
    provider: str
    domain: str
    stream: str
    public_key: str = ""  # sendgrid
    signing_key: str = ""  # mailgun
    username: str = ""  # postmark basic auth
    password: str = ""
    header: str = ""  # postmark custom header carrying `secret`
    secret: str = ""  # postmark header value; generic HMAC key
    topic_arns: tuple[str, ...] = ()  # ses

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.domain, self.stream)

    def __repr__(self) -> str:  # never show key material
        return f"Endpoint({self.provider}/{self.domain}/{self.stream})"


@dataclass(frozen=True)
class SnsSettings:
    cert_host_pattern: str = DEFAULT_SNS_HOSTS
    cert_subject: str = "sns.amazonaws.com"
    ca_file: str = ""
    max_age_seconds: float = 3600.0


@dataclass(frozen=True)
class IngestConfig:
    endpoints: dict[tuple[str, str, str], Endpoint]
    max_body_bytes: int = 1 << 20
    tolerance_seconds: float = 300.0
    sns: SnsSettings = field(default_factory=SnsSettings)


_REQUIRED = {
    "sendgrid": ("publicKey",),
    "mailgun": ("signingKey",),
    "ses": ("topicArns",),
    "generic": ("secret",),
}


def _endpoint(i: int, raw: Any) -> Endpoint:
    if not isinstance(raw, dict):
        raise ConfigError(f"endpoints[{i}] is not a mapping")
    provider = raw.get("provider")
    if provider not in PROVIDERS:
        raise ConfigError(f"endpoints[{i}].provider must be one of {', '.join(PROVIDERS)}")
    domain, stream = str(raw.get("domain") or ""), str(raw.get("stream") or "default")
    if not domain or not _STREAM.match(stream):
        raise ConfigError(f"endpoints[{i}] needs a domain and a stream of [a-z0-9_-]")
    for needed in _REQUIRED.get(provider, ()):
        if not raw.get(needed):
            raise ConfigError(f"endpoints[{i}] ({provider}) needs {needed}")
    if provider == "postmark" and not (
        (raw.get("username") and raw.get("password")) or (raw.get("header") and raw.get("secret"))
    ):
        raise ConfigError(f"endpoints[{i}] (postmark) needs username+password or header+secret")
    return Endpoint(
        provider=provider,
        domain=domain.lower(),
        stream=stream,
        public_key=str(raw.get("publicKey") or ""),
        signing_key=str(raw.get("signingKey") or ""),
        username=str(raw.get("username") or ""),
        password=str(raw.get("password") or ""),
        header=str(raw.get("header") or ""),
        secret=str(raw.get("secret") or ""),
        topic_arns=tuple(str(a) for a in raw.get("topicArns") or ()),
    )


def parse(raw: Any) -> IngestConfig:
    if not isinstance(raw, dict):
        raise ConfigError("the configuration is not a mapping")
    endpoints: dict[tuple[str, str, str], Endpoint] = {}
    for i, item in enumerate(raw.get("endpoints") or []):
        ep = _endpoint(i, item)
        if ep.key in endpoints:
            raise ConfigError(f"endpoints[{i}] repeats {ep.provider}/{ep.domain}/{ep.stream}")
        endpoints[ep.key] = ep
    sns = raw.get("sns") or {}
    settings = SnsSettings(
        cert_host_pattern=str(sns.get("certHostPattern") or DEFAULT_SNS_HOSTS),
        cert_subject=str(sns.get("certSubject") or "sns.amazonaws.com"),
        ca_file=str(sns.get("caFile") or ""),
        max_age_seconds=float(sns.get("maxAgeSeconds") or 3600),
    )
    try:
        re.compile(settings.cert_host_pattern)
    except re.error as exc:
        raise ConfigError(f"sns.certHostPattern does not compile: {exc}") from None
    return IngestConfig(
        endpoints=endpoints,
        max_body_bytes=int(raw.get("maxBodyBytes") or 1 << 20),
        tolerance_seconds=float(raw.get("toleranceSeconds") or 300),
        sns=settings,
    )


def load(path: Path) -> IngestConfig:
    try:
        return parse(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
