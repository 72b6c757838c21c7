"""Build a provider from `spec.provider` and the referenced Secret's data (already base64-decoded)."""

from __future__ import annotations

from mailferry_api.dnscutover import DnsCutoverSpec

from ... import settings
from .base import DnsProvider, ProviderError, RetryPolicy


def _need(secret: dict[str, str], key: str, secret_name: str | None) -> str:
    value = secret.get(key)
    if not value:
        raise ProviderError(
            "SecretKeyMissing",
            f"Secret {secret_name or '(none)'} has no key {key!r}: add it or "
            "point the provider at the right key",
        )
    return value.strip()


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.current().dns_retries,
        base_delay=settings.current().dns_retry_delay,
    )


def build(spec: DnsCutoverSpec, secret: dict[str, str]) -> DnsProvider:
    p = spec.provider
    zone = p.zone or spec.domain
    sname = p.secret_ref.name if p.secret_ref else None
    timeout = settings.current().dns_timeout
    retry = retry_policy()
    if p.type == "powerdns":
        from .powerdns import PowerDnsProvider

        assert p.powerdns is not None
        return PowerDnsProvider(
            p.powerdns.api_url,
            _need(secret, p.powerdns.api_key_key, sname),
            zone,
            server_id=p.powerdns.server_id,
            timeout=timeout,
            retry=retry,
        )
    if p.type == "rfc2136":
        from .rfc2136 import Rfc2136Provider

        assert p.rfc2136 is not None
        cfg = p.rfc2136
        tsig = _need(secret, cfg.tsig_secret_key, sname) if cfg.tsig_key_name else None
        return Rfc2136Provider(
            cfg.server,
            cfg.port,
            zone,
            cfg.tsig_key_name,
            tsig,
            cfg.tsig_algorithm,
            timeout=min(timeout, 5.0),
            retry=retry,
        )
    if p.type == "cloudflare":
        from .cloudflare import CloudflareProvider

        cf = p.cloudflare
        return CloudflareProvider(
            _need(secret, cf.api_token_key if cf else "api-token", sname),
            zone,
            zone_id=cf.zone_id if cf else None,
            api_url=cf.api_url if cf else "https://api.cloudflare.com/client/v4",
            timeout=timeout,
            retry=retry,
        )
    if p.type == "route53":
        from .route53 import Route53Provider

        assert p.route53 is not None
        r = p.route53
        return Route53Provider(
            _need(secret, r.access_key_id_key, sname),
            _need(secret, r.secret_access_key_key, sname),
            zone,
            r.hosted_zone_id,
            region=r.region,
            endpoint=r.endpoint,
            session_token=secret.get("aws-session-token"),
            timeout=timeout,
            retry=retry,
        )
    raise ProviderError("UnknownProvider", f"provider type {p.type!r} is not supported")
