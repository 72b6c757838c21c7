"""Where a DnsCutover writes: the DNS provider types (RFC 2136, PowerDNS, Cloudflare, Route53)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, JsonValue

from .common import (
    ApiModel,
    SecretKey,
    SecretRef,
)
from .dnstypes import HostName, ProviderType


class Rfc2136Provider(ApiModel):
    server: str = Field(min_length=1, max_length=253)
    """Primary nameserver accepting dynamic updates."""
    port: int = Field(default=53, ge=1, le=65535)
    """Its port."""
    tsig_key_name: str | None = Field(
        default=None, max_length=253, pattern=r"^[A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9_])?\.?$"
    )
    """TSIG key name."""
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha512", "hmac-sha1", "hmac-md5"] = "hmac-sha256"
    """TSIG algorithm."""
    tsig_secret_key: SecretKey = "tsig-secret"
    """Key of the TSIG secret (base64) in provider.secretRef."""


class PowerDnsProvider(ApiModel):
    api_url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    """PowerDNS HTTP API base URL (must be allowed by the installation)."""
    server_id: str = Field(default="localhost", max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    """PowerDNS server id."""
    api_key_key: SecretKey = "api-key"
    """Key of the API key in provider.secretRef."""


class CloudflareProvider(ApiModel):
    zone_id: str | None = Field(default=None, max_length=64)
    """Zone ID; default: looked up by name."""
    api_url: str = Field(default="https://api.cloudflare.com/client/v4", pattern=r"^https?://")
    """API base URL."""
    api_token_key: SecretKey = "api-token"
    """Key of the API token in provider.secretRef."""


class Route53Provider(ApiModel):
    hosted_zone_id: str = Field(min_length=1, max_length=64)
    """Hosted zone ID."""
    region: str = Field(default="us-east-1", max_length=32)
    """AWS region for signing."""
    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    """API endpoint override."""
    access_key_id_key: SecretKey = "aws-access-key-id"
    """Key of the access key ID in provider.secretRef."""
    secret_access_key_key: SecretKey = "aws-secret-access-key"
    """Key of the secret access key in provider.secretRef."""


_PROVIDER_RULES: list[JsonValue] = [
    {
        "rule": f"self.type != '{t}' || has(self.{t})",
        "message": f"provider.{t} is required when type is {t}",
        "fieldPath": f".{t}",
    }
    for t in ("rfc2136", "powerdns", "route53")
]
_PROVIDER_RULES.append(
    {
        "rule": "self.type == 'rfc2136' || has(self.secretRef)",
        "message": "provider.secretRef is required for this provider type",
        "fieldPath": ".secretRef",
    }
)


class DnsProvider(ApiModel):
    type: ProviderType
    """rfc2136, powerdns, cloudflare or route53."""
    secret_ref: SecretRef | None = None
    """Secret holding the provider's credentials (labelled mailferry.io/credentials=true)."""
    zone: HostName | None = Field(default=None, description="zone apex; defaults to spec.domain")
    rfc2136: Rfc2136Provider | None = None
    """Settings for type rfc2136."""
    powerdns: PowerDnsProvider | None = None
    """Settings for type powerdns."""
    cloudflare: CloudflareProvider | None = None
    """Settings for type cloudflare."""
    route53: Route53Provider | None = None
    """Settings for type route53."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _PROVIDER_RULES})
